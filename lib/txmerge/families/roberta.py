"""RoBERTa (``RobertaModel``, ``RobertaForMaskedLM``, ``RobertaForSequenceClassification``): BERT's blocks;
position ids offset by the padding index (nothing to permute); ``lm_head`` with a tied decoder."""

from txmerge.families.bert import ATTENTION_BLOCK, NODES, linear, mlm_head, norm
from txmerge.spec import Family

FAMILY = Family(
    name="roberta",
    model_types=("roberta",),
    base="roberta",
    sizes=lambda c: (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size),
    embeddings={"embeddings.word_embeddings.weight": (None, "emb"), "embeddings.position_embeddings.weight": (None, "emb"),
                "embeddings.token_type_embeddings.weight": (None, "emb"), **norm("embeddings.LayerNorm", "emb")},
    layer="encoder.layer.{l}.",
    layer_params=ATTENTION_BLOCK,
    nodes=NODES,
    heads={**linear("{base}pooler.dense", None, "last"), **linear("classifier.dense", None, "last"),
           **linear("classifier.out_proj", None, None)},
    lm_head_module="lm_head",
    position_offset=2,
    lm_head=mlm_head("lm_head.dense", "lm_head.layer_norm", "lm_head.decoder.weight", ("lm_head.decoder.bias", "lm_head.bias")),
)
