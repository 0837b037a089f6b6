"""GPT-2 (``GPT2Model``, ``GPT2LMHeadModel``, ``GPT2ForSequenceClassification``): causal, pre-LayerNorm
blocks and a final ``ln_f``; ``Conv1D`` weights stored transposed ([in, out]); one fused ``c_attn``
holding Q, K and V; ``lm_head`` tied to ``wte`` with no transform, so the tied decoder needs no
treatment (only ``correct`` applies)."""

from txmerge.core.spec import Family


def conv1d(name: str, inp: object, out: object) -> dict:
    """``Conv1D`` ``name``: weight [in, out]; bias by ``out``."""
    return {f"{name}.weight": (inp, out), f"{name}.bias": (out,)}


def norm(name: str, role: object) -> dict:
    return {f"{name}.weight": (role,), f"{name}.bias": (role,)}


FAMILY = Family(
    name="gpt2",
    model_types=("gpt2",),
    base="transformer",
    sizes=lambda c: (c.n_embd, c.n_layer, c.n_head, c.n_inner or 4 * c.n_embd),
    embeddings={"wte.weight": (None, "emb"), "wpe.weight": (None, "emb")},
    layer="h.{l}.",
    layer_params={
        **norm("ln_1", "in"), **conv1d("attn.c_attn", "in", "qkv"), **conv1d("attn.c_proj", "attn", "mid"),
        **norm("ln_2", "mid"), **conv1d("mlp.c_fc", "mid", "ff"), **conv1d("mlp.c_proj", "ff", "out"),
    },
    nodes={
        "emb": (("drop", "post", None),),  # wte + wpe: the stream the first block reads
        "attn": (("{layer}attn.c_proj", "pre", None),),
        "mid": (("{layer}ln_2", "pre", None),),  # the stream after the attention's residual addition
        "ff": (("{layer}mlp.c_proj", "pre", None),),
        "out": (("{layer}", "post", None),),  # the block's output stream
        "qk": (("{layer}attn.c_attn", "post", (0, 3)), ("{layer}attn.c_attn", "post", (1, 3))),
    },
    within_head={**conv1d("attn.c_attn", None, "qkv"), "attn.c_proj.weight": ("o", None)},
    layer_norm="pre",
    final=norm("ln_f", "last"),
    heads={"score.weight": (None, "last")},
    lm_head={"correct": {"lm_head.weight": (None, "last")}},
    lm_loss="clm",
)
