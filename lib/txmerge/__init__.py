"""txmerge: align and merge transformer models trained from different seeds (Verma & Elbayad, TMLR 2024).

The layers, bottom to top; a module imports only from its own layer or those below
(``../shared/tools/import_graph.py lib/txmerge`` finds no cycle):

| layer | modules | its job |
|---|---|---|
| ``base`` | ``errors``, ``presets``, ``cache`` + ``codehash``, ``hub``, ``precision`` | one-sentence errors, preset names, locations, the result cache keyed by inputs and the code they import, the Hugging Face caches, devices and autocast |
| ``families`` | one table per family | BERT, RoBERTa, DistilBERT, GPT-2 as data, discovered by ``core.spec`` |
| ``core`` | ``spec`` + ``headmaps``, ``features``, ``permute``, ``interpolate``, ``evaluate``, ``models`` | the permutation spec of a model, pair statistics and the hooks that collect them, applying and verifying maps, the λ path, losses, loading checkpoints |
| ``data`` | ``corpora``, ``tasks``, ``blocks``, ``fetch`` | texts, task analogues, evaluation blocks and tokenised batches, pinned archives |
| ``methods`` | ``method``, ``registry``, ``matchers/*``, ``align`` | what to align and the named methods, the registered matchers (one file each), ``align_pair`` |
| ``zoo`` | ``tiny``, ``finetune``, ``multiberts`` | the committed tiny-BERT zoo, its GLUE fine-tunes, the paper's MultiBERTs ids |
| ``experiments`` | ``pipeline``, ``results``, ``along_training``, ``claims``, ``verdicts``, ``estimates``, ``paper`` | cached experiments over seed pairs, the paper's numbers, claims, the verdict rule and the estimates table (effect, 90 % interval, pairs, the paper's effect) |
| ``chapters`` | ``start``, ``params``, ``schemas``, ``plan``, ``prefetch``, ``provenance``, ``plots`` | what the notebooks call |
| face | ``cli``, ``__main__`` | ``txmerge align | merge | curve | prefetch | zoo`` |

``txmerge.matching``, ``spec``, ``features`` and ``permute`` (the old flat names) still import, as
aliases of their new modules, for this release.

The public API a user needs to align two checkpoints::

    from txmerge import MergeMethod, align_pair, load_checkpoint, model_spec
"""

__version__ = "0.1.0"

#: The public API, imported on first use (so ``import txmerge.chapters.params`` stays light).
_API = {"AlignedPair": "methods.align", "align_pair": "methods.align", "NAMED_METHODS": "methods.method",
        "MergeMethod": "methods.method", "method_named": "methods.method", "matchers": "methods.registry",
        "compute_alignment": "methods.matchers.correlation", "required_nodes": "methods.method",
        "load_checkpoint": "core.models", "load_model": "core.models", "apply_permutations": "core.permute",
        "verify_function_preserved": "core.permute", "model_spec": "core.spec"}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f"txmerge.{_API[name]}"), name)
    raise AttributeError(f"module 'txmerge' has no attribute {name!r}")
