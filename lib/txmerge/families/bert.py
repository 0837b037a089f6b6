"""BERT (``BertModel``, ``BertForMaskedLM``, ``BertForSequenceClassification``, ``BertForPreTraining``):
post-LayerNorm encoder blocks, an MLM head with a transform and a decoder tied to the word embeddings."""

from txmerge.core.spec import Family


def linear(name: str, out: object, inp: object) -> dict:
    """``nn.Linear`` ``name``: weight [out, in] rows by ``out``, columns by ``inp``; bias by ``out``."""
    return {f"{name}.weight": (out, inp), f"{name}.bias": (out,)}


def norm(name: str, role: object) -> dict:
    return {f"{name}.weight": (role,), f"{name}.bias": (role,)}


ATTENTION_BLOCK = {
    **linear("attention.self.query", "qk", "in"), **linear("attention.self.key", "qk", "in"),
    **linear("attention.self.value", "attn", "in"), **linear("attention.output.dense", "mid", "attn"),
    **norm("attention.output.LayerNorm", "mid"),
    **linear("intermediate.dense", "ff", "mid"), **linear("output.dense", "out", "ff"), **norm("output.LayerNorm", "out"),
}

#: The within-head maps' axes: query / key / value outputs and the output projection's head inputs.
WITHIN_HEAD = {
    **linear("attention.self.query", "q", None), **linear("attention.self.key", "k", None),
    **linear("attention.self.value", "v", None), "attention.output.dense.weight": (None, "o"),
}

NODES = {
    "emb": (("embeddings.LayerNorm", "post", None),),
    "attn": (("{layer}attention.output.dense", "pre", None),),
    "mid": (("{layer}attention.output.LayerNorm", "post", None),),
    "ff": (("{layer}output.dense", "pre", None),),
    "out": (("{layer}output.LayerNorm", "post", None),),
    "qk": (("{layer}attention.self.query", "post", None), ("{layer}attention.self.key", "post", None)),
}


def mlm_head(transform: str, norm_name: str, decoder: str, biases: tuple[str, ...]) -> dict:
    """The three tied-decoder treatments of a masked-LM head (transform → LayerNorm → decoder)."""
    fixed = {b: (None,) for b in biases}
    return {
        # the transform's output moves into the embedding basis, so the tied decoder E·Pᵀ undoes it
        "correct": {**linear(transform, "emb", "last"), **norm(norm_name, "emb"), decoder: (None, "emb"), **fixed},
        # minimal fix: the transform reads the permuted stream; the untied decoder keeps B's own E
        "untied": {**linear(transform, None, "last"), **norm(norm_name, None), decoder: (None, None), **fixed},
        # the released code: untied decoder permuted twice (E·Pᵀ·Pᵀ)
        "official": {**linear(transform, None, "last"), **norm(norm_name, None), decoder: (None, ("emb", "emb")), **fixed},
    }


FAMILY = Family(
    name="bert",
    model_types=("bert",),
    base="bert",
    sizes=lambda c: (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size),
    embeddings={"embeddings.word_embeddings.weight": (None, "emb"), "embeddings.position_embeddings.weight": (None, "emb"),
                "embeddings.token_type_embeddings.weight": (None, "emb"), **norm("embeddings.LayerNorm", "emb")},
    layer="encoder.layer.{l}.",
    layer_params=ATTENTION_BLOCK,
    nodes=NODES,
    within_head=WITHIN_HEAD,
    layer_norm="post",
    heads={**linear("{base}pooler.dense", None, "last"), **linear("classifier", None, None),
           **linear("cls.seq_relationship", None, None)},
    lm_head_module="cls.predictions",
    lm_head=mlm_head("cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm", "cls.predictions.decoder.weight",
                     ("cls.predictions.decoder.bias", "cls.predictions.bias")),
)
