"""The parameter schema: presets validate for every chapter; bad input is one clear sentence."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

import jupytext
import pytest
from pydantic import Field

from txmerge.base.errors import TxmergeError
from txmerge.chapters import params as tp
from txmerge.chapters import start

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.md"))


class DemoParams(tp.CommonParams):
    n_items: int = Field(3, ge=1)
    rate: float = 0.5
    mode: Literal["fast", "exact"] = "fast"
    sizes: list[int] = [1, 2]


@pytest.fixture
def demo(monkeypatch, tmp_path):
    """A registered 'demo' chapter and a private params folder holding the three presets."""
    monkeypatch.setitem(tp.CHAPTERS, "demo", DemoParams)
    for name in tp.PRESETS:
        (tmp_path / f"{name}.yaml").write_text(
            f"common:\n  seed: 1\nchapters:\n  demo:\n    n_items: {2 if name == 'smoke' else 3}\n"
        )
    monkeypatch.setenv("TXMERGE_PARAMS", str(tmp_path))
    return tmp_path


def _one_sentence(msg: str) -> None:
    assert "\n" not in msg and msg.endswith("."), msg


# ---------------------------------------------------------------- the committed presets and chapters
@pytest.mark.parametrize("preset", tp.PRESETS)
@pytest.mark.parametrize("chapter", sorted(tp.CHAPTERS))
def test_every_preset_validates_for_every_chapter(preset, chapter):
    p = tp.chapter_params(preset, chapter)
    assert p.preset == preset


@pytest.mark.parametrize("preset", tp.PRESETS)
def test_presets_have_a_section_per_chapter(preset):
    data = tp.load_preset(preset)
    for nb in NOTEBOOKS:
        assert nb.stem in tp.CHAPTERS, f"{nb.name} has no schema in txmerge.chapters.params.CHAPTERS"
        assert nb.stem in data["chapters"], f"params/{preset}.yaml has no section for {nb.stem}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_holds_the_tiny_values(path):
    nb = jupytext.read(path)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    ns: dict = {}
    exec(cells[0].source, ns)  # noqa: S102 - our own chapter source
    ns.pop("__builtins__", None)
    assert tp.validate_namespace(path.stem, ns) == tp.chapter_params("tiny", path.stem)


# ---------------------------------------------------------------- bad input
def test_unknown_preset_lists_the_presets():
    with pytest.raises(TxmergeError) as exc:
        tp.load_preset("huge")
    msg = str(exc.value)
    assert "'huge'" in msg and "tiny, smoke, paper" in msg
    _one_sentence(msg)


def test_unknown_chapter(demo):
    with pytest.raises(TxmergeError, match="no parameter schema"):
        tp.chapter_params("tiny", "99_nothing")


def test_unknown_parameter_names_it_and_the_allowed_ones(demo):
    with pytest.raises(TxmergeError) as exc:
        tp.validate("demo", {"n_itmes": 3})
    msg = str(exc.value)
    assert "'n_itmes'" in msg and "n_items" in msg and "mode" in msg
    _one_sentence(msg)


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"n_items": "three"}, "an integer (≥ 1)"),
        ({"n_items": 0}, "an integer (≥ 1)"),
        ({"rate": "fast"}, "a number"),
        ({"sizes": ["a"]}, "a list of integers"),
        ({"seed": "x"}, "an integer"),
    ],
)
def test_wrong_type_names_the_expected_type(demo, values, expected):
    with pytest.raises(TxmergeError) as exc:
        tp.validate("demo", values)
    msg = str(exc.value)
    assert f"'{next(iter(values))}'" in msg and expected in msg, msg
    _one_sentence(msg)


def test_bad_literal_lists_the_choices(demo):
    with pytest.raises(TxmergeError) as exc:
        tp.validate("demo", {"mode": "quick"})
    msg = str(exc.value)
    assert "'quick'" in msg and "'fast', 'exact'" in msg
    with pytest.raises(TxmergeError, match="'tiny', 'smoke', 'paper'"):
        tp.validate("demo", {"preset": "medium"})


def test_bad_value_in_a_preset_file_names_the_file(demo):
    (demo / "smoke.yaml").write_text("common:\n  seed: 0\nchapters:\n  demo:\n    mode: slow\n")
    with pytest.raises(TxmergeError) as exc:
        tp.chapter_params("smoke", "demo")
    assert "params/smoke.yaml" in str(exc.value) and "'fast', 'exact'" in str(exc.value)


def test_preset_file_with_unknown_section_or_chapter(demo):
    (demo / "tiny.yaml").write_text("common: {}\nchapterz: {}\n")
    with pytest.raises(TxmergeError, match="only the sections"):
        tp.load_preset("tiny")
    (demo / "tiny.yaml").write_text("chapters:\n  demoo: {}\n")
    with pytest.raises(TxmergeError, match="unknown chapter 'demoo'"):
        tp.chapter_params("tiny", "demo")


def test_preset_values_override_defaults(demo):
    assert tp.chapter_params("smoke", "demo").n_items == 2
    assert tp.chapter_params("smoke", "demo").seed == 1
    assert tp.chapter_params("smoke", "demo").mode == "fast"


# ---------------------------------------------------------------- inside a notebook
def test_validate_namespace_skips_non_parameters(demo):
    import math

    ns = {
        "preset": "tiny", "seed": 0, "n_items": 4, "mode": "exact",
        "In": [], "Out": {}, "get_ipython": lambda: None, "exit": None, "quit": None,
        "_started": 1.0, "_i1": "x", "math": math, "f": lambda x: x, "DemoParams": DemoParams,
        "P": DemoParams(),  # from an earlier run of the validation cell
    }
    p = tp.validate_namespace("demo", ns)
    assert p.n_items == 4 and p.mode == "exact"
    with pytest.raises(TxmergeError, match="Unknown parameter 'typo'.*papermill|Unknown parameter 'typo'"):
        tp.validate_namespace("demo", {**ns, "typo": 1})
    with pytest.raises(TxmergeError, match="papermill -p n_items"):
        tp.validate_namespace("demo", {**ns, "n_items": -1})


# ---------------------------------------------------------------- command line
def test_cli_prints_yaml_and_fails_in_one_sentence(demo, capsys):
    assert tp.main(["--preset", "smoke", "--chapter", "demo"]) == 0
    out = capsys.readouterr().out
    assert "preset: smoke" in out and "n_items: 2" in out
    assert tp.main(["--preset", "nope", "--chapter", "demo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Unknown preset 'nope'") and "\n" not in err


def test_cli_write_dir_rewrites_only_changed_files(demo, tmp_path):
    out = tmp_path / "out"
    assert tp.main(["--preset", "tiny", "--write-dir", str(out), "--chapters", "demo"]) == 0
    f = out / "demo.yaml"
    first = f.stat().st_mtime_ns
    assert tp.main(["--preset", "tiny", "--write-dir", str(out), "--chapters", "demo"]) == 0
    assert f.stat().st_mtime_ns == first, "unchanged parameters must not touch the file"
    assert tp.main(["--preset", "smoke", "--write-dir", str(out), "--chapters", "demo"]) == 0
    assert "preset: smoke" in f.read_text()


# ---------------------------------------------------------------- the paper preset needs the network
def test_hub_reachability_is_one_check_on_a_real_socket(monkeypatch):
    from txmerge.base import hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert not hub.hub_reachable(timeout=1, host="127.0.0.1", port=port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert hub.hub_reachable(timeout=1, host="127.0.0.1", port=s.getsockname()[1])
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert not hub.hub_reachable(timeout=1, host="127.0.0.1", port=s.getsockname()[1])


def test_require_online_only_for_paper(demo, monkeypatch, tmp_path):
    from txmerge.base import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start.require_online_for(tp.chapter_params("tiny", "demo"))  # no check for an offline preset
    start.require_online_for(tp.chapter_params("paper", "demo"))  # a chapter that takes nothing from the Hub
    with pytest.raises(TxmergeError) as exc:
        start.require_online_for(tp.chapter_params("paper", "02_ffn_attention"))
    assert "not in the Hugging Face cache" in str(exc.value) and "txmerge prefetch --preset paper" in str(exc.value)
