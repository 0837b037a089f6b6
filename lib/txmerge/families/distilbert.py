"""DistilBERT (``DistilBertModel``, ``DistilBertForMaskedLM``, ``DistilBertForSequenceClassification``):
no token types, ``q_lin``/``k_lin``/``v_lin``/``out_lin``, ``ffn.lin1``/``lin2``, and the
``vocab_transform`` → ``vocab_layer_norm`` → ``vocab_projector`` (tied) head."""

from txmerge.core.spec import Family
from txmerge.families.bert import linear, mlm_head, norm

FAMILY = Family(
    name="distilbert",
    model_types=("distilbert",),
    base="distilbert",
    sizes=lambda c: (c.dim, c.n_layers, c.n_heads, c.hidden_dim),
    embeddings={"embeddings.word_embeddings.weight": (None, "emb"), "embeddings.position_embeddings.weight": (None, "emb"),
                **norm("embeddings.LayerNorm", "emb")},
    layer="transformer.layer.{l}.",
    layer_params={
        **linear("attention.q_lin", "qk", "in"), **linear("attention.k_lin", "qk", "in"), **linear("attention.v_lin", "attn", "in"),
        **linear("attention.out_lin", "mid", "attn"), **norm("sa_layer_norm", "mid"),
        **linear("ffn.lin1", "ff", "mid"), **linear("ffn.lin2", "out", "ff"), **norm("output_layer_norm", "out"),
    },
    nodes={
        "emb": (("embeddings.LayerNorm", "post", None),),
        "attn": (("{layer}attention.out_lin", "pre", None),),
        "mid": (("{layer}sa_layer_norm", "post", None),),
        "ff": (("{layer}ffn.lin2", "pre", None),),
        "out": (("{layer}output_layer_norm", "post", None),),
        "qk": (("{layer}attention.q_lin", "post", None), ("{layer}attention.k_lin", "post", None)),
    },
    within_head={**linear("attention.q_lin", "q", None), **linear("attention.k_lin", "k", None),
                 **linear("attention.v_lin", "v", None), "attention.out_lin.weight": (None, "o")},
    layer_norm="post",
    heads={**linear("pre_classifier", None, "last"), **linear("classifier", None, None)},
    lm_head=mlm_head("vocab_transform", "vocab_layer_norm", "vocab_projector.weight", ("vocab_projector.bias",)),
)
