"""The zoo layer: the tiny-BERT seed zoo (``tiny``), its GLUE fine-tunes (``finetune``) and the ids of the
paper's MultiBERTs. Imports ``base``, ``core`` and ``data``."""
