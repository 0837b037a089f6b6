"""Command line: ``txmerge align``, ``txmerge curve`` and ``txmerge zoo …`` (also ``python -m txmerge``).

Bad input exits with status 2 and one sentence on standard error; nothing half-written is left.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .errors import TxmergeError

COMPONENTS = ("ff", "attn", "residual")


def _components(value: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in value.split(",") if p.strip())
    bad = [p for p in parts if p not in COMPONENTS]
    if bad or not parts:
        raise TxmergeError(f"Unknown component(s) {', '.join(bad) or value!r}; use a comma-separated subset of {', '.join(COMPONENTS)}.")
    return parts


def _read_lines(path: str) -> list[str]:
    p = Path(path)
    if not p.exists():
        raise TxmergeError(f"Text file {path} does not exist; pass a UTF-8 file with one passage per line.")
    lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise TxmergeError(f"Text file {path} holds no text; pass a file with one passage per line.")
    return lines


def _limit_tokens(batches, max_tokens: int | None):
    if max_tokens is None:
        return list(batches)
    out, seen = [], 0
    for b in batches:
        out.append(b)
        seen += int(b["attention_mask"].sum())
        if seen >= max_tokens:
            break
    return out


def _tokenizer(model_ref: str, explicit: str | None):
    """The explicit tokenizer, else model A's own (its folder or the MultiBERTs one), else the zoo's."""
    from . import zoo

    if explicit:
        return zoo.load_tokenizer(explicit)
    target = zoo.resolve(model_ref)
    if target.startswith("google/"):
        return zoo.load_tokenizer(zoo.PAPER_TOKENIZER)
    if (Path(target) / "tokenizer.json").exists():
        return zoo.load_tokenizer(target)
    return zoo.load_tokenizer()


def cmd_align(args: argparse.Namespace) -> int:
    import torch

    from . import data, zoo
    from .features import collect_pair_moments
    from .matching import MergeMethod, compute_alignment, required_nodes
    from .permute import apply_permutations, verify_function_preserved

    comps = _components(args.components)
    if args.residual not in (None, "identity") and "residual" not in comps:
        raise TxmergeError(f"--residual {args.residual} needs the 'residual' component; add it to --components or drop --residual.")
    residual = (args.residual or "first") if "residual" in comps else "identity"
    if "residual" in comps and residual == "identity":
        raise TxmergeError("The 'residual' component needs a strategy; pass --residual first|last|all|separate.")
    method = MergeMethod(ff="ff" in comps, attn="attn" in comps, residual=residual, heads=args.heads,
                         separate_qk=args.separate_qk, absolute=args.absolute)
    torch.manual_seed(args.seed)
    model_a = zoo.load_model(args.model_a, args.kind)
    model_b = zoo.load_model(args.model_b, args.kind)
    tokenizer = _tokenizer(args.model_a, args.tokenizer)
    texts = _read_lines(args.text) if args.text else data.correlation_text(args.preset, seed=args.seed)["text"]
    batches = _limit_tokens(data.text_batches(texts, tokenizer, batch_size=args.batch_size, max_length=128), args.max_tokens)
    t0 = time.time()
    moments = collect_pair_moments(model_a, model_b, batches, nodes=required_nodes(method, model_a.config.num_hidden_layers),
                                   progress=not args.quiet)
    t_stats = time.time() - t0
    alignment = compute_alignment(moments, model_b, method)
    permuted = apply_permutations(model_b, alignment.perms, alignment.spec)
    probe = batches[0]
    check = verify_function_preserved(model_b, permuted, {k: v[:8] for k, v in probe.items() if k in ("input_ids", "attention_mask", "token_type_ids")})
    if alignment.function_preserving and not check.ok:
        raise TxmergeError(f"The permutation changed model B's outputs by {check.max_abs_diff:.2e}; the spec does not fit this architecture, so nothing was written.")
    report = {
        "model_a": str(args.model_a), "model_b": str(args.model_b), "method": method.to_dict(),
        "tokens": int(next(iter(moments.values())).n) if moments else 0,
        "function_preserving": alignment.function_preserving,
        "verification": {"max_abs_diff": check.max_abs_diff, "ok": check.ok, "atol": check.atol},
        "matched_corr": alignment.matched_corr, "identity_corr": alignment.identity_corr,
        "seconds": {"statistics": round(t_stats, 2), "total": round(time.time() - t0, 2)},
    }
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise TxmergeError(f"{out} is not empty; choose another --out or pass --overwrite.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        permuted.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        torch.save({k: v.clone() for k, v in alignment.perms.items()}, tmp / "permutations.pt")
        (tmp / "report.json").write_text(json.dumps(report, indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(json.dumps({k: report[k] for k in ("method", "tokens", "function_preserving", "verification")}, indent=1))
    print(f"wrote {out}/model (B in A's basis), {out}/permutations.pt and {out}/report.json")
    return 0


def cmd_curve(args: argparse.Namespace) -> int:
    import numpy as np

    from . import data, zoo
    from .evaluate import mlm_loss
    from .interpolate import default_lambdas, interpolation_curve, loss_barrier, loss_barrier_linear

    lambdas = default_lambdas(args.points)
    model_a = zoo.load_model(args.model_a, "mlm")
    model_b = zoo.load_model(args.model_b, "mlm")
    tokenizer = _tokenizer(args.model_a, args.tokenizer)
    texts = _read_lines(args.text) if args.text else data.mlm_eval_text(args.preset)["text"]
    eval_set = data.mlm_eval_set(texts, tokenizer, max_blocks=args.eval_blocks, seed=args.seed)
    df = interpolation_curve(model_a, model_b, lambda m: mlm_loss(m, eval_set), lambdas, progress=not args.quiet)
    b, bl = loss_barrier(df["loss"], lambdas), loss_barrier_linear(df["loss"], lambdas)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(out)
    print(df.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"loss barrier (max − mean of endpoints): {b:.4f} nats")
    print(f"loss barrier (max − linear interpolation of endpoints): {bl:.4f} nats")
    print(f"wrote {out}")
    return 0 if np.isfinite(b) else 1


def cmd_zoo(args: argparse.Namespace) -> int:
    from . import zoo

    if args.zoo_cmd == "train":
        recipe = zoo.TinyRecipe() if args.steps is None else zoo.TinyRecipe(steps=args.steps)
        entry = zoo.train_seed(args.seed, recipe)
        zoo.write_manifest()
        print(f"seed {args.seed}: held-out MLM loss {entry['final_heldout_loss']:.3f} after {entry['steps']} steps ({entry['wall_seconds']:.0f} s)")
    elif args.zoo_cmd == "manifest":
        m = zoo.write_manifest()
        print(f"manifest lists {len(m['models'])} models")
    elif args.zoo_cmd == "tokenizer":
        tok = zoo.train_tokenizer(zoo.tokenizer_dir())
        print(f"tokenizer with {len(tok)} tokens written to {zoo.tokenizer_dir()}")
    elif args.zoo_cmd == "finetune":
        entry = zoo.finetune_seed(args.task, args.seed)
        zoo.write_glue_manifest()
        print(json.dumps({k: entry[k] for k in ("task", "seed", "validation")}, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="txmerge", description="Align and merge BERTs trained from different seeds (Verma & Elbayad, TMLR 2024).")
    sub = p.add_subparsers(dest="cmd", required=True)

    a = sub.add_parser("align", help="permute model B into model A's basis; write it, the permutations and a report")
    a.add_argument("model_a", help="model A: a folder (save_pretrained), a zoo name like seed_1, or a Hub id")
    a.add_argument("model_b", help="model B (same architecture as A)")
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--components", default="ff,attn,residual", help="comma-separated subset of ff,attn,residual (default: the paper's full method)")
    a.add_argument("--heads", default="permute", choices=("permute", "monotonic", "ignore"))
    a.add_argument("--residual", default=None, choices=("identity", "first", "last", "all", "separate"),
                   help="residual strategy (default: first when the residual component is on)")
    a.add_argument("--separate-qk", action="store_true", help="own Q/K permutation sharing the head mapping")
    a.add_argument("--absolute", action="store_true", help="match on |correlation| (the paper uses signed)")
    a.add_argument("--text", help="correlation text: UTF-8 file, one passage per line (default: the preset's corpus)")
    a.add_argument("--preset", default="tiny", choices=("tiny", "smoke", "paper"))
    a.add_argument("--tokenizer", help="tokenizer folder or Hub id (default: model A's)")
    a.add_argument("--kind", default="mlm", choices=("mlm", "seqcls"))
    a.add_argument("--max-tokens", type=int, default=None)
    a.add_argument("--batch-size", type=int, default=8)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--overwrite", action="store_true")
    a.add_argument("--quiet", action="store_true")
    a.set_defaults(func=cmd_align)

    c = sub.add_parser("curve", help="MLM loss along the straight line from B (λ=0) to A (λ=1), and both barriers")
    c.add_argument("model_a")
    c.add_argument("model_b", help="typically the aligned model written by `txmerge align`")
    c.add_argument("--out", required=True, help="CSV file for the curve")
    c.add_argument("--text", help="evaluation text file, one passage per line (default: the preset's held-out text)")
    c.add_argument("--preset", default="tiny", choices=("tiny", "smoke", "paper"))
    c.add_argument("--tokenizer")
    c.add_argument("--points", type=int, default=21, help="number of λ values, endpoints included (default 21)")
    c.add_argument("--eval-blocks", type=int, default=160)
    c.add_argument("--seed", type=int, default=42, help="seed of the fixed MLM masks")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_curve)

    z = sub.add_parser("zoo", help="regenerate the tiny-BERT seed zoo")
    zs = z.add_subparsers(dest="zoo_cmd", required=True)
    t = zs.add_parser("train", help="pretrain one seed (resumable)")
    t.add_argument("--seed", type=int, required=True)
    t.add_argument("--steps", type=int, default=None)
    zs.add_parser("manifest", help="rewrite zoo/tiny/MANIFEST.json")
    zs.add_parser("tokenizer", help="retrain the WordPiece tokenizer")
    f = zs.add_parser("finetune", help="fine-tune one seed on one GLUE analogue")
    f.add_argument("--task", required=True)
    f.add_argument("--seed", type=int, required=True)
    z.set_defaults(func=cmd_zoo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except TxmergeError as exc:
        print(f"txmerge: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
