"""What a paper chapter is about to do, and for how long, printed before any work.

``show_plan(P, DEVICE)`` (one line in a chapter, after the validation cell) prints the models, the
token counts, the number of curves and feature passes, and a time estimate for the detected
device; it prints nothing for the tiny and smoke presets, whose chapters state their measured times.

The estimate is a projection for BERT-base, per token through one model:

- CPU: ``bench/bench_curve.py --bert-base`` on one thread of a 2-core machine: one pair and one
  method at paper scale (100k sentences ≈ 1.6M tokens of statistics, 21 λ × 250k evaluation tokens)
  took about 7 h, half statistics and half curve (book/rerun.md); divided by the threads used.
- CUDA (H100/H200 class, bf16 autocast): not measured yet, projected from FLOP counts (2.2e8 FLOPs per
  token and model forward at 35 % of 400 TFLOP/s; the float64 products of the statistics, 1.9e8 FLOPs
  per token, at half of 60 TFLOP/s). Rerun ``bench/bench_curve.py --device cuda`` to replace them.
- Fine-tuning (GLUE chapter): seconds per optimiser step at batch 8 (CPU: 8 s on one thread; CUDA: 0.05 s).
"""

from __future__ import annotations

import math
from typing import Any

from txmerge.base.precision import resolve_device
from txmerge.chapters import schemas as sc
from txmerge.data.tasks import GLUE_TASKS

BOOK_TOKENS_PER_LINE = 16  # 100k BookCorpus lines ≈ 1.6M tokens with [CLS]/[SEP]
WIKITEXT_VALIDATION_TOKENS = 250_000  # Wikitext-103 validation in 128-token blocks, about
GLUE_TOKENS_PER_EXAMPLE = 48  # a GLUE example with [CLS]/[SEP], padded to the longest of its batch, about
BLOCK = 128

#: seconds per token: "stats" = one token through both models plus the products, "forward" = one model
SECONDS_PER_TOKEN = {
    "cpu": {"stats": 3.5 * 3600 / 1.6e6, "forward": 3.5 * 3600 / (21 * 250_000), "step": 8.0},
    "cuda": {"stats": 2 * 2.2e8 / (0.35 * 4e14) + 1.9e8 / (0.5 * 6e13), "forward": 2.2e8 / (0.35 * 4e14), "step": 0.05},
}

#: curves and feature passes per pair, and extra ones on the first pair, of each MLM chapter (keep in step with the notebooks)
CHAPTER_WORK: dict[str, dict[str, Any]] = {
    "02_ffn_attention": {"curves": 4, "passes": 1, "first_curves": 3 * 3 + 1, "first_passes": 1 + 3,
                         "note": "4 methods; on the first pair 3 more at 3 points along pretraining, and held-out features"},
    "03_attention_heads": {"curves": 5, "passes": 1, "note": "4 head variants and Q/K sharing"},
    "04_residual": {"curves": 11, "passes": 1, "note": "5 strategies, 3 untied, 3 as the official code"},
}


def _fmt_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def chapter_plan(params: sc.CommonParams, device: str = "cpu", threads: int | None = None) -> dict[str, Any] | None:
    """The plan of a paper chapter: models, tokens, curves, feature passes, fine-tuning steps and the
    projected seconds on ``device`` (None for other presets, or a chapter without Hub work)."""
    from txmerge.chapters.prefetch import chapter_items

    if params.preset != "paper":
        return None
    items = chapter_items(params)
    if not items:
        return None
    kind = device if device in SECONDS_PER_TOKEN else None
    speed = SECONDS_PER_TOKEN.get(kind or "cpu")
    if kind == "cpu":
        import torch

        speed = {k: v / max(1, threads or torch.get_num_threads()) if k != "step" else v for k, v in speed.items()}
    models = [i.repo_id + (" (tokenizer)" if i.kind == "tokenizer" else "") for i in items if i.kind != "dataset"]
    pairs = len(getattr(params, "pairs", []))
    lambdas = getattr(params, "n_lambdas", 0)
    out: dict[str, Any] = {"chapter": type(params).__name__, "device": device, "models": models, "pairs": pairs,
                           "correlation_tokens": 0, "eval_tokens_per_lambda": 0, "curves": 0, "feature_passes": 0,
                           "finetune_steps": 0, "seconds": 0.0, "note": ""}
    if isinstance(params, sc.ModelsDataParams):
        out["eval_tokens_per_lambda"] = WIKITEXT_VALIDATION_TOKENS
        out["seconds"] = 60.0  # tokenising the evaluation text, about
    elif isinstance(params, sc.GlueParams):
        rows = {t: GLUE_TASKS[t].sizes for t in params.tasks}
        corr = sum(min(r["train"], params.n_sentences or r["train"]) for r in rows.values()) * GLUE_TOKENS_PER_EXAMPLE
        val = sum(min(r["validation"], params.max_validation or r["validation"]) for r in rows.values()) * GLUE_TOKENS_PER_EXAMPLE
        seeds = {s for p in params.pairs for s in p}
        steps = sum(math.ceil(r["train"] / 8) * (5 if t == "mrpc" else 3) for t, r in rows.items()) * len(seeds)
        out.update(correlation_tokens=corr, eval_tokens_per_lambda=val, curves=pairs * (2 * len(params.tasks) + 1),
                   feature_passes=pairs * len(params.tasks), finetune_steps=steps,
                   note="vanilla and full per task and pair, evaluation tokens summed over the tasks, and the MLM vanilla curve")
        out["seconds"] = (pairs * corr * speed["stats"] + pairs * 2 * lambdas * val * speed["forward"]
                          + pairs * lambdas * WIKITEXT_VALIDATION_TOKENS * speed["forward"] + steps * speed["step"])
    elif isinstance(params, sc.MLMParams):
        ev = WIKITEXT_VALIDATION_TOKENS if params.eval_blocks is None else params.eval_blocks * BLOCK
        if isinstance(params, sc.DataAmountParams):
            corr = sum(params.amounts) * BOOK_TOKENS_PER_LINE / len(params.amounts)  # per pass, on average
            curves, passes, note = len(params.amounts) + 1, len(params.amounts), f"{len(params.amounts)} amounts and vanilla"
            passes, curves = pairs * passes, pairs * curves
        else:
            work = CHAPTER_WORK.get(_stem(params), {"curves": 1, "passes": 1, "note": ""})
            passes = pairs * work["passes"] + work.get("first_passes", 0)
            curves = pairs * work["curves"] + work.get("first_curves", 0)
            corr, note = params.n_sentences * BOOK_TOKENS_PER_LINE, work["note"]
        out.update(correlation_tokens=passes * corr, eval_tokens_per_lambda=ev, curves=curves, feature_passes=passes, note=note)
        out["seconds"] = passes * corr * speed["stats"] + curves * lambdas * ev * speed["forward"]
    if kind is None:
        out["seconds"] = None
    return out


def _stem(params: sc.CommonParams) -> str:
    return next((stem for stem, cls in sc.CHAPTERS.items() if cls is type(params)), "")


def show_plan(params: sc.CommonParams, device: str | None = None) -> dict[str, Any] | None:
    """Print :func:`chapter_plan` for the paper preset (nothing for the others); returns it."""
    device = device or resolve_device(params.device)
    plan = chapter_plan(params, device, params.threads or None)
    if plan is None:
        return None
    models = plan["models"]
    shown = ", ".join(models[:4]) + (f" and {len(models) - 4} more" if len(models) > 4 else "")
    print(f"Plan ({plan['chapter']}, paper preset, device {device}):")
    print(f"  models: {shown}")
    if plan["curves"]:
        print(f"  {plan['pairs']} pair(s): {plan['feature_passes']} feature pass(es) over {plan['correlation_tokens']:,.0f} "
              f"correlation tokens in all; {plan['curves']} curve(s) of {getattr(params, 'n_lambdas', 0)} λ "
              f"× {plan['eval_tokens_per_lambda']:,} evaluation tokens ({plan['note']})")
    else:
        print(f"  evaluation text: about {plan['eval_tokens_per_lambda']:,} tokens")
    if plan["finetune_steps"]:
        print(f"  fine-tuning: {plan['finetune_steps']:,} optimiser steps (batch 8), resumed per task and seed from zoo/paper-glue")
    if plan["seconds"] is None:
        print(f"  time: no estimate for device {device}")
    else:
        basis = "measured on CPU, per thread" if device == "cpu" else "projected from FLOP counts, not measured"
        print(f"  time: about {_fmt_seconds(plan['seconds'])} on {device} ({basis}; cached results are not recomputed)")
    return plan
