"""Throughput of the zoo's pretraining step per recipe variant, in tokens per second per core.

    .venv/bin/python bench/bench_recipe.py            # every variant, ~3 min on a 2-core VM
    .venv/bin/python bench/bench_recipe.py --steps 30 --variants base no-dropout

Each variant runs in a fresh process: the zoo's model (``TinyRecipe().config()``), AdamW, the MLM
loss on masked positions only (``evaluate.mlm_loss_masked_only``), gradient clipping: exactly the
step of ``zoo.train_seed``, on random token blocks (throughput does not depend on the text). The
first ``--warmup`` steps are not timed. "per core" divides by the threads of the process; the
``2x1`` variant runs two 1-thread processes at once (two seeds in parallel, what the zoo does) and
reports their summed throughput per core. Ratios are against ``base`` (the recipe the zoo was
trained with until issue 12: dropout 0.1, batch 32, one thread).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

VARIANTS = {
    "base": dict(dropout=0.1, batch=32, threads=1),
    "no-dropout": dict(dropout=0.0, batch=32, threads=1),
    "no-dropout-b64": dict(dropout=0.0, batch=64, threads=1),
    "no-dropout-b128": dict(dropout=0.0, batch=128, threads=1),
    "no-dropout-2threads": dict(dropout=0.0, batch=32, threads=2),
    "no-dropout-2x1": dict(dropout=0.0, batch=32, threads=1, processes=2),
}


def child(dropout: float, batch: int, threads: int, steps: int, warmup: int) -> dict:
    import torch
    from transformers import BertForMaskedLM

    from txmerge.core.evaluate import mlm_loss_masked_only
    from txmerge.zoo.tiny import TinyRecipe

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    recipe = TinyRecipe(dropout=dropout, batch_size=batch)
    model = BertForMaskedLM(recipe.config()).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    seconds = 0.0
    for step in range(warmup + steps):
        ids = torch.randint(5, recipe.vocab_size, (batch, recipe.block_size), generator=gen)
        labels = torch.where(torch.rand(ids.shape, generator=gen) < 0.15, ids, torch.full_like(ids, -100))
        start = time.perf_counter()
        loss = mlm_loss_masked_only(model, ids, torch.ones_like(ids), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step >= warmup:
            seconds += time.perf_counter() - start
    tokens = steps * batch * recipe.block_size
    return {"tokens_per_s": tokens / seconds, "threads": threads}


def run(name: str, steps: int, warmup: int) -> float:
    spec = dict(VARIANTS[name])
    processes = spec.pop("processes", 1)
    cmd = [sys.executable, __file__, "--child", json.dumps({**spec, "steps": steps, "warmup": warmup})]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    cores = sum(r["threads"] for r in results)
    return sum(r["tokens_per_s"] for r in results) / cores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(**json.loads(args.child))))
        return
    base = None
    print(f"{'variant':<22} {'tokens/s/core':>14} {'vs base':>8}")
    for name in args.variants:
        rate = run(name, args.steps, args.warmup)
        base = base or (rate if name == "base" else None)
        ratio = f"{rate / base:.2f}x" if base else "-"
        print(f"{name:<22} {rate:>14,.0f} {ratio:>8}", flush=True)


if __name__ == "__main__":
    main()
