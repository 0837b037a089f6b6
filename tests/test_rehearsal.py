"""The paper preset rehearsed end to end without the Hub: every chapter of notebooks/ executed by
``make notebooks PRESET=paper`` (papermill, as ``make book`` does) with ``HF_HUB_OFFLINE=1``, reading
micro MultiBERTs, GLUE, Wikitext-103 and BookCorpus from a local Hub mirror (tests/hub_mirror.py)
through the real ``from_pretrained`` / ``load_dataset`` calls. The preset is ``params/paper.yaml`` with
every size shrunk (``SHRINK``), so it runs in minutes on a CPU; what it proves is that a GPU user's
first run takes the same code path without crashing after an hour.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hub_mirror import build_mirror, mirror_env
from txmerge.chapters import params as tp
from txmerge.chapters import prefetch

pytest_plugins = ["book_fixtures"]
pytestmark = pytest.mark.slow

#: Overrides of params/paper.yaml: the paper's code path at toy sizes (the micro models are 2 layers, 32 wide).
SHRINK: dict[str, dict] = {
    "common": {"threads": 1},
    "01_models_and_data": {"seeds": [1, 2]},
    "02_ffn_attention": {"pairs": [[1, 2], [3, 4]], "eval_blocks": 2, "n_lambdas": 3, "n_sentences": 48, "heatmap_units": 16},
    "03_attention_heads": {"pairs": [[1, 2], [3, 4]], "eval_blocks": 2, "n_lambdas": 3, "n_sentences": 48},
    "04_residual": {"pairs": [[1, 2], [3, 4]], "eval_blocks": 2, "n_lambdas": 3, "n_sentences": 48},
    # the official code's character-spaced evaluation text, to compare with the paper's numbers like for like
    "05_data_amount": {"pairs": [[1, 2], [3, 4]], "eval_blocks": 2, "n_lambdas": 3, "amounts": [16, 48], "text_mode": "char_spaced"},
    "06_glue": {"pairs": [[1, 2]], "n_sentences": 16, "max_validation": 8, "n_lambdas": 3},
    "07_exercises": {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "seq_len": 32, "n_tokens": 1024, "n_lambdas": 5},
}


def shrunk_presets(src: Path, dest: Path) -> Path:
    """A params folder: the repository's presets, paper.yaml with :data:`SHRINK` applied (keys must exist there)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.yaml"):
        (dest / f.name).write_text(f.read_text())
    paper = yaml.safe_load((src / "paper.yaml").read_text())
    paper["common"].update(SHRINK["common"])
    for chapter, values in paper["chapters"].items():
        unknown = set(SHRINK.get(chapter, {})) - set(values)
        assert not unknown, f"SHRINK sets {unknown} that params/paper.yaml's {chapter} does not have"
        values.update(SHRINK.get(chapter, {}))
    (dest / "paper.yaml").write_text(yaml.safe_dump(paper, sort_keys=False))
    return dest


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, book_tools):
    base = tmp_path_factory.mktemp("paper-rehearsal")
    root = book_tools.copy_repo(base / "repo")
    home = build_mirror(base / "hf-home")
    env = book_tools.make_env(root, base / "cache")
    env.update(mirror_env(home), TXMERGE_PARAMS=str(shrunk_presets(root / "params", base / "params")))
    env.pop("TXMERGE_HUB_LOCAL", None)
    log = base / "make-notebooks.log"
    cmd = ["make", "--no-print-directory", "notebooks", "PRESET=paper", "INSTALL=0", f"PY={sys.executable}"]
    start = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=1800)
    seconds = time.monotonic() - start
    print(f"\npaper rehearsal: make notebooks PRESET=paper took {seconds:.0f} s")
    return book_tools.BookBuild(root=root, returncode=proc.returncode, seconds=seconds, log=log)


def test_every_chapter_runs_on_the_paper_preset_offline(rehearsal):
    assert rehearsal.returncode == 0, f"make notebooks PRESET=paper failed offline:\n{rehearsal.tail(80)}"
    assert "executing chapter 06_glue (preset paper)" in rehearsal.log.read_text(errors="replace")
    stems = sorted(p.stem for p in (rehearsal.root / "notebooks").glob("*.md"))
    assert len(stems) >= 7
    for stem in stems:
        nb = json.loads((rehearsal.root / "executed" / f"{stem}.ipynb").read_text())
        params = nb["metadata"]["papermill"]["parameters"]
        assert params["preset"] == "paper", stem
        outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
        errors = [o for o in outputs if o.get("output_type") == "error"]
        assert not errors, f"{stem}: {errors[0]}"
        text = "".join("".join(o.get("text", "")) for o in outputs)
        assert "LOAD REPORT" not in text, f"{stem} shows transformers' load report of a MultiBERTs checkpoint"
        if prefetch.chapter_items(tp.validate(stem, params)):  # a chapter that reads the Hub prints its plan first
            assert "Plan (" in text and "time: about" in text, f"{stem} printed no plan"
    glue = json.loads((rehearsal.root / "executed" / "06_glue.ipynb").read_text())
    assert glue["metadata"]["papermill"]["parameters"]["tasks"] == ["mnli", "qqp", "qnli", "sst2", "cola", "stsb", "mrpc", "rte"]
    finetunes = sorted(p.parent.parent.name for p in (rehearsal.root / "zoo" / "paper-glue").glob("*/seed_1/finetune.json"))
    assert finetunes == sorted(glue["metadata"]["papermill"]["parameters"]["tasks"])
