"""Command line: ``txmerge align``, ``merge``, ``curve``, ``prefetch`` and ``zoo …`` (also ``python -m txmerge``).

``align``, ``merge`` and ``curve`` take two checkpoints of one supported family (BERT, RoBERTa,
DistilBERT, GPT-2), each loaded as the class its config names, and write results in that class,
with the same tensors. The loss follows the head: masked-LM loss for masked LMs, next-token loss
for causal LMs, task loss for classifiers (a labelled TSV). Bad input exits with status 2 and one
sentence on standard error; nothing half-written is left.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from txmerge.base.errors import TxmergeError
from txmerge.base.presets import PRESETS
from txmerge.core.spec import COMPONENTS, RESIDUAL_MODES, TIED_DECODER_MODES
from txmerge.data.blocks import limit_tokens, read_passages
from txmerge.methods.method import HEAD_MODES, RESIDUAL_STRATEGIES
from txmerge.methods.registry import matchers


def _components(value: str) -> tuple[str, ...]:
    if value.strip() == "none":
        return ()
    parts = tuple(p.strip() for p in value.split(",") if p.strip())
    bad = [p for p in parts if p not in COMPONENTS]
    if bad or not parts:
        raise TxmergeError(f"Unknown component(s) {', '.join(bad) or value!r}; use 'none' or a comma-separated subset of "
                           f"{', '.join(COMPONENTS)}.")
    return parts


def _method(args: argparse.Namespace):
    """The merge method of the align/merge options, checked before any model is loaded."""
    from txmerge.methods.method import MergeMethod

    if args.max_tokens is not None and args.max_tokens <= 0:
        raise TxmergeError(f"--max-tokens must be a positive number of tokens, got {args.max_tokens}.")
    comps = _components(args.components)
    if args.residual not in (None, "identity") and "residual" not in comps:
        raise TxmergeError(f"--residual {args.residual} needs the 'residual' component; add it to --components or drop --residual.")
    residual = (args.residual or "first") if "residual" in comps else "identity"
    if "residual" in comps and residual == "identity":
        raise TxmergeError(f"The 'residual' component needs a strategy; pass --residual {'|'.join(RESIDUAL_MODES)}.")
    return MergeMethod(ff="ff" in comps, attn="attn" in comps, residual=residual, heads=args.heads,
                       separate_qk=args.separate_qk, absolute=args.absolute, tied_decoder=args.tied_decoder,
                       matcher=args.matcher)


def _tokenizer(model_ref: str, model, explicit: str | None):
    """The explicit tokenizer, else model A's own (its folder or Hub id), else the zoo's when it fits the vocabulary."""
    from transformers import AutoTokenizer

    from txmerge.core import models
    from txmerge.zoo import tiny as zoo

    if explicit:
        return AutoTokenizer.from_pretrained(explicit)
    target = models.resolve(model_ref)
    if models.is_hub_id(target):
        return zoo.load_tokenizer(zoo.PAPER_TOKENIZER if target.startswith(zoo.HUB_PREFIX) else target)
    if (Path(target) / "tokenizer_config.json").exists() or (Path(target) / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(target)
    tok = zoo.load_tokenizer()
    if len(tok) != model.config.vocab_size:
        raise TxmergeError(f"{target} holds no tokenizer; pass --tokenizer (a folder or Hub id of the models' tokenizer).")
    return tok


def _load_pair(args: argparse.Namespace):
    from txmerge.core import models
    from txmerge.core.features import check_same_architecture

    model_a, model_b = models.load_checkpoint(args.model_a), models.load_checkpoint(args.model_b)
    check_same_architecture(model_a, model_b)
    if type(model_a) is not type(model_b):
        raise TxmergeError(f"model A is a {type(model_a).__name__} but model B a {type(model_b).__name__}; "
                           "align two checkpoints of the same class.")
    return model_a, model_b, _tokenizer(args.model_a, model_a, args.tokenizer)


def _seq_len(model) -> int:
    """The sequence length of the command's batches and blocks: 128, or less where the model takes fewer."""
    from txmerge.core.spec import family_of

    return min(128, family_of(model).max_tokens(model.config))


def _aligned(args: argparse.Namespace, method, model_a, model_b, tokenizer):
    """B aligned to A by ``method`` (plain B for --components none)."""
    import torch

    from txmerge import data
    from txmerge.methods.align import align_pair, is_plain_average

    torch.manual_seed(args.seed)
    if is_plain_average(method):
        return align_pair(model_a, model_b, method, None)
    if not matchers()[method.matcher].needs_statistics and not args.text:
        # the maps come from the weights alone: random token ids only check that B's function is kept
        g = torch.Generator().manual_seed(args.seed)
        ids = torch.randint(model_a.config.vocab_size, (4, min(32, _seq_len(model_a))), generator=g)
        return align_pair(model_a, model_b, method, {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                          progress=not args.quiet)
    if args.text:
        texts = read_passages(args.text)
    else:
        from txmerge.core.spec import family_of

        if family_of(model_a).name != "bert":
            raise TxmergeError("The presets' correlation texts are for the BERT zoo; pass --text (one passage per line).")
        texts = data.correlation_text(args.preset, seed=args.seed)["text"]
    batches = limit_tokens(data.text_batches(texts, tokenizer, batch_size=args.batch_size, max_length=_seq_len(model_a)),
                            args.max_tokens)
    probe = {k: v[:8] for k, v in batches[0].items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    return align_pair(model_a, model_b, method, probe, batches=batches, progress=not args.quiet)


def _evaluator(args: argparse.Namespace, model, tokenizer, text: str | None):
    """(loss name, evaluate(model) -> {"loss", ...}) for the model's head on ``text``."""
    from txmerge import data
    from txmerge.core import models
    from txmerge.core.evaluate import clm_loss, mlm_loss, task_loss

    kind = models.loss_kind(model)
    if kind is None:
        raise TxmergeError(f"{type(model).__name__} has no head, so there is no loss to measure; pass checkpoints with "
                           "a language-model or classification head.")
    if kind == "task":
        if not text:
            raise TxmergeError("A classifier's loss needs labelled data: pass --text a TSV with a header holding "
                               "sentence1, optional sentence2, and label.")
        ds = _read_task(text)
        regression = any(isinstance(v, float) and not float(v).is_integer() for v in ds["label"])
        batches = list(data.task_batches(ds, tokenizer, batch_size=32, max_length=_seq_len(model)))
        return "task loss", lambda m: task_loss(m, batches, regression)
    lines = read_passages(text) if text else data.mlm_eval_text(args.preset)["text"]
    if kind == "clm":
        blocks = data.token_blocks(lines, tokenizer, _seq_len(model), args.eval_blocks, sample_seed=args.seed)
        import torch

        batch = {"input_ids": blocks, "attention_mask": torch.ones_like(blocks)}
        return "next-token loss", lambda m: clm_loss(m, batch)
    eval_set = data.mlm_eval_set(lines, tokenizer, block_size=_seq_len(model), max_blocks=args.eval_blocks, seed=args.seed)
    return "MLM loss", lambda m: mlm_loss(m, eval_set)


def _read_task(path: str):
    import datasets
    import pandas as pd

    if not Path(path).exists():
        raise TxmergeError(f"Task file {path} does not exist; pass a TSV with sentence1, optional sentence2, and label.")
    df = pd.read_csv(path, sep="\t")
    if not {"sentence1", "label"} <= set(df.columns) or df.empty:
        raise TxmergeError(f"{path} needs a header with sentence1 and label (and optionally sentence2), and rows below it.")
    return datasets.Dataset.from_pandas(df[[c for c in ("sentence1", "sentence2", "label") if c in df.columns]])


def _write_folder(out: Path, overwrite: bool, write) -> None:
    """Call ``write(tmp)`` on a fresh folder beside ``out`` and move it into place only when it succeeded."""
    from txmerge.base.cache import atomic_write

    if out.exists() and any(out.iterdir()) and not overwrite:
        raise TxmergeError(f"{out} is not empty; choose another --out or pass --overwrite.")
    atomic_write(out, write, directory=True)


def cmd_align(args: argparse.Namespace) -> int:
    import torch

    method = _method(args)
    model_a, model_b, tokenizer = _load_pair(args)
    aligned = _aligned(args, method, model_a, model_b, tokenizer)
    report = {"model_a": str(args.model_a), "model_b": str(args.model_b), "class": type(model_b).__name__, **aligned.report()}

    def write(tmp: Path) -> None:
        aligned.permuted.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        perms = aligned.alignment.perms if aligned.alignment else {}
        torch.save({k: v.clone() for k, v in perms.items()}, tmp / "permutations.pt")
        (tmp / "report.json").write_text(json.dumps(report, indent=1))

    out = Path(args.out)
    _write_folder(out, args.overwrite, write)
    print(json.dumps({k: report[k] for k in ("class", "method", "tokens", "function_preserving", "verification")}, indent=1))
    print(f"wrote {out}/model (B in A's basis), {out}/permutations.pt and {out}/report.json")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from txmerge.core.interpolate import InterpolationPath

    if not 0.0 <= args.lam <= 1.0:
        raise TxmergeError(f"--lambda must lie in [0, 1] (1 = model A, 0 = model B), got {args.lam}.")
    method = _method(args)
    model_a, model_b, tokenizer = _load_pair(args)
    evaluate = _evaluator(args, model_a, tokenizer, args.eval_text)[1] if args.eval_text else None
    aligned = _aligned(args, method, model_a, model_b, tokenizer)
    merged = InterpolationPath(model_a, aligned.permuted).set(args.lam)
    report = {"model_a": str(args.model_a), "model_b": str(args.model_b), "class": type(model_a).__name__,
              "lambda": args.lam, **aligned.report()}
    if evaluate:
        report["loss"] = {"A": evaluate(model_a)["loss"], "B": evaluate(model_b)["loss"], "merged": evaluate(merged)["loss"]}

    def write(tmp: Path) -> None:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "merge_report.json").write_text(json.dumps(report, indent=1))

    _write_folder(Path(args.out), args.overwrite, write)
    print(json.dumps({k: report[k] for k in ("class", "lambda", "method", "function_preserving", "verification", "loss")
                      if k in report}, indent=1))
    print(f"wrote the merged checkpoint to {args.out} (with merge_report.json)")
    return 0


def cmd_curve(args: argparse.Namespace) -> int:
    import numpy as np

    from txmerge.core.interpolate import default_lambdas, interpolation_curve, loss_barrier, loss_barrier_linear

    if args.points < 2:
        raise TxmergeError(f"--points must be at least 2 (the two endpoints), got {args.points}.")
    lambdas = default_lambdas(args.points)
    model_a, model_b, tokenizer = _load_pair(args)
    name, evaluate = _evaluator(args, model_a, tokenizer, args.text)
    df = interpolation_curve(model_a, model_b, evaluate, lambdas, progress=not args.quiet)
    b, bl = loss_barrier(df["loss"], lambdas), loss_barrier_linear(df["loss"], lambdas)
    from txmerge.base.cache import atomic_write

    out = atomic_write(args.out, lambda tmp: df.to_csv(tmp, index=False))
    print(df.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"{name} barrier (max − mean of endpoints): {b:.4f} nats")
    print(f"{name} barrier (max − linear interpolation of endpoints): {bl:.4f} nats")
    print(f"wrote {out}")
    return 0 if np.isfinite(b) else 1


def cmd_zoo(args: argparse.Namespace) -> int:
    import shutil

    from txmerge.base.cache import results_dir
    from txmerge.zoo import tiny as zoo

    if args.zoo_cmd == "train":
        overrides = {k: v for k, v in (("steps", args.steps), ("threads", args.threads), ("hidden_size", args.hidden_size),
                                       ("intermediate_size", args.intermediate_size)) if v is not None}
        recipe = zoo.TinyRecipe(**overrides)
        root = Path(args.out) if args.out else None
        work = None
        if root is not None and root.resolve() != zoo.checkpoint_path(0).parent.resolve():
            work = results_dir() / "zoo-train" / root.name  # its own checkpoints: never resume another zoo's seed
            tokenizer = zoo.tokenizer_dir(root)
            if not (tokenizer / "tokenizer.json").exists():  # the same tokenizer as the tiny zoo
                shutil.copytree(zoo.tokenizer_dir(), tokenizer, dirs_exist_ok=True)
        entry = zoo.train_seed(args.seed, recipe, out_root=root, work_root=work)
        zoo.write_manifest(root)
        print(f"seed {args.seed}: held-out MLM loss {entry['final_heldout_loss']:.3f} after {entry['steps']} steps ({entry['wall_seconds']:.0f} s)")
    elif args.zoo_cmd == "manifest":
        m = zoo.write_manifest(Path(args.out) if args.out else None)
        print(f"manifest lists {len(m['models'])} models")
    elif args.zoo_cmd == "tokenizer":
        tok = zoo.train_tokenizer(zoo.tokenizer_dir())
        print(f"tokenizer with {len(tok)} tokens written to {zoo.tokenizer_dir()}")
    elif args.zoo_cmd == "finetune":
        from txmerge.zoo import finetune

        out = Path(args.out) if args.out else finetune.glue_root(args.preset)
        entry = finetune.finetune_seed(args.task, args.seed, preset=args.preset, out_root=out, device=args.device,
                                       base_root=Path(args.base) if args.base else None)
        finetune.write_glue_manifest(out)
        print(json.dumps({k: entry[k] for k in ("task", "seed", "validation")}, indent=1))
    return 0


def cmd_prefetch(args: argparse.Namespace) -> int:
    from txmerge.chapters import prefetch

    items = prefetch.preset_items(args.preset)
    if not items:
        print(f"The {args.preset} preset takes nothing from the Hugging Face Hub (its pinned archives are fetched by make book).")
        return 0
    prefetch.prefetch(items, dry_run=args.dry_run)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="txmerge", description="Align and merge BERTs trained from different seeds (Verma & Elbayad, TMLR 2024).")
    sub = p.add_subparsers(dest="cmd", required=True)

    def pair_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("model_a", help="model A: a folder (save_pretrained), a zoo name like seed_1, or a Hub id")
        q.add_argument("model_b", help="model B (same family, sizes and class as A)")
        q.add_argument("--tokenizer", help="tokenizer folder or Hub id (default: model A's)")
        q.add_argument("--preset", default="tiny", choices=PRESETS, help="default texts when --text is not given (BERT zoo)")
        q.add_argument("--quiet", action="store_true")

    def align_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--components", default=",".join(COMPONENTS),
                       help=f"comma-separated subset of {','.join(COMPONENTS)}, or none (default: the paper's full method)")
        registered = matchers()
        q.add_argument("--matcher", default="correlation", choices=tuple(registered),
                       help="how the maps are found: " + "; ".join(f"{n}: {m.description}" for n, m in registered.items()))
        q.add_argument("--heads", default=HEAD_MODES[0], choices=HEAD_MODES)
        q.add_argument("--residual", default=None, choices=RESIDUAL_STRATEGIES,
                       help="residual strategy (default: first when the residual component is on)")
        q.add_argument("--tied-decoder", default=TIED_DECODER_MODES[0], choices=TIED_DECODER_MODES,
                       help="masked LMs: align the LM head (correct), the minimal fix (untied), or the released code (official)")
        q.add_argument("--separate-qk", action="store_true", help="own Q/K permutation sharing the head mapping")
        q.add_argument("--absolute", action="store_true", help="match on |correlation| (the paper uses signed)")
        q.add_argument("--text", help="correlation text: UTF-8 file, one passage per line (default: the preset's corpus; matchers that read only the weights, such as weight, need none)")
        q.add_argument("--max-tokens", type=int, default=None, help="stop the correlation pass after this many tokens")
        q.add_argument("--batch-size", type=int, default=8)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--overwrite", action="store_true")

    a = sub.add_parser("align", help="permute model B into model A's basis; write it (same class), the permutations and a report")
    pair_args(a)
    align_args(a)
    a.add_argument("--out", required=True, help="output folder")
    a.set_defaults(func=cmd_align)

    m = sub.add_parser("merge", help="align B to A, interpolate, and write the merged checkpoint (same class) with a report")
    pair_args(m)
    align_args(m)
    m.add_argument("--out", required=True, help="output folder of the merged checkpoint")
    m.add_argument("--lambda", dest="lam", type=float, default=0.5, help="weight of model A (default 0.5)")
    m.add_argument("--eval-text", help="evaluation text (a TSV with labels for classifiers): report the loss of A, B and the merge")
    m.add_argument("--eval-blocks", type=int, default=160)
    m.set_defaults(func=cmd_merge)

    c = sub.add_parser("curve", help="loss along the straight line from B (λ=0) to A (λ=1), and both barriers")
    pair_args(c)
    c.add_argument("--out", required=True, help="CSV file for the curve")
    c.add_argument("--text", help="evaluation text, one passage per line (a TSV with labels for classifiers)")
    c.add_argument("--points", type=int, default=21, help="number of λ values, endpoints included (default 21)")
    c.add_argument("--eval-blocks", type=int, default=160)
    c.add_argument("--seed", type=int, default=42, help="seed of the fixed MLM masks and of the evaluation blocks")
    c.set_defaults(func=cmd_curve)

    pf = sub.add_parser("prefetch", help="download what a preset's chapters take from the Hugging Face Hub into the standard "
                        "caches (HF_HOME), so that they run offline (HF_HUB_OFFLINE=1)")
    pf.add_argument("--preset", default="paper", choices=PRESETS)
    pf.add_argument("--dry-run", action="store_true", help="print the items and their size, download nothing")
    pf.set_defaults(func=cmd_prefetch)

    z = sub.add_parser("zoo", help="regenerate the tiny-BERT seed zoo")
    zs = z.add_subparsers(dest="zoo_cmd", required=True)
    t = zs.add_parser("train", help="pretrain one seed (resumable)")
    t.add_argument("--seed", type=int, required=True)
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--threads", type=int, default=None, help="CPU threads (default: the recipe's, 1)")
    t.add_argument("--hidden-size", type=int, default=None, help="residual width (default: the recipe's, 128)")
    t.add_argument("--intermediate-size", type=int, default=None, help="FF width (default: the recipe's, 512)")
    t.add_argument("--out", help="zoo folder (default zoo/tiny; its tokenizer/ is used, copied from zoo/tiny if absent)")
    mf = zs.add_parser("manifest", help="rewrite the zoo's MANIFEST.json")
    mf.add_argument("--out", help="zoo folder (default zoo/tiny)")
    zs.add_parser("tokenizer", help="retrain the WordPiece tokenizer")
    f = zs.add_parser("finetune", help="fine-tune one seed on one GLUE analogue")
    f.add_argument("--task", required=True)
    f.add_argument("--seed", type=int, required=True)
    f.add_argument("--preset", default="tiny", choices=PRESETS)
    f.add_argument("--device", default="cpu", help="cpu or cuda")
    f.add_argument("--base", help="zoo folder of the pretrained seeds (default: the preset's)")
    f.add_argument("--out", help="folder of the fine-tunes (default: the preset's, zoo/tiny-glue for tiny)")
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
