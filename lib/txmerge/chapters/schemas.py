"""The parameters of every chapter: one pydantic schema per notebook, registered in :data:`CHAPTERS`.

Loading presets and validating a chapter's namespace against these schemas is :mod:`txmerge.chapters.params`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PresetName = Literal["tiny", "smoke", "paper"]


class CommonParams(BaseModel):
    """Parameters every chapter has."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    preset: PresetName = Field("tiny", description="which preset these values come from")
    seed: int = Field(0, ge=0, description="base random seed")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="torch device; auto = cuda if available, else cpu"
    )
    threads: int = Field(
        0, ge=0, description="torch CPU threads; 0 = torch's default (1 is fastest for tiny models on a busy CPU)"
    )


# ---- the paper's chapters ------------------------------------------------------------------------
TINY_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]  # the MLM chapters: disjoint pairs, so that they are independent
GLUE_PAIRS = [[1, 2], [1, 3], [2, 3]]  # the tiny zoo's fine-tunes are of seeds 1-3: pairs share seeds (undecided)
TASK_NAMES = Literal["stsb", "sst2", "qnli", "mrpc", "mnli", "qqp", "cola", "rte"]


def _check_pairs(pairs: list[list[int]], preset: str) -> None:
    top = 24 if preset == "paper" else 12  # MultiBERTs has seeds 0-24; the zoo's recipe seeds 1-12
    for pair in pairs:
        if len(pair) != 2 or pair[0] == pair[1] or not all(0 <= s <= top for s in pair):
            raise ValueError(f"pair {pair} must be two different seeds between {0 if preset == 'paper' else 1} and {top}")


class ModelsDataParams(CommonParams):
    """01_models_and_data: the zoo (training curves, sizes) and the texts and tasks."""

    seeds: list[int] = Field([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], min_length=1, description="zoo seeds to describe")


class MLMParams(CommonParams):
    """Shared by the masked-LM chapters: which pairs, how much correlation text, how to evaluate."""

    pairs: list[list[int]] = Field(TINY_PAIRS, min_length=1, description="pairs of seeds [A, B] to merge")
    eval_blocks: int | None = Field(106, ge=1, description="128-token blocks of held-out text per λ, one per article first (null = all)")
    text_mode: Literal["clean", "char_spaced"] = Field("clean", description="evaluation text as is, or character-spaced like the official code")
    batch_size: int = Field(8, ge=1, description="sentences per batch in the feature pass (the paper: 8)")
    drop_special_tokens: bool = Field(False, description="exclude [CLS]/[SEP] from the correlations (the paper includes them)")
    n_lambdas: int = Field(21, ge=3, description="points on the interpolation path, endpoints included")

    @model_validator(mode="after")
    def _pairs_valid(self) -> "MLMParams":
        _check_pairs(self.pairs, self.preset)
        return self


class FFAttentionParams(MLMParams):
    """02_ffn_attention: vanilla, FF, attention and FF+attention merges (Figs. 3 and 4)."""

    n_sentences: int = Field(4000, ge=1, description="correlation-text sentences")
    heatmap_layer: int = Field(0, ge=0, description="layer whose FF correlation matrix is shown")
    heatmap_units: int = Field(96, ge=8, description="units shown in the correlation heatmaps")


class HeadsParams(MLMParams):
    """03_attention_heads: Table 1 variants, head-block structure, Q/K sharing."""

    n_sentences: int = Field(4000, ge=1, description="correlation-text sentences")
    heatmap_layer: int = Field(0, ge=0, description="layer whose attention correlation is shown")


class ResidualParams(MLMParams):
    """04_residual: Table 2 strategies, verification, the tied decoder."""

    n_sentences: int = Field(4000, ge=1, description="correlation-text sentences")
    official: bool = Field(True, description="also run the official code's tied-decoder handling (every learned strategy)")


class DataAmountParams(MLMParams):
    """05_data_amount: barrier vs number of correlation sentences (Fig. 6)."""

    amounts: list[int] = Field([500, 4000, 10000], min_length=2, description="numbers of correlation sentences")

    @model_validator(mode="after")
    def _amounts_increasing(self) -> "DataAmountParams":
        if any(a < 1 for a in self.amounts) or sorted(set(self.amounts)) != list(self.amounts):
            raise ValueError(f"amounts {self.amounts} must be positive and strictly increasing")
        return self


class GlueParams(CommonParams):
    """06_glue: fine-tuned pairs merged on GLUE tasks (Table 3, Fig. 7)."""

    tasks: list[TASK_NAMES] = Field(["stsb", "sst2", "qnli", "mrpc"], min_length=1, description="tasks to merge on")
    pairs: list[list[int]] = Field(GLUE_PAIRS, min_length=1, description="pairs of seeds [A, B]")
    n_sentences: int | None = Field(1000, ge=1, description="training examples for the correlations (null = all)")
    max_validation: int | None = Field(300, ge=1, description="validation examples per λ (null = all)")
    batch_size: int = Field(8, ge=1, description="examples per batch in the feature pass")
    n_lambdas: int = Field(21, ge=3, description="points on the interpolation path")

    @model_validator(mode="after")
    def _valid(self) -> "GlueParams":
        _check_pairs(self.pairs, self.preset)
        if self.preset != "paper":
            missing = [t for t in self.tasks if t in ("mnli", "qqp", "cola", "rte")]
            if missing:
                raise ValueError(f"tasks {missing} have no offline analogue; the {self.preset} preset has stsb, sst2, qnli and mrpc")
        return self


class ExercisesParams(CommonParams):
    """07_exercises: classroom exercises checked against the library on tiny random BERTs (CPU, seconds)."""

    vocab_size: int = Field(100, ge=8, description="vocabulary of the random token streams")
    hidden_size: int = Field(32, ge=4, description="width of the residual stream of the tiny BERTs")
    num_heads: int = Field(4, ge=1, description="attention heads (must divide hidden_size)")
    intermediate_size: int = Field(64, ge=2, description="feed-forward width (units matched in exercise 2)")
    num_layers: int = Field(2, ge=1, description="transformer layers")
    seq_len: int = Field(32, ge=4, description="tokens per sequence")
    n_tokens: int = Field(1024, ge=16, description="tokens of correlation data (features are collected on this many)")
    weight_noise: float = Field(0.01, ge=0, description="std of the noise added to the disguised copy's weights (0 = exact copy)")
    n_lambdas: int = Field(11, ge=2, description="points on the interpolation path in exercise 4")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "ExercisesParams":
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})")
        return self


class ResultsParams(CommonParams):
    """08_results: every chapter's recorded estimates in one forest plot and one table (reads, computes nothing)."""


#: notebook stem -> schema. Register new chapters here (see the module docstring).
CHAPTERS: dict[str, type[CommonParams]] = {
    "01_models_and_data": ModelsDataParams,
    "02_ffn_attention": FFAttentionParams,
    "03_attention_heads": HeadsParams,
    "04_residual": ResidualParams,
    "05_data_amount": DataAmountParams,
    "06_glue": GlueParams,
    "07_exercises": ExercisesParams,
    "08_results": ResultsParams,
}
