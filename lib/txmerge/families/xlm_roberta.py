"""XLM-RoBERTa (``XLMRobertaModel``, ``XLMRobertaForMaskedLM``, ``XLMRobertaForSequenceClassification``):
RoBERTa's layout and names under another model type."""

from dataclasses import replace

from txmerge.families.roberta import FAMILY as ROBERTA

FAMILY = replace(ROBERTA, name="xlm-roberta", model_types=("xlm-roberta",))
