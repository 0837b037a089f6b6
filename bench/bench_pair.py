"""The cost of one seed pair through every MLM chapter (02–05), against the bare forward passes it needs.

    .venv/bin/python bench/bench_pair.py                 # tiny preset, pair 1-2 (about 4 min on one thread)
    .venv/bin/python bench/bench_pair.py --preset smoke  # micro models (seconds)

In a fresh, temporary result cache, one pair runs every distinct curve the MLM chapters ask for (the
methods below; a curve two chapters share is computed once, as in the book) and the feature
statistics behind them, through :class:`txmerge.experiments.pipeline.MLMExperiment` with the
preset's chapter parameters. The bare work is what those results cannot do without:

- per curve, ``n_lambdas`` evaluations of one fixed model on the evaluation set
  (``evaluate.mlm_loss_masked_only``: the encoder on every block, the MLM head on masked positions);
- per statistics pass (one per amount of correlation text, one on the held-out text), both models'
  plain forward passes over the same batches.

Printed: the ratio (pipeline seconds / bare seconds) and where the rest goes. A ratio near 1 means the
pipeline adds little beyond the forward passes themselves.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

LEARNED = ("first", "last", "all")
#: the methods each MLM chapter runs on every pair (notebooks/02–05)
CHAPTER_METHODS = {
    "02_ffn_attention": ("vanilla", "attn", "ff", "ff+attn"),
    "03_attention_heads": ("ff", "monotonic", "ignore", "permute", "permute+qk"),
    "04_residual": ("identity", *LEARNED, "separate", *(f"{s} (untied)" for s in LEARNED), *(f"{s} (official)" for s in LEARNED)),
}


def bare_seconds(exp, pair, n_curves: int, amounts: list[int]) -> float:
    """Seconds of the bare forward passes one pair needs (see the module docstring)."""
    from txmerge.core.evaluate import mlm_loss_masked_only

    model = exp.model(pair[0]).eval()
    es = exp.eval_set()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(es["input_ids"]), exp.eval_batch_size):
            mlm_loss_masked_only(model, *(es[k][i:i + exp.eval_batch_size] for k in ("input_ids", "attention_mask", "labels")))
    per_eval = time.perf_counter() - t0
    passes = 0.0
    with torch.inference_mode():
        for batches in [exp.correlation_batches(n) for n in amounts] + [exp.heldout_batches()]:
            t0 = time.perf_counter()
            for seed in pair:
                for b in batches:
                    exp.model(seed).base_model(**b)  # the encoder, where the statistics' hooks sit
            passes += time.perf_counter() - t0
    return n_curves * len(exp.lambdas) * per_eval + passes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", choices=("tiny", "smoke"))
    ap.add_argument("--pair", default="1-2")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["TXMERGE_CACHE"] = tempfile.mkdtemp(prefix="bench-pair-")
    from txmerge.chapters.params import chapter_params
    from txmerge.experiments.pipeline import MLMExperiment

    pair = tuple(sorted(int(s) for s in args.pair.split("-")))
    exp = MLMExperiment.from_params(chapter_params(args.preset, "02_ffn_attention"), "cpu", progress=False)
    amounts = list(chapter_params(args.preset, "05_data_amount").amounts)
    names = list(dict.fromkeys(n for ms in CHAPTER_METHODS.values() for n in ms))
    for seed in pair:  # loading (or, for smoke, training) the models and preparing the texts are not the pipeline's cost
        exp.model(seed)
    exp.eval_set(), [exp.correlation_batches(n) for n in {exp.n_sentences, *amounts}]
    t0 = time.perf_counter()
    exp.run([pair], names)
    exp.statistics(pair, heldout=True)
    for n in amounts:  # chapter 05: FF+attn at every amount (the chapters' own amount is already cached)
        exp.run([pair], ["ff+attn"], n_sentences=n)
    pipeline = time.perf_counter() - t0
    texts = sorted({exp.n_sentences, *amounts})
    curves = len({str(exp.curve(pair, n).method) for n in names}) + len(set(amounts) - {exp.n_sentences})
    bare = bare_seconds(exp, pair, curves, texts)
    print(f"preset {args.preset}, pair {pair[0]}-{pair[1]}, {args.threads} thread(s): {curves} distinct curves of "
          f"{len(exp.lambdas)} λ, {len(texts) + 1} statistics passes (correlation text: {texts} sentences; held-out text)")
    print(f"pipeline {pipeline:.1f} s, bare forward passes {bare:.1f} s: ratio {pipeline / bare:.2f}×")


if __name__ == "__main__":
    main()
