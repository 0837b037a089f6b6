"""Benchmark a 21-point interpolation curve against 21 bare forward passes, and project one paper-scale pair.

    .venv/bin/python bench/bench_curve.py                  # small (4 layers, 128 wide), < 1 min
    .venv/bin/python bench/bench_curve.py --size medium    # 4 layers, 256 wide
    .venv/bin/python bench/bench_curve.py --bert-base      # 12 layers, 768, 12 heads, 3072, vocab 30522, 2 blocks
    .venv/bin/python bench/bench_curve.py --device cuda    # on a GPU (wall clock, synchronised)

Both sides see the same fixed-mask evaluation set (blocks of 128 tokens, 15 % masked) in batches of
``--eval-batch-size``, in eval mode under ``torch.inference_mode``:

- ``bare``: 21 times, the computation the MLM loss needs on one fixed model: the encoder on every
  block and the MLM head on the masked positions (``evaluate.mlm_loss_masked_only``), nothing else;
- ``curve``: ``interpolate.interpolation_curve`` over 21 λ with ``evaluate.mlm_loss`` (path set-up,
  in-place λ updates of the one working model, loss bookkeeping included). Target: ≤ 1.15× ``bare``.

Also printed: the ratio against 21 stock forward passes (``model(**batch)``: the MLM head on every
position), the overhead per λ, and the time of one ``InterpolationPath.set`` alone.

Projection of one paper-scale pair (BERT-base): 100k correlation sentences ≈ 1.6M tokens through both
models (the feature-statistics pass, every node), plus 21 λ × 250k evaluation tokens, from per-token
times measured in this run at BERT-base size (a short probe of a few blocks unless ``--bert-base``):
statistics = the fixed cost of one pass + 1.6M × seconds per token (from passes over n and 2n blocks);
curve = 21 × (250k × bare seconds per token + the fixed cost of one λ update). With few blocks per λ
(``--bert-base`` uses 2) the fixed λ update dominates the measured ratio; at 250k tokens per λ it vanishes.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import BertConfig, BertForMaskedLM

from txmerge.core.evaluate import mlm_loss, mlm_loss_masked_only
from txmerge.core.features import collect_pair_moments
from txmerge.core.interpolate import InterpolationPath, default_lambdas, interpolation_curve

SIZES = {
    "small": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512, vocab_size=8000, blocks=32),
    "medium": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024, vocab_size=8000, blocks=16),
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, vocab_size=30522, blocks=2),
}
SEQ = 128
MASK_ID = 4
PAPER_CORR_TOKENS = 1_600_000  # 100k BookCorpus sentences
PAPER_EVAL_TOKENS = 250_000  # Wikitext-103 validation
N_LAMBDA = 21


class Clock:
    """Process CPU time on CPU (robust to other jobs on a shared machine); synchronised wall time on a GPU."""

    def __init__(self, device: torch.device, wall: bool):
        self.cuda = device.type == "cuda"
        self.wall = wall or self.cuda
        self.name = "wall" if self.wall else "process CPU"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() if self.wall else time.process_time()


def build(size: str, seed: int, device: torch.device) -> BertForMaskedLM:
    cfg = {k: v for k, v in SIZES[size].items() if k != "blocks"}
    torch.manual_seed(seed)
    return BertForMaskedLM(BertConfig(max_position_embeddings=SEQ, **cfg)).eval().to(device)


def eval_set(size: str, n_blocks: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fixed-mask synthetic MLM blocks [n_blocks, 128]: 15 % of positions masked (label = original id)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, SIZES[size]["vocab_size"], (n_blocks, SEQ), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    chosen = torch.rand((n_blocks, SEQ), generator=g) < 0.15
    chosen[:, 0] = chosen[:, -1] = False
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    inputs = torch.where(chosen, torch.full_like(ids, MASK_ID), ids)
    return {k: v.to(device) for k, v in {"input_ids": inputs, "labels": labels, "attention_mask": torch.ones_like(ids)}.items()}


def bare_passes(model, es, batch_size: int, n: int, full: bool = False) -> None:
    """``n`` evaluations of one fixed model doing only what the loss needs (or the stock forward if ``full``)."""
    rows = es["input_ids"].shape[0]
    with torch.inference_mode():
        for _ in range(n):
            for i in range(0, rows, batch_size):
                sl = slice(i, i + batch_size)
                if full:
                    model(input_ids=es["input_ids"][sl], attention_mask=es["attention_mask"][sl])
                else:
                    float(mlm_loss_masked_only(model, es["input_ids"][sl], es["attention_mask"][sl], es["labels"][sl]))


def timed(fns: dict, repeats: int, clock: Clock) -> dict[str, float]:
    """Best of ``repeats`` for each function, interleaved so load drift hits all alike."""
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = clock()
            fn()
            best[k] = min(best[k], clock() - t0)
    return best


def measure_curve(size: str, n_blocks: int, batch_size: int, repeats: int, clock: Clock, device: torch.device) -> dict:
    a, b = build(size, 0, device), build(size, 1, device)
    es = eval_set(size, n_blocks, device)
    lambdas = default_lambdas(N_LAMBDA)
    curve = lambda: interpolation_curve(a, b, lambda m: mlm_loss(m, es, batch_size), lambdas, progress=False)  # noqa: E731
    bare = lambda: bare_passes(a, es, batch_size, N_LAMBDA)  # noqa: E731
    stock = lambda: bare_passes(a, es, batch_size, N_LAMBDA, full=True)  # noqa: E731
    bare_passes(a, es, batch_size, 1), curve()  # warm-up
    t = timed({"bare": bare, "curve": curve, "stock": stock}, repeats, clock)
    path = InterpolationPath(a, b)
    t0 = clock()
    for lam in lambdas:
        path.set(lam)
    t_set = (clock() - t0) / N_LAMBDA
    tokens = n_blocks * SEQ
    return dict(size=size, blocks=n_blocks, tokens_per_pass=tokens, bare_s=t["bare"], curve_s=t["curve"], stock_s=t["stock"],
                ratio=t["curve"] / t["bare"], ratio_vs_stock=t["curve"] / t["stock"],
                overhead_per_lambda_s=(t["curve"] - t["bare"]) / N_LAMBDA, set_per_lambda_s=t_set,
                eval_s_per_token=t["curve"] / (N_LAMBDA * tokens))


def measure_stats_cost(size: str, n_blocks: int, batch_size: int, clock: Clock, device: torch.device) -> tuple[float, float]:
    """(seconds per correlation token, fixed seconds per pass) of the feature-statistics pass (both
    models, every node), from passes over ``n_blocks`` and ``2 * n_blocks`` blocks: the fixed part
    (allocating and flushing the float64 sums, ~1 GB at BERT-base) must not be spread over a short probe's tokens."""
    a, b = build(size, 0, device), build(size, 1, device)
    es = eval_set(size, 2 * n_blocks, device, seed=1)
    batch_size = min(batch_size, n_blocks)
    batches = [{"input_ids": es["input_ids"][i : i + batch_size], "attention_mask": es["attention_mask"][i : i + batch_size]}
               for i in range(0, 2 * n_blocks, batch_size)]
    collect_pair_moments(a, b, batches[:1], progress=False)  # warm-up
    seconds = []
    for part in (batches[: len(batches) // 2], batches):
        t0 = clock()
        collect_pair_moments(a, b, part, progress=False)
        seconds.append(clock() - t0)
    per_token = max(seconds[1] - seconds[0], 0.0) / (n_blocks * SEQ)
    return per_token, max(seconds[0] - n_blocks * SEQ * per_token, 0.0)


def fmt_hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--bert-base", action="store_true", help="same as --size bert-base")
    p.add_argument("--blocks", type=int, default=None, help="evaluation blocks of 128 tokens (default: per size)")
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--wall", action="store_true", help="time with wall clock instead of process CPU time (always on a GPU)")
    p.add_argument("--probe-blocks", type=int, default=4, help="BERT-base blocks of the projection probe (when not --bert-base)")
    p.add_argument("--no-projection", action="store_true", help="skip the BERT-base probe and the paper-scale projection")
    args = p.parse_args()
    size = "bert-base" if args.bert_base else args.size
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    clock = Clock(device, args.wall)
    n_blocks = args.blocks or SIZES[size]["blocks"]
    cfg = SIZES[size]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"size={size} ({cfg['num_hidden_layers']} layers, d={cfg['hidden_size']}, FF={cfg['intermediate_size']}, V={cfg['vocab_size']}), "
          f"{n_blocks} blocks x {SEQ} tokens, eval batch {args.eval_batch_size}, {N_LAMBDA} λ, {where}, clock={clock.name}, best of {args.repeats}")

    r = measure_curve(size, n_blocks, args.eval_batch_size, args.repeats, clock, device)
    verdict = "OK" if r["ratio"] <= 1.15 else "ABOVE target"
    print(f"21 bare passes (encoder + MLM head on masked tokens) {r['bare_s']:.3f}s   21 stock forwards (head on every token) "
          f"{r['stock_s']:.3f}s   interpolation_curve over 21 λ {r['curve_s']:.3f}s")
    print(f"ratio curve / bare: {r['ratio']:.3f}x (target <= 1.15x: {verdict});  curve / stock forward: {r['ratio_vs_stock']:.3f}x")
    print(f"overhead per λ: {1e3 * r['overhead_per_lambda_s']:.2f} ms (of which InterpolationPath.set {1e3 * r['set_per_lambda_s']:.2f} ms); "
          f"one λ evaluation {1e3 * r['curve_s'] / N_LAMBDA:.1f} ms")

    if not args.no_projection:
        if size == "bert-base":
            bare_tok = r["bare_s"] / (N_LAMBDA * r["tokens_per_pass"])
            per_lambda = max(r["overhead_per_lambda_s"], 0.0)
            stats_tok, stats_fixed = measure_stats_cost("bert-base", n_blocks, args.eval_batch_size, clock, device)
            probe = f"measured above, {n_blocks} blocks"
        else:  # a short BERT-base probe: bare throughput, the cost of one λ update, the statistics pass
            probe_blocks = args.probe_blocks
            a, b = build("bert-base", 0, device), build("bert-base", 1, device)
            es = eval_set("bert-base", probe_blocks, device)
            bare_passes(a, es, args.eval_batch_size, 1)  # warm-up
            bare_tok = timed({"bare": lambda: bare_passes(a, es, args.eval_batch_size, 1)}, 1, clock)["bare"] / (probe_blocks * SEQ)
            path = InterpolationPath(a, b)
            path.set(0.5)
            t0 = clock()
            for lam in (0.25, 0.75):
                path.set(lam)
            per_lambda = (clock() - t0) / 2
            del a, b, path
            stats_tok, stats_fixed = measure_stats_cost("bert-base", probe_blocks, args.eval_batch_size, clock, device)
            probe = f"BERT-base probe of {probe_blocks} blocks"
        t_stats = stats_fixed + PAPER_CORR_TOKENS * stats_tok
        t_bare = N_LAMBDA * PAPER_EVAL_TOKENS * bare_tok
        t_curve = t_bare + N_LAMBDA * per_lambda
        r.update(proj_stats_s=t_stats, proj_curve_s=t_curve, proj_total_s=t_stats + t_curve, proj_curve_ratio=t_curve / t_bare,
                 bert_base_bare_s_per_token=bare_tok, bert_base_overhead_per_lambda_s=per_lambda,
                 bert_base_stats_s_per_pair_token=stats_tok, bert_base_stats_fixed_s=stats_fixed)
        print(f"paper-scale pair projection ({where}; {probe}):")
        print(f"  feature statistics, {PAPER_CORR_TOKENS / 1e6:.1f}M tokens through both BERT-base models: "
              f"{1e3 * stats_tok:.2f} ms/token + {stats_fixed:.1f} s per pass -> {fmt_hours(t_stats)}")
        print(f"  curve, {N_LAMBDA} λ x {PAPER_EVAL_TOKENS // 1000}k tokens: {1e3 * bare_tok:.3f} ms/token + {1e3 * per_lambda:.0f} ms per λ "
              f"-> {fmt_hours(t_curve)} (curve / bare at this scale: {t_curve / t_bare:.4f}x)")
        print(f"  one pair, one method: {fmt_hours(t_stats + t_curve)} (each further method on the same pair adds the curve only)")
    print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()}))


if __name__ == "__main__":
    main()
