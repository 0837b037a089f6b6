"""Experiments as chains of cached library calls: what the chapters run.

One experiment = a preset's models, a correlation text and an evaluation. For a pair of seeds
(A = the lower seed, B = the higher, as in the paper):

1. ``statistics(pair)``: one feature pass over the correlation text collects every feature node
   (FF, attention, Q/K, all residual nodes) — cached on disk, shared by every merge method;
2. ``alignment(pair, method)``: correlations → permutations (cheap, from the cached statistics);
3. ``curve(pair, name, method)``: B permuted, function preservation verified, loss at every λ,
   both barriers — cached per (pair, method, settings).

``MLMExperiment`` evaluates the fixed-mask MLM loss; ``TaskExperiment`` a GLUE-style task loss.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import torch

from txmerge import data
from txmerge.base.cache import cached
from txmerge.base.errors import TxmergeError
from txmerge.base.presets import check_preset
from txmerge.core import models
from txmerge.core.evaluate import label_prior_baseline, mlm_loss, task_loss
from txmerge.core.features import all_nodes, collect_pair_moments
from txmerge.core.interpolate import check_lambdas, default_lambdas, interpolation_curve, loss_barrier, loss_barrier_linear
from txmerge.experiments.results import CurveResult, Results, barrier_table  # noqa: F401  (re-exported for the chapters)
from txmerge.methods.align import align_pair
from txmerge.methods.matchers.correlation import compute_alignment, matched_correlation
from txmerge.methods.method import NAMED_METHODS, Alignment, MergeMethod, method_named  # noqa: F401  (re-exported for the chapters)
from txmerge.zoo import finetune
from txmerge.zoo import tiny as zoo

Pair = tuple[int, int]

def check_pairs(pairs: Iterable[Sequence[int]]) -> list[Pair]:
    """Validate pairs of distinct seeds; returns them as (lower, higher) tuples."""
    out = []
    for p in pairs:
        if len(p) != 2 or int(p[0]) == int(p[1]):
            raise TxmergeError(f"Pair {list(p)} must name two different seeds, e.g. [1, 2].")
        out.append((min(int(p[0]), int(p[1])), max(int(p[0]), int(p[1]))))
    if not out:
        raise TxmergeError("No seed pairs given; pass at least one pair such as [[1, 2]].")
    return out


class Experiment:
    """Shared machinery; subclasses define the models, the correlation text and the evaluation."""

    kind = "mlm"

    def __init__(self, preset: str, *, n_sentences: int | None, batch_size: int = 8, max_length: int = 128,
                 drop_special_tokens: bool = False, lambdas=None, corr_seed: int = 0, progress: bool = True,
                 use_cache: bool = True, verify_atol: float = 1e-4, device: str = "cpu"):
        self.preset = check_preset(preset)
        self.n_sentences = n_sentences
        self.batch_size = batch_size
        self.max_length = max_length
        self.drop_special_tokens = drop_special_tokens
        self.lambdas = check_lambdas(default_lambdas() if lambdas is None else lambdas)
        self.corr_seed = corr_seed
        self.progress = progress
        self.use_cache = use_cache
        self.verify_atol = verify_atol
        self.device = device
        self.tokenizer = zoo.tokenizer_for(preset)
        self._models: dict[int, torch.nn.Module] = {}
        self._stats: dict[tuple, dict] = {}

    # -- to be defined by subclasses
    def model_path(self, seed: int) -> str:
        raise NotImplementedError

    def load(self, seed: int) -> torch.nn.Module:
        raise NotImplementedError

    def correlation_batches(self, n_sentences: int | None) -> list[dict[str, torch.Tensor]]:
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        raise NotImplementedError

    def verify_inputs(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """Everything besides the models that changes a curve (part of every cache key)."""
        return {"preset": self.preset, "batch_size": self.batch_size, "max_length": self.max_length,
                "drop_special_tokens": self.drop_special_tokens, "corr_seed": self.corr_seed, "batched": "by length"}

    # -- shared
    def model(self, seed: int) -> torch.nn.Module:
        if seed not in self._models:
            self._models[seed] = self.load(seed).to(self.device)
        return self._models[seed]

    def model_key(self, seed: int) -> str:
        return models.model_sha256(self.model_path(seed))

    def _n(self, n_sentences: int | None) -> int | None:
        return self.n_sentences if n_sentences is None else n_sentences

    def heldout_batches(self) -> list[dict[str, torch.Tensor]]:
        """Unlabelled batches of text the matching never sees (the evaluation text)."""
        raise NotImplementedError

    def statistics(self, pair: Pair, n_sentences: int | None = None, heldout: bool = False) -> dict:
        """Covariances of A's and B's features at every node (one pass; cached on disk and in memory),
        on the correlation text, or with ``heldout`` on :meth:`heldout_batches`."""
        n = None if heldout else self._n(n_sentences)
        text = {"heldout": self.eval_settings()} if heldout else {}
        key = {"a": self.model_key(pair[0]), "b": self.model_key(pair[1]), "n_sentences": n, **text, **self.settings()}
        mem = (pair, n, heldout)
        if mem not in self._stats:
            def compute() -> dict:
                model_a, model_b = self.model(pair[0]), self.model(pair[1])
                nodes = all_nodes(model_a.config.num_hidden_layers, qk=True)
                batches = self.heldout_batches() if heldout else self.correlation_batches(n)
                moments = collect_pair_moments(model_a, model_b, batches, nodes=nodes,
                                               drop_special_tokens=self.drop_special_tokens, progress=self.progress)
                tokens = int(next(iter(moments.values())).n)
                return {"covariances": {k: m.covariance() for k, m in moments.items()}, "tokens": tokens}

            self._stats[mem] = cached(f"{self.kind}-statistics", key, compute, enabled=self.use_cache)
        return self._stats[mem]

    def alignment(self, pair: Pair, method: MergeMethod, n_sentences: int | None = None) -> Alignment:
        """Permutations of B for ``method`` (from the cached statistics)."""
        stats = self.statistics(pair, n_sentences)
        return compute_alignment(stats["covariances"], self.model(pair[1]), method)

    def heldout_correlation(self, pair: Pair, method: MergeMethod, n_sentences: int | None = None) -> tuple[dict, dict]:
        """({group: matched correlation}, {group: unaligned correlation}) of ``method``'s alignment
        (matched on the correlation text) measured on the held-out text."""
        return matched_correlation(self.alignment(pair, method, n_sentences), self.statistics(pair, heldout=True)["covariances"])

    def curve(self, pair: Pair, name: str, method: MergeMethod | None = None, n_sentences: int | None = None) -> CurveResult:
        """Interpolation path of ``pair`` under ``method`` (default: NAMED_METHODS[name]); cached."""
        method = method or method_named(name)
        n = self._n(n_sentences)
        key = {"a": self.model_key(pair[0]), "b": self.model_key(pair[1]), "method": method.to_dict(),
               "n_sentences": n if (method.ff or method.attn or method.residual != "identity") else None,
               "lambdas": self.lambdas.tolist(), "eval": self.eval_settings(), **self.settings()}

        def compute() -> CurveResult:
            t0 = time.time()
            model_a, model_b = self.model(pair[0]), self.model(pair[1])
            statistics = None if method == MergeMethod() else self.statistics(pair, n)["covariances"]
            aligned = align_pair(model_a, model_b, method, self.verify_inputs(), statistics=statistics,
                                 atol=self.verify_atol, progress=self.progress)
            permuted, preserving, diff = aligned.permuted, aligned.function_preserving, aligned.verification.max_abs_diff
            matched = aligned.alignment.matched_corr if aligned.alignment else {}
            ident = aligned.alignment.identity_corr if aligned.alignment else {}
            df = interpolation_curve(model_a, permuted, self.evaluate, self.lambdas, progress=self.progress,
                                     desc=f"{pair[0]}-{pair[1]} {name}")
            loss = df["loss"].to_numpy()
            return CurveResult(pair, name, method.to_dict(), df, loss_barrier(loss, self.lambdas),
                               loss_barrier_linear(loss, self.lambdas), float(diff), preserving, matched, ident,
                               time.time() - t0)

        result = cached(f"{self.kind}-curve", key, compute, enabled=self.use_cache)
        return result if result.name == name else replace(result, name=name)  # one curve, several names

    def eval_settings(self) -> dict[str, Any]:
        return {}

    def run(self, pairs: Iterable[Sequence[int]], methods: Sequence[str] | Mapping[str, MergeMethod],
            n_sentences: int | None = None) -> Results:
        """Curves for every pair × method."""
        pairs = check_pairs(pairs)
        if not isinstance(methods, Mapping):
            methods = {m: method_named(m) for m in methods}
        return Results([self.curve(p, name, m, n_sentences) for p in pairs for name, m in methods.items()])

    def amount_sweep(self, pairs: Iterable[Sequence[int]], name: str, amounts: Sequence[int]) -> pd.DataFrame:
        """Barrier of method ``name`` per pair for each amount of correlation text: one row per
        (sentences, pair) with the tokens that amount holds (columns sentences, tokens, pair, barrier)."""
        pairs = check_pairs(pairs)
        rows = []
        for n in amounts:
            barriers = self.run(pairs, [name], n_sentences=n).barriers
            tokens = self.statistics(pairs[0], n)["tokens"]
            rows += [{"sentences": n, "tokens": tokens, "pair": r["pair"], "barrier": r["barrier"]} for _, r in barriers.iterrows()]
        return pd.DataFrame(rows)


class MLMExperiment(Experiment):
    """Masked-language-model merging: correlation text = the BookCorpus stand-in, loss = fixed-mask MLM loss."""

    kind = "mlm"

    def __init__(self, preset: str, *, eval_blocks: int | None = 106, text_mode: str = "clean", eval_seed: int = 42,
                 eval_batch_size: int = 64, model_paths: Mapping[int, str] | None = None, **kwargs):
        super().__init__(preset, **kwargs)
        self.model_paths = dict(model_paths or {})  # seed -> checkpoint, instead of the preset's (e.g. mid-training)
        self.eval_blocks = eval_blocks
        self.text_mode = text_mode
        self.eval_seed = eval_seed
        self.eval_batch_size = eval_batch_size
        self._eval_set: dict[str, torch.Tensor] | None = None

    @classmethod
    def from_params(cls, params: Any, device: str, **overrides: Any) -> "MLMExperiment":
        """The experiment of an MLM chapter's validated parameters (``txmerge.chapters.schemas.MLMParams``):
        its preset, correlation text, evaluation and λ grid; ``overrides`` replace any argument."""
        kwargs = dict(n_sentences=getattr(params, "n_sentences", None), eval_blocks=params.eval_blocks,
                      text_mode=params.text_mode, batch_size=params.batch_size, drop_special_tokens=params.drop_special_tokens,
                      lambdas=default_lambdas(params.n_lambdas), corr_seed=params.seed, device=device)
        return cls(params.preset, **{**kwargs, **overrides})

    def model_path(self, seed: int) -> str:
        if seed in self.model_paths:
            return str(self.model_paths[seed])
        return zoo.ensure_model(self.preset, seed)  # the smoke preset trains its micro model once

    def load(self, seed: int) -> torch.nn.Module:
        return models.load_model(self.model_path(seed), "mlm")

    def correlation_batches(self, n_sentences: int | None) -> list[dict[str, torch.Tensor]]:
        texts = data.correlation_text(self.preset, n_sentences=n_sentences, seed=self.corr_seed)["text"]
        texts = [texts[i] for i in data.length_order(self.tokenizer, texts, max_length=self.max_length)]
        return list(data.text_batches(texts, self.tokenizer, batch_size=self.batch_size, max_length=self.max_length))

    def eval_settings(self) -> dict[str, Any]:
        return {"blocks": self.eval_blocks, "text_mode": self.text_mode, "seed": self.eval_seed, "every_article": True}

    def _held_out(self) -> tuple[list[str], list[int] | None]:
        """(paragraphs, their article ids, or None for Wikitext, whose rows carry no article)."""
        held_out = data.mlm_eval_text(self.preset)
        return held_out["text"], held_out["article"] if "article" in held_out.column_names else None

    def eval_set(self) -> dict[str, torch.Tensor]:
        if self._eval_set is None:
            texts, articles = self._held_out()
            self._eval_set = data.mlm_eval_set(texts, self.tokenizer, max_blocks=self.eval_blocks, seed=self.eval_seed,
                                               articles=articles, text_mode=self.text_mode)
        return self._eval_set

    def eval_coverage(self) -> dict[str, int]:
        """Articles (of how many), blocks and tokens of the held-out text that :meth:`eval_set` covers."""
        texts, articles = self._held_out()
        return data.eval_coverage(texts, self.tokenizer, max_blocks=self.eval_blocks, seed=self.eval_seed, articles=articles)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        return mlm_loss(model, self.eval_set(), self.eval_batch_size)

    def heldout_batches(self) -> list[dict[str, torch.Tensor]]:
        es = self.eval_set()
        ids = torch.where(es["labels"] != -100, es["labels"], es["input_ids"])  # the text before masking
        return [{"input_ids": ids[i:i + self.batch_size], "attention_mask": es["attention_mask"][i:i + self.batch_size]}
                for i in range(0, len(ids), self.batch_size)]

    def verify_inputs(self) -> dict[str, torch.Tensor]:
        es = self.eval_set()
        return {"input_ids": es["input_ids"][:4], "attention_mask": es["attention_mask"][:4]}


#: the validation subset (``max_validation``) is the same for every correlation seed
VALIDATION_SAMPLE_SEED = 1


class TaskExperiment(Experiment):
    """GLUE-style merging of fine-tuned models: features on the task's training data, loss on its validation set."""

    kind = "task"

    def __init__(self, preset: str, task: str, *, max_validation: int | None = None, eval_batch_size: int = 64, **kwargs):
        super().__init__(preset, **kwargs)
        self.task = task
        self.info = data.task_info(task, preset)
        self.max_validation = max_validation
        self.eval_batch_size = eval_batch_size
        self._dataset = None
        self._eval_batches: list[dict[str, torch.Tensor]] | None = None

    @classmethod
    def from_params(cls, params: Any, task: str, device: str) -> "TaskExperiment":
        """The experiment of ``task`` under the GLUE chapter's validated parameters (``GlueParams``)."""
        return cls(params.preset, task, n_sentences=params.n_sentences, max_validation=params.max_validation,
                   batch_size=params.batch_size, lambdas=default_lambdas(params.n_lambdas), corr_seed=params.seed,
                   device=device)

    def dataset(self):
        if self._dataset is None:
            self._dataset = data.glue_task(self.task, self.preset)
        return self._dataset

    def model_path(self, seed: int) -> str:
        return finetune.ensure_finetuned(self.preset, self.task, seed, device=self.device, progress=self.progress)

    def load(self, seed: int) -> torch.nn.Module:
        return models.load_model(self.model_path(seed), "seqcls")

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "task": self.task, "correlation_sample": "seeded subset"}

    def correlation_batches(self, n_sentences: int | None) -> list[dict[str, torch.Tensor]]:
        # a seeded random subset: some training sets are sorted by label or genre
        train = data.by_length(data.subsample(self.dataset()["train"], n_sentences, seed=self.corr_seed),
                               self.tokenizer, self.max_length)
        batches = data.task_batches(train, self.tokenizer, batch_size=self.batch_size, max_length=self.max_length)
        return [{k: v for k, v in b.items() if k != "labels"} for b in batches]

    def eval_settings(self) -> dict[str, Any]:
        return {"max_validation": self.max_validation, "validation_sample": "seeded subset"}

    def eval_batches(self) -> list[dict[str, torch.Tensor]]:
        if self._eval_batches is None:
            val = data.by_length(data.subsample(self.dataset()["validation"], self.max_validation, seed=VALIDATION_SAMPLE_SEED),
                                 self.tokenizer, self.max_length)
            self._eval_batches = list(data.task_batches(val, self.tokenizer, batch_size=self.eval_batch_size,
                                                        max_length=self.max_length))
        return self._eval_batches

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        return task_loss(model, self.eval_batches(), self.info.is_regression)

    def heldout_batches(self) -> list[dict[str, torch.Tensor]]:
        return [{k: v for k, v in b.items() if k != "labels"} for b in self.eval_batches()]

    def prior_baseline(self) -> dict[str, float]:
        """Loss and metric on the evaluated validation examples of a model that ignores the text
        (``evaluate.label_prior_baseline`` fitted on the training labels)."""
        labels = torch.cat([b["labels"] for b in self.eval_batches()]).numpy()
        return label_prior_baseline(list(self.dataset()["train"]["label"]), labels, self.info.is_regression)

    def verify_inputs(self) -> dict[str, torch.Tensor]:
        b = self.eval_batches()[0]
        return {k: v[:8] for k, v in b.items() if k != "labels"}
