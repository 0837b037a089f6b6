"""RoBERTa (``RobertaModel``, ``RobertaForMaskedLM``, ``RobertaForSequenceClassification``): BERT's table
with RoBERTa's names for the base model and the heads; position ids start after the padding index
(nothing to permute, two fewer positions); ``lm_head`` with a tied decoder."""

from dataclasses import replace

from txmerge.families.bert import FAMILY as BERT
from txmerge.families.bert import linear, mlm_head

FAMILY = replace(
    BERT,
    name="roberta",
    model_types=("roberta",),
    base="roberta",
    heads={**linear("{base}pooler.dense", None, "last"), **linear("classifier.dense", None, "last"),
           **linear("classifier.out_proj", None, None)},
    lm_head_module="lm_head",
    position_offset=2,
    lm_head=mlm_head("lm_head.dense", "lm_head.layer_norm", "lm_head.decoder.weight", ("lm_head.decoder.bias", "lm_head.bias")),
)
