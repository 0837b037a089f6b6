"""The paper's models on the Hugging Face Hub: MultiBERTs (Sellam et al., 2022), BERT-base from 25
seeds, with intermediate checkpoints for seeds 0–4. Every Hub id of the ``paper`` preset is made here."""

from __future__ import annotations

from txmerge.base.errors import TxmergeError

HUB_PREFIX = "google/multiberts-seed_"
PAPER_TOKENIZER = f"{HUB_PREFIX}0"  # all seeds share one tokenizer
SEEDS = range(25)
#: seeds with intermediate checkpoints, and those checkpoints by fraction of the 2M steps (thousands of steps)
SNAPSHOT_SEEDS = range(5)
PAPER_STEPS_K = {0.05: 100, 0.2: 400, 0.5: 1000}
PAPER_TOTAL_K = 2000


def model_id(seed: int) -> str:
    """The Hub id of the final MultiBERTs checkpoint of ``seed`` (0–24)."""
    if seed not in SEEDS:
        raise TxmergeError(f"MultiBERTs has seeds 0–24, not {seed}; choose pairs among them.")
    return f"{HUB_PREFIX}{seed}"


def snapshot_id(seed: int, steps_k: int) -> str:
    """The Hub id of ``seed``'s checkpoint after ``steps_k`` thousand steps (seeds 0–4 only)."""
    if seed not in SNAPSHOT_SEEDS:
        raise TxmergeError(f"MultiBERTs publishes intermediate checkpoints for seeds 0–4 only, not {seed}; pick pairs among them.")
    return f"{HUB_PREFIX}{seed}-step_{steps_k}k"
