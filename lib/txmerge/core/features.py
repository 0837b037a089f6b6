"""Feature hooks at the paper's points and streaming float64 statistics of model pairs.

Nodes (CONTRIBUTING.md): ``ff.{l}`` (input of W2, post-GELU, width FF), ``attn.{l}`` (input of W_O,
per-head context, width d), ``res.emb`` / ``res.{l}.attn`` / ``res.{l}.ff`` (the residual stream
after the embeddings / the attention / the FF block; the LayerNorm outputs in post-LN models) and,
only when asked, ``qk.{l}`` (query and key outputs, pooled as two samples per token). Where each
node is hooked comes from the model family's table (:mod:`txmerge.families`).

For each node the pair statistics of ``z = [x_A; x_B]`` (``2d`` features) are kept as float64 sums
over the selected tokens. Only what a cross-correlation needs is accumulated by default: the sums
and sums of squares of all ``2d`` features and the ``d×d`` cross block ``Σ x_A x_Bᵀ``; the full
``2d×2d`` ``Σ z zᵀ`` (4× the work) only with ``full=True``. Products are computed in float32 (one
fused ``addmm_`` per batch into a float32 chunk of at most ``PairMoments.CHUNK_TOKENS`` tokens) and
the chunk is added into the float64 sums. Sums are taken around a fixed shift (the first batch's
mean), an exact re-centring that avoids cancellation and keeps constant features at exactly zero
variance. Memory is O(d²) per node (float64 sums + one float32 chunk), never O(tokens).

Only the cross block is needed because matching uses only Corr[A, B] and the variances, and the
``all`` residual strategy averages covariances, whose cross block and diagonal are again all it
needs; that keeps the FF statistics at one ``d×d`` product per batch instead of ``2d×2d``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from txmerge.base.errors import TxmergeError
from txmerge.base.precision import forward_autocast, full_precision
from txmerge.core.models import model_inputs
from txmerge.core.spec import family_of, feature_nodes, hook_points, node_kind, residual_nodes, sizes_of

__all__ = ["PairCovariance", "PairMoments", "all_nodes", "average_moments", "check_same_architecture",
           "collect_pair_moments", "residual_nodes"]

CORR_EPS = 1e-7  # official guard: denominator of a correlation clamped at 1e-7


# ----------------------------------------------------------------------------------------- nodes
all_nodes = feature_nodes  # every node in forward order (``qk.{l}`` only when asked)


# ------------------------------------------------------------------------------- statistics
@dataclass
class PairCovariance:
    """Population covariance pieces of ``z = [x_A; x_B]``: ``cross`` [d, d] = Cov(x_A, x_B),
    ``var`` [2d] (A's then B's variances), ``full`` [2d, 2d] when collected with ``full=True``."""

    cross: np.ndarray
    var: np.ndarray
    full: np.ndarray | None = None

    def correlation(self, absolute: bool = False) -> np.ndarray:
        """Cross-correlation [d, d] (rows A units, columns B units), float64, official guard:
        ``cov / max(σ_i σ_j, 1e-7)``; features with zero variance get correlation 0."""
        d = self.cross.shape[0]
        std = np.sqrt(np.clip(self.var, 0.0, None))
        std = np.nan_to_num(std, nan=0.0)
        sa, sb = std[:d], std[d:]
        denom = np.maximum(np.outer(sa, sb), CORR_EPS)
        corr = self.cross / denom
        corr[(sa == 0)[:, None] | (sb == 0)[None, :]] = 0.0
        corr = np.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)
        return np.abs(corr) if absolute else corr


@dataclass
class PairMoments:
    """Streaming float64 sums for one node over ``n`` samples of ``z = [x_A; x_B]`` (2d features).

    ``shift`` [2d]: the fixed centre the sums are taken around; ``sum_z`` [2d] = Σ(z−shift);
    ``sum_sq`` [2d] = Σ(z−shift)²; ``sum_ab`` [d, d] = Σ(x_A−s_A)(x_B−s_B)ᵀ;
    ``sum_zz`` [2d, 2d] = Σ(z−shift)(z−shift)ᵀ only when collected with ``full=True``.
    Products are accumulated in a float32 chunk of up to ``CHUNK_TOKENS`` samples (one fused
    ``addmm_`` per batch) and then added into the float64 sums; :meth:`flush` empties the chunk and
    every reader calls it.
    """

    n: int
    shift: torch.Tensor
    sum_z: torch.Tensor
    sum_sq: torch.Tensor
    sum_ab: torch.Tensor
    sum_zz: torch.Tensor | None = None
    _chunk: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    CHUNK_TOKENS = 8192

    @property
    def d(self) -> int:
        """Width of the node in one model."""
        return int(self.sum_ab.shape[0])

    @classmethod
    def empty(cls, shift: torch.Tensor, full: bool = False) -> "PairMoments":
        """Zero sums around ``shift`` [2d] (float64)."""
        with torch.inference_mode(False):  # normal tensors: usable in place after collection
            shift = shift.to(torch.float64).clone()
            d2 = shift.numel()
            z = lambda *s: torch.zeros(*s, dtype=torch.float64, device=shift.device)  # noqa: E731
            return cls(0, shift, z(d2), z(d2), z(d2 // 2, d2 // 2), z(d2, d2) if full else None)

    def update(self, xa: torch.Tensor, xb: torch.Tensor, owned: bool = False) -> None:
        """Add samples ``xa``, ``xb`` [tokens, d] (float32 products, float64 sums).
        ``owned=True`` lets float32 inputs be centred in place (pass only private copies)."""
        d = self.d
        s = self.shift.to(torch.float32)
        if owned and xa.dtype == torch.float32 and xb.dtype == torch.float32:
            ca, cb = xa.sub_(s[:d]), xb.sub_(s[d:])
        else:
            ca, cb = xa.float() - s[:d], xb.float() - s[d:]
        n = int(ca.shape[0])
        if n == 0:
            return
        self.n += n
        for c, part in ((ca, slice(0, d)), (cb, slice(d, 2 * d))):
            self.sum_z[part] += c.sum(0).double()
            self.sum_sq[part] += (c * c).sum(0).double()
        ch = self._chunk
        fresh = not ch.get("n")
        if fresh and "ab" not in ch:
            with torch.inference_mode(False):
                ch["ab"] = torch.empty(d, d, dtype=torch.float32, device=ca.device)
                if self.sum_zz is not None:
                    ch["zz"] = torch.empty(2 * d, 2 * d, dtype=torch.float32, device=ca.device)
        if fresh:
            torch.mm(ca.T, cb, out=ch["ab"])
        else:
            ch["ab"].addmm_(ca.T, cb)
        if self.sum_zz is not None:
            c = torch.cat([ca, cb], dim=1)
            torch.mm(c.T, c, out=ch["zz"]) if fresh else ch["zz"].addmm_(c.T, c)
        ch["n"] = ch.get("n", 0) + n
        if ch["n"] >= self.CHUNK_TOKENS:
            self.flush()

    def flush(self, release: bool = False) -> "PairMoments":
        """Add the float32 chunk into the float64 sums (``release`` also frees its buffers)."""
        ch = self._chunk
        if ch.get("n"):
            self.sum_ab.add_(ch["ab"])
            if self.sum_zz is not None:
                self.sum_zz.add_(ch["zz"])
            ch["n"] = 0
        if release:
            ch.clear()
        return self

    def shifted_to(self, shift: torch.Tensor) -> "PairMoments":
        """The same statistics expressed around another ``shift`` (exact algebra, float64)."""
        self.flush()
        delta = (self.shift - shift.to(self.shift)).to(torch.float64)  # z - new = (z - old) + delta
        d, n = self.d, self.n
        sz = self.sum_z + n * delta
        sq = self.sum_sq + 2 * delta * self.sum_z + n * delta * delta
        sab = self.sum_ab + torch.outer(self.sum_z[:d], delta[d:]) + torch.outer(delta[:d], self.sum_z[d:]) + n * torch.outer(delta[:d], delta[d:])
        szz = None
        if self.sum_zz is not None:
            szz = self.sum_zz + torch.outer(self.sum_z, delta) + torch.outer(delta, self.sum_z) + n * torch.outer(delta, delta)
        return PairMoments(n, shift.to(self.shift).clone(), sz, sq, sab, szz)

    def merged(self, other: "PairMoments") -> "PairMoments":
        """Statistics of both sample sets together (e.g. two shards of a corpus)."""
        self.flush()
        o = other.shifted_to(self.shift)
        szz = self.sum_zz + o.sum_zz if (self.sum_zz is not None and o.sum_zz is not None) else None
        return PairMoments(self.n + o.n, self.shift.clone(), self.sum_z + o.sum_z, self.sum_sq + o.sum_sq, self.sum_ab + o.sum_ab, szz)

    def mean(self) -> np.ndarray:
        """Mean of z [2d]."""
        self._check()
        self.flush()
        return (self.shift + self.sum_z / self.n).cpu().numpy()

    def covariance(self) -> PairCovariance:
        """Population covariance (divisor n) as :class:`PairCovariance`."""
        self._check()
        self.flush()
        n, d = self.n, self.d
        m = self.sum_z / n  # mean of (z - shift)
        cross = self.sum_ab / n - torch.outer(m[:d], m[d:])
        var = self.sum_sq / n - m * m
        full = None if self.sum_zz is None else (self.sum_zz / n - torch.outer(m, m)).cpu().numpy()
        return PairCovariance(cross.cpu().numpy(), var.cpu().numpy(), full)

    def correlation(self, absolute: bool = False) -> np.ndarray:
        """Cross-correlation [d, d] float64 (rows A, columns B); see :meth:`PairCovariance.correlation`."""
        return self.covariance().correlation(absolute)

    def _check(self) -> None:
        if self.n == 0:
            raise TxmergeError("these moments hold no tokens; feed at least one non-padding token.")


def average_moments(moments: Sequence[PairMoments | PairCovariance]) -> PairCovariance:
    """Mean of the nodes' population COVARIANCES (the ``all`` residual strategy, paper-spec §2.6/§2.10),
    to be turned into one correlation with ``.correlation()``."""
    if not moments:
        raise TxmergeError("average_moments got no nodes; pass at least one PairMoments.")
    covs = [m.covariance() if isinstance(m, PairMoments) else m for m in moments]
    if len({c.cross.shape for c in covs}) > 1:
        raise TxmergeError("average_moments got nodes of different widths; average nodes of one width only.")
    full = None if any(c.full is None for c in covs) else np.mean([c.full for c in covs], axis=0)
    return PairCovariance(np.mean([c.cross for c in covs], axis=0), np.mean([c.var for c in covs], axis=0), full)


# ------------------------------------------------------------------------------- collection
def check_same_architecture(model_a: nn.Module, model_b: nn.Module) -> None:
    """Raise TxmergeError if the two models differ in family, width, depth, heads, FF width or vocabulary."""
    fa, fb = family_of(model_a).name, family_of(model_b).name
    if fa != fb:
        raise TxmergeError(f"models are of different families ({fa} vs {fb}); align two models of one architecture.")
    names = ("width", "layers", "attention heads", "FF width")
    for name, va, vb in zip(names, sizes_of(model_a), sizes_of(model_b)):
        if va != vb:
            raise TxmergeError(f"models differ in {name} ({va} vs {vb}); align two models of the same architecture.")
    va, vb = model_a.config.vocab_size, model_b.config.vocab_size
    if va != vb:
        raise TxmergeError(f"models differ in vocab_size ({va} vs {vb}); align two models of the same architecture.")


class _StopForward(Exception):
    """Raised after the deepest needed hook so the rest of the forward pass is skipped."""


def _base_model(model: nn.Module) -> nn.Module:
    family_of(model)  # refuses an unknown family with the list of supported ones
    return getattr(model, "base_model", model)


def _select(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """[batch, seq, d] -> [tokens, d] (only kept tokens)."""
    x = x.reshape(-1, x.shape[-1])
    return x if keep is None else x.index_select(0, keep)


def collect_pair_moments(
    model_a: nn.Module,
    model_b: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    nodes: Sequence[str] | None = None,
    drop_special_tokens: bool = False,
    progress: bool = True,
    full: bool = False,
    autocast: bool | None = None,
) -> dict[str, PairMoments]:
    """Run both models over ``batches`` and return ``{node: PairMoments}``.

    ``batches``: dicts with ``input_ids``, ``attention_mask`` [batch, seq] (optionally
    ``token_type_ids``; ``special_tokens_mask`` required when ``drop_special_tokens``). Only tokens
    with ``attention_mask == 1`` count (and ``special_tokens_mask == 0`` when dropping specials).
    ``nodes``: ``None`` = every node except ``qk.{l}``. Only the base encoder runs (no MLM/task head),
    and it stops after the deepest requested node. Eval mode, ``torch.inference_mode``.
    ``autocast``: forward passes in bf16 (None = on CUDA only, see :mod:`txmerge.base.precision`); the
    features are then converted to float32 for the products, and the sums stay float64.
    """
    check_same_architecture(model_a, model_b)
    family = family_of(model_a)
    n_layers = sizes_of(model_a)[1]
    nodes = all_nodes(n_layers) if nodes is None else list(dict.fromkeys(nodes))
    if not nodes:
        raise TxmergeError("no feature nodes requested; pass node names or nodes=None for all.")
    for node in nodes:
        layer = node_kind(node)[1]
        if layer is not None and layer >= n_layers:
            raise TxmergeError(f"node {node!r} needs layer {layer} but the models have {n_layers} layers; use layers 0..{n_layers - 1}.")
    base_a, base_b = _base_model(model_a), _base_model(model_b)
    order = {n: i for i, n in enumerate(all_nodes(n_layers, qk=True))}
    last_node = max(nodes, key=order.__getitem__)
    last_point = hook_points(family, last_node)[-1][:3]

    moments: dict[str, PairMoments] = {}
    captured: dict[tuple, torch.Tensor] = {}  # (node, hook point) -> A's selected features
    state: dict[str, Any] = {"side": "a", "keep_a": None, "keep_b": None}
    dev_b = next(base_b.parameters()).device

    def make_hook(node: str, point: tuple):
        segment = point[2]

        def on_features(x: torch.Tensor) -> None:
            keep = state["keep_" + state["side"]]
            if segment is not None:
                width = x.shape[-1] // segment[1]
                x = x[..., segment[0] * width:(segment[0] + 1) * width]
            x = _select(x, keep)
            if state["side"] == "a":
                captured[(node, point)] = x.to(dev_b)
            else:
                xa = captured.pop((node, point))
                with full_precision(x.device):  # the statistics never run under autocast
                    if node not in moments:
                        shift = torch.cat([xa.float().mean(0), x.float().mean(0)]).double()
                        moments[node] = PairMoments.empty(shift, full=full)
                    # index_select made fresh copies that nothing else uses: centre them in place
                    moments[node].update(xa, x, owned=keep is not None and xa.dtype == torch.float32)
            if point == last_point:
                raise _StopForward

        def pre(_m, args, kwargs=None):
            on_features(args[0])

        def post(_m, _args, out):
            on_features(out[0] if isinstance(out, tuple) else out)

        return pre, post

    handles = []
    for base in [base_a] if base_a is base_b else [base_a, base_b]:  # one set of hooks per distinct module
        for node in nodes:
            for point in hook_points(family, node):
                pre, post = make_hook(node, point)
                module = base.get_submodule(point[0].rstrip("."))
                handles.append(module.register_forward_pre_hook(pre) if point[1] == "pre" else module.register_forward_hook(post))

    modes = (model_a.training, model_b.training)
    model_a.eval(), model_b.eval()
    seen_batches = 0
    try:
        with torch.inference_mode():
            for batch in tqdm(batches, desc="features", disable=None if progress else True):
                seen_batches += 1
                for side, base in (("a", base_a), ("b", base_b)):
                    feed, keep = _prepare(batch, base, drop_special_tokens)
                    if keep is not None and keep.numel() == 0:
                        break
                    state["side"], state["keep_" + side] = side, keep
                    try:
                        with forward_autocast(next(base.parameters()).device, autocast):
                            base(**feed)
                    except _StopForward:
                        pass
                captured.clear()
    finally:
        for h in handles:
            h.remove()
        model_a.train(modes[0]), model_b.train(modes[1])
    if seen_batches == 0:
        raise TxmergeError("no batches were given; pass a non-empty iterable of tokenised batches.")
    if not moments:
        raise TxmergeError("the batches hold no selected tokens (all padding or special); pass batches with real tokens.")
    return {n: moments[n].flush(release=True) for n in nodes}


def _prepare(batch: Mapping[str, Any], base: nn.Module, drop_special: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Model inputs on the model's device, and flat indices of the kept tokens (None = all)."""
    if "input_ids" not in batch or "attention_mask" not in batch:
        raise TxmergeError("each batch needs 'input_ids' and 'attention_mask'; tokenise with padding and return_attention_mask=True.")
    feed = model_inputs(base, batch)
    device = feed["input_ids"].device
    mask = torch.as_tensor(batch["attention_mask"]).to(device).bool()
    if drop_special:
        if batch.get("special_tokens_mask") is None:
            raise TxmergeError("drop_special_tokens=True needs 'special_tokens_mask' in every batch; tokenise with return_special_tokens_mask=True.")
        mask = mask & ~torch.as_tensor(batch["special_tokens_mask"]).to(device).bool()
    if bool(mask.all()):
        return feed, None
    return feed, mask.reshape(-1).nonzero().squeeze(1)
