"""When does the barrier appear? Checkpoints along pretraining, and the barrier of one pair at each.

The paper measures fully trained MultiBERTs only. The tiny zoo keeps fp16 snapshots of its seeds at
a few fractions of their training (``TinyRecipe.progress_fractions``); MultiBERTs publishes
intermediate checkpoints of seeds 0–4 on the Hub, which the ``paper`` preset uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from txmerge.base.errors import TxmergeError
from txmerge.base.presets import check_preset
from txmerge.zoo import tiny as zoo
from txmerge.zoo.multiberts import PAPER_STEPS_K, PAPER_TOTAL_K, snapshot_id  # noqa: F401  (MultiBERTs' intermediate checkpoints)


def training_points(preset: str, seed: int) -> dict[float, str]:
    """{fraction of pretraining: checkpoint} of ``seed``, the final model as 1.0 (a folder, or a Hub id for paper);
    snapshots the zoo lists but does not keep (to stay small, it keeps those of seeds 1 and 2) are left out."""
    check_preset(preset)
    final = zoo.ensure_model(preset, seed)
    if preset == "paper":
        return {**{f: snapshot_id(seed, k) for f, k in PAPER_STEPS_K.items()}, 1.0: final}
    record = Path(final) / "training.json"
    if not record.exists():
        raise TxmergeError(f"{final} has no training.json, so its snapshots are unknown; retrain it with "
                           f"`python -m txmerge zoo train --seed {seed}`.")
    listed = {float(p["fraction"]): Path(final).parent / p["path"] for p in json.loads(record.read_text())["progress"]}
    kept = {f: str(path) for f, path in listed.items() if (path / "model.safetensors").exists()}  # the zoo keeps seeds 1-2's
    return {**kept, 1.0: final}


def tokens_seen(preset: str, seed: int) -> dict[float, int | None]:
    """{fraction: pretraining tokens seen} where the zoo records it (None for the Hub's checkpoints)."""
    if preset == "paper":
        return {f: None for f in training_points(preset, seed)}
    entry = json.loads((Path(zoo.ensure_model(preset, seed)) / "training.json").read_text())
    return {**{float(p["fraction"]): int(p["tokens_seen"]) for p in entry["progress"]}, 1.0: int(entry["tokens_seen"])}


def barrier_along_training(preset: str, pair: Sequence[int], methods: Sequence[str], **experiment: Any) -> pd.DataFrame:
    """Barriers of ``pair`` under each method at every training fraction both seeds have.

    ``experiment``: the keyword arguments of :class:`txmerge.experiments.pipeline.MLMExperiment` (the same
    correlation text, evaluation blocks and λ grid at every point). One row per (fraction, method):
    fraction, tokens, method, barrier, barrier_linear, loss_A, loss_B, function_preserving.
    """
    from txmerge.experiments.pipeline import MLMExperiment, check_pairs  # the pipeline imports this package's zoo; avoid a cycle

    (a, b), = check_pairs([pair])
    pa, pb = training_points(preset, a), training_points(preset, b)
    common = sorted(set(pa) & set(pb))
    if len(common) < 2:
        raise TxmergeError(f"Seeds {a} and {b} share {len(common)} training point(s); the study needs snapshots of both "
                           "(retrain them with the current recipe, which keeps them).")
    tokens = tokens_seen(preset, a)
    frames = []
    for f in common:
        exp = MLMExperiment(preset, model_paths={a: pa[f], b: pb[f]}, **experiment)
        rows = exp.run([(a, b)], list(methods)).barriers
        frames.append(rows.assign(fraction=f, tokens=tokens.get(f)))
    cols = ["fraction", "tokens", "method", "barrier", "barrier_linear", "loss_A", "loss_B", "function_preserving"]
    return pd.concat(frames, ignore_index=True)[cols]
