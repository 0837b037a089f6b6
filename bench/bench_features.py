"""Benchmark the feature-statistics pass against bare forward passes, and its memory as tokens grow.

    .venv/bin/python bench/bench_features.py                 # small (4 layers, 128 wide), < 1 min
    .venv/bin/python bench/bench_features.py --size medium   # 4 layers, 256 wide
    .venv/bin/python bench/bench_features.py --bert-base     # 12 layers, 768, 12 heads, 3072, vocab 30522

Prints two time ratios, both over the same tokens and nodes (default: every node, the ``all`` method):
- ``vs encoder``: collect_pair_moments / bare forward of both BASE encoders (``model.bert(**batch)``),
  the strict comparison (the statistics pass runs only the encoder too). Target ≤ 1.3×.
- ``vs model``: collect_pair_moments / bare forward of both full models (``model(**batch)``: the MLM
  head runs on every position), what a user would otherwise run.
Then the peak resident memory of the statistics pass with 1× and 10× the tokens (fresh processes,
batches generated on the fly), and whether it is flat.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Iterator

import torch
from transformers import BertConfig, BertForMaskedLM

from txmerge.features import all_nodes, collect_pair_moments

SIZES = {
    "small": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512, vocab_size=8000, batch=32, batches=4),
    "medium": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024, vocab_size=8000, batch=32, batches=3),
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, vocab_size=30522, batch=8, batches=2),
}
SEQ = 128
CLOCK = time.process_time  # CPU time of this process: robust to other jobs on a shared machine (--wall for wall time)


def build(size: str, seed: int) -> BertForMaskedLM:
    cfg = {k: v for k, v in SIZES[size].items() if k not in ("batch", "batches")}
    torch.manual_seed(seed)
    return BertForMaskedLM(BertConfig(max_position_embeddings=SEQ, **cfg)).eval()


def batches(size: str, n: int, seed: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """``n`` synthetic batches [batch, 128] with ~10% right padding, generated lazily."""
    g = torch.Generator().manual_seed(seed)
    b, vocab = SIZES[size]["batch"], SIZES[size]["vocab_size"]
    for _ in range(n):
        ids = torch.randint(5, vocab, (b, SEQ), generator=g)
        lengths = torch.randint(SEQ * 8 // 10, SEQ + 1, (b,), generator=g)
        mask = (torch.arange(SEQ)[None] < lengths[:, None]).long()
        yield dict(input_ids=ids * mask, attention_mask=mask, token_type_ids=torch.zeros_like(ids))


def timed(fns: dict, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` wall time of each function, interleaved so load drift hits all alike."""
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = CLOCK()
            fn()
            best[k] = min(best[k], CLOCK() - t0)
    return best


def time_ratio(size: str, repeats: int, nodes: list[str] | None) -> dict[str, float]:
    a, b = build(size, 0), build(size, 1)
    data = list(batches(size, SIZES[size]["batches"]))
    feed = data

    def forward(full: bool) -> None:
        with torch.inference_mode():
            for x in feed:
                for m in (a, b):
                    (m if full else m.bert)(**x)

    collect = lambda: collect_pair_moments(a, b, data, nodes=nodes, progress=False)  # noqa: E731
    forward(False), collect()  # warm-up
    t = timed({"enc": lambda: forward(False), "model": lambda: forward(True), "stats": collect}, repeats)
    t_enc, t_model, t_stats = t["enc"], t["model"], t["stats"]
    tokens = int(sum(x["attention_mask"].sum() for x in data))
    return dict(tokens=tokens, encoder_s=t_enc, model_s=t_model, stats_s=t_stats,
                ratio_vs_encoder=t_stats / t_enc, ratio_vs_model=t_stats / t_model)


def peak_rss_child(size: str, n_batches: int, nodes: list[str] | None) -> int:
    """Peak resident memory (MiB) of a fresh process running the statistics pass on n_batches."""
    code = (
        "import sys, json, resource, torch; torch.set_num_threads(1); sys.path.insert(0, 'bench');"
        "import bench_features as bf; from txmerge.features import collect_pair_moments;"
        f"a, b = bf.build({size!r}, 0), bf.build({size!r}, 1);"
        f"m = collect_pair_moments(a, b, bf.batches({size!r}, {n_batches}), nodes={nodes!r}, progress=False);"
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) // 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--bert-base", action="store_true", help="same as --size bert-base")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--nodes", choices=["all", "ff+attn", "residual"], default="all")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--wall", action="store_true", help="time with wall clock instead of process CPU time")
    p.add_argument("--memory-batches", type=int, default=1, help="batches of the 1x memory run (10x runs 10 times as many)")
    args = p.parse_args()
    size = "bert-base" if args.bert_base else args.size
    torch.set_num_threads(args.threads)
    if args.wall:
        global CLOCK
        CLOCK = time.perf_counter
    n_layers = SIZES[size]["num_hidden_layers"]
    nodes = {"all": None, "ff+attn": [n for n in all_nodes(n_layers) if not n.startswith("res")],
             "residual": [n for n in all_nodes(n_layers) if n.startswith("res")]}[args.nodes]

    cfg = SIZES[size]
    print(f"size={size} ({cfg['num_hidden_layers']} layers, d={cfg['hidden_size']}, FF={cfg['intermediate_size']}, "
          f"V={cfg['vocab_size']}), {cfg['batches']} batches of {cfg['batch']}x{SEQ}, nodes={args.nodes}, threads={args.threads}, clock={'wall' if args.wall else 'process CPU'}")
    r = time_ratio(size, args.repeats, nodes)
    print(f"tokens={r['tokens']}  bare encoder fwd (A+B) {r['encoder_s']:.2f}s  bare model fwd (A+B) {r['model_s']:.2f}s  "
          f"statistics pass {r['stats_s']:.2f}s")
    verdict = "OK" if r["ratio_vs_encoder"] <= 1.3 else "ABOVE target"
    print(f"ratio vs encoder forward: {r['ratio_vs_encoder']:.2f}x (target <= 1.3x: {verdict});  "
          f"ratio vs full-model forward: {r['ratio_vs_model']:.2f}x")
    if not args.skip_memory and size != "bert-base":
        n1 = args.memory_batches
        m1, m10 = peak_rss_child(size, n1, nodes), peak_rss_child(size, 10 * n1, nodes)
        flat = m10 <= m1 * 1.1 + 16
        print(f"peak RSS: {n1} batch(es) {m1} MiB, {10 * n1} batches {m10} MiB -> {'flat' if flat else 'GROWS'}")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}))


if __name__ == "__main__":
    main()
