"""What the paper preset takes from the Hub, chapter by chapter, and ``txmerge prefetch``, which puts it
into the standard Hugging Face caches on a machine with internet (then GPU nodes run offline).

| item | used by |
|---|---|
| ``google/multiberts-seed_N`` (the seeds of every pair; seed 0 for the tokenizer) | every paper chapter but the exercises |
| ``google/multiberts-seed_N-step_{100,400,1000}k`` (seeds of the first pair) | when the barrier appears (FF and attention chapter) |
| ``bookcorpus/bookcorpus`` at ``refs/convert/parquet``, ``train`` | the correlation text of the MLM chapters |
| ``Salesforce/wikitext`` ``wikitext-103-raw-v1``, ``validation`` | the MLM evaluation (and the models chapter's coverage) |
| ``nyu-mll/glue``, one config per task, ``train`` and the validation split | the GLUE chapter |

Models are downloaded with ``huggingface_hub.snapshot_download`` (config, tokenizer files and one
weights file: safetensors where the repository has them); datasets with ``datasets.load_dataset``,
which also prepares them in ``HF_DATASETS_CACHE`` (what an offline ``load_dataset`` reads).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from txmerge.base.errors import TxmergeError
from txmerge.base.hub import SKIP_SUFFIXES, WEIGHTS, HubItem, hub_reachable, missing, offline_forced
from txmerge.chapters import params as tp
from txmerge.chapters import schemas as sc
from txmerge.data import corpora, tasks
from txmerge.zoo import multiberts
from txmerge.zoo import tiny as zoo

WIKITEXT = HubItem("dataset", "Salesforce/wikitext", "wikitext-103-raw-v1", ("validation",), what="Wikitext-103")
BOOKCORPUS = HubItem("dataset", corpora.BOOKCORPUS_HUB, None, ("train",), corpora.BOOKCORPUS_REVISION, what="BookCorpus")
TOKENIZER = HubItem("tokenizer", zoo.PAPER_TOKENIZER, what="The tokenizer of")


def model_item(seed: int) -> HubItem:
    return HubItem("model", zoo.model_id("paper", seed), what="The model")


def step_item(seed: int, k: int) -> HubItem:
    """MultiBERTs' intermediate checkpoint of ``seed`` after ``k`` thousand steps (see :mod:`txmerge.experiments.along_training`)."""
    return HubItem("model", multiberts.snapshot_id(seed, k), what="The intermediate checkpoint")


def glue_item(task: str) -> HubItem:
    """The ``nyu-mll/glue`` config of a task the paper uses (one clear error for any other name)."""
    if task not in tasks.GLUE_TASKS:
        raise TxmergeError(f"GLUE config {task!r} is not one of the paper's tasks; choose among {', '.join(tasks.GLUE_TASKS)}.")
    return HubItem("dataset", tasks.GLUE_HUB, task, ("train", tasks.GLUE_VALIDATION_SPLIT.get(task, "validation")),
                   what=f"The GLUE task {task}")


def _seeds(pairs: Iterable[Iterable[int]]) -> list[int]:
    return sorted({int(s) for p in pairs for s in p})


def chapter_items(params: sc.CommonParams) -> list[HubItem]:
    """Everything the chapter with ``params`` (validated, paper preset) reads from the Hub (the exercises: nothing)."""
    if params.preset != "paper":
        return []
    if isinstance(params, sc.ModelsDataParams):
        return [TOKENIZER, WIKITEXT]
    if isinstance(params, sc.GlueParams):
        return [TOKENIZER, *map(model_item, _seeds(params.pairs)), *map(glue_item, params.tasks), WIKITEXT]
    if isinstance(params, sc.MLMParams):
        steps = []
        if isinstance(params, sc.FFAttentionParams) and all(0 <= s <= 4 for s in params.pairs[0]):
            steps = [step_item(s, k) for s in _seeds([params.pairs[0]]) for k in multiberts.PAPER_STEPS_K.values()]
        return [TOKENIZER, *map(model_item, _seeds(params.pairs)), *steps, BOOKCORPUS, WIKITEXT]
    return []


def preset_items(preset: str = "paper", chapters: Iterable[str] | None = None) -> list[HubItem]:
    """The Hub items of every chapter of ``preset`` (``params/<preset>.yaml``), each once, in chapter order."""
    out: dict[HubItem, None] = {}
    for chapter in chapters or sc.CHAPTERS:
        for item in chapter_items(tp.chapter_params(preset, chapter)):
            out.setdefault(item, None)
    return list(out)


def require_for(params: sc.CommonParams) -> None:
    """Before any work: stop with one sentence if the run is offline and an item of the chapter is not cached."""
    from txmerge.base.hub import require_cached

    require_cached(chapter_items(params))


# ---------------------------------------------------------------------------------------------
# Downloading
# ---------------------------------------------------------------------------------------------
def model_files(siblings: Iterable[tuple[str, int]], weights: bool = True) -> list[tuple[str, int]]:
    """The (file, bytes) of a model repository worth downloading: configs, tokenizer files and one weights
    file (safetensors where there are; none with ``weights=False``)."""
    files = [(n, s) for n, s in siblings if "/" not in n and not n.endswith(SKIP_SUFFIXES) and n != ".gitattributes"]
    names = {n for n, _ in files}
    weights = next((w for w in WEIGHTS if w in names), None) if weights else None
    return [(n, s) for n, s in files if n == weights or not n.endswith((".safetensors", ".bin"))]


def dataset_files(item: HubItem, siblings: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """The (file, bytes) of a dataset repository that ``item``'s config is made of (its folder's parquet files)."""
    folder = (item.config or "plain_text") + "/"
    return [(n, s) for n, s in siblings if n.startswith(folder) and n.endswith(".parquet")]


def plan_downloads(items: list[HubItem], api: Any = None) -> list[dict]:
    """One row per item: ``item``, ``files`` [(name, bytes)], ``bytes`` (0 when already complete in the cache)."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    rows = []
    for item in items:
        if missing(item) is None:
            rows.append({"item": item, "files": [], "bytes": 0})
            continue
        try:
            if item.kind != "dataset":
                info = api.model_info(item.repo_id, files_metadata=True)
                files = model_files(((s.rfilename, s.size or 0) for s in info.siblings), weights=item.kind == "model")
            else:
                info = api.dataset_info(item.repo_id, revision=item.revision, files_metadata=True)
                files = dataset_files(item, ((s.rfilename, s.size or 0) for s in info.siblings))
        except Exception as exc:  # noqa: BLE001 - any Hub failure is reported in one sentence
            raise TxmergeError(f"The Hub did not describe {item.ref} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                               "check the name and your network, then rerun the prefetch.") from None
        rows.append({"item": item, "files": files, "bytes": sum(s for _, s in files)})
    return rows


def _download(row: dict) -> None:
    item: HubItem = row["item"]
    if item.kind != "dataset":
        from huggingface_hub import snapshot_download

        snapshot_download(item.repo_id, allow_patterns=[n for n, _ in row["files"]])
    else:
        import datasets

        datasets.load_dataset(item.repo_id, item.config, revision=item.revision)


def prefetch(items: list[HubItem], api: Any = None, download: Callable[[dict], None] = _download,
             echo: Callable[[str], None] = print, dry_run: bool = False) -> list[dict]:
    """Download ``items`` into the standard Hugging Face caches: print the plan and its total size first,
    then fetch item by item with progress (``dry_run``: only the plan); returns the plan. Stops with one
    sentence without network."""
    if offline_forced():
        raise TxmergeError("HF_HUB_OFFLINE is set, so nothing can be downloaded; unset it (and run on a machine with internet) to prefetch.")
    if not hub_reachable():
        raise TxmergeError("The Hugging Face Hub cannot be reached from this machine, so nothing can be prefetched; run "
                           "`txmerge prefetch --preset paper` where there is internet (a login node) and share its HF_HOME.")
    plan = plan_downloads(items, api)
    todo = [r for r in plan if r["bytes"] or r["files"]]
    total = sum(r["bytes"] for r in plan)
    echo(f"{len(items)} items for the paper preset, {len(todo)} to download, {total / 1e9:.2f} GB in all:")
    for r in plan:
        state = f"{r['bytes'] / 1e9:7.2f} GB" if r in todo else "  (cached)"
        echo(f"  {state}  {r['item'].ref}")
    if dry_run:
        return plan
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, desc="prefetch", disable=None) as bar:
        for r in todo:
            bar.set_postfix_str(r["item"].ref)
            download(r)
            bar.update(r["bytes"])
    left = [r["item"].ref for r in plan if missing(r["item"])]
    if left:
        raise TxmergeError(f"After the download {left[0]} is still not complete in the cache; rerun the prefetch (it resumes).")
    echo("The caches hold everything; GPU nodes can now run the paper preset with HF_HUB_OFFLINE=1 and the same HF_HOME.")
    return plan
