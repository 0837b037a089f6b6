"""The command line: one clear sentence and status 2 on bad input, an end-to-end `align` + `curve` of two
smoke micro checkpoints, and nothing half-written after a failure. The pinned archives come from the
shared ``downloads`` fixture (conftest.py), which fetches what is missing and never skips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import BertForMaskedLM

from txmerge import cli, data
from txmerge.core import models
from txmerge.core.evaluate import mlm_loss
from txmerge.core.permute import apply_permutations
from txmerge.core.spec import bert_spec
from txmerge.zoo import tiny as zoo

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ environment
@pytest.fixture
def ckpts(env) -> tuple[str, str]:
    return str(zoo.ensure_smoke_model(1)), str(zoo.ensure_smoke_model(2))


@pytest.fixture
def text_file(tmp_path) -> Path:
    """~80 lines of the committed novels (well over 2 blocks of 128 tokens)."""
    path = tmp_path / "passages.txt"
    path.write_text("\n".join(data.correlation_text("smoke", n_sentences=80)["text"]) + "\n", encoding="utf-8")
    return path


def _fails_with_one_sentence(capsys, argv: list[str], *needles: str) -> str:
    capsys.readouterr()  # drop what fixtures printed (training the micro models)
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    msg = lines[0]
    assert msg.startswith("txmerge: error: ") and msg.rstrip().endswith("."), msg
    assert "Traceback" not in err
    for needle in needles:
        assert needle in msg, msg
    return msg


# ------------------------------------------------------------------------------------ bad input
def test_unknown_component(capsys, tmp_path):
    _fails_with_one_sentence(capsys, ["align", "a", "b", "--out", str(tmp_path / "o"), "--components", "ff,bogus"],
                             "bogus", "ff, attn, residual")


@pytest.mark.parametrize("components, residual", [("ff,attn", "last"), ("ff", "separate")])
def test_residual_strategy_without_residual_component(capsys, tmp_path, components, residual):
    _fails_with_one_sentence(capsys, ["align", "a", "b", "--out", str(tmp_path / "o"), "--components", components,
                                      "--residual", residual], "--residual", "residual")


def test_residual_component_with_identity_strategy(capsys, tmp_path):
    _fails_with_one_sentence(capsys, ["align", "a", "b", "--out", str(tmp_path / "o"), "--components", "residual",
                                      "--residual", "identity"], "strategy")


def test_missing_checkpoint(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TXMERGE_ZOO", str(tmp_path / "zoo"))
    missing = str(tmp_path / "no-such-model")
    _fails_with_one_sentence(capsys, ["align", missing, missing, "--out", str(tmp_path / "o"), "--quiet"],
                             "No checkpoint", "txmerge zoo train")
    assert not (tmp_path / "o").exists()


def test_empty_text_file(capsys, tmp_path, ckpts):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n   \n\n", encoding="utf-8")
    _fails_with_one_sentence(capsys, ["align", *ckpts, "--out", str(tmp_path / "o"), "--text", str(empty), "--quiet"],
                             "holds no text")
    _fails_with_one_sentence(capsys, ["curve", *ckpts, "--out", str(tmp_path / "c.csv"), "--text", str(empty), "--quiet"],
                             "holds no text")
    _fails_with_one_sentence(capsys, ["align", *ckpts, "--out", str(tmp_path / "o"), "--text", str(tmp_path / "none.txt"),
                                      "--quiet"], "does not exist")
    assert not (tmp_path / "o").exists() and not (tmp_path / "c.csv").exists()


def test_non_empty_out_needs_overwrite(capsys, tmp_path, ckpts, text_file):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    _fails_with_one_sentence(capsys, ["align", *ckpts, "--out", str(out), "--text", str(text_file), "--quiet"],
                             "not empty", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")  # default_lambdas(1) divides by 0
def test_curve_with_too_few_points(capsys, tmp_path, ckpts, text_file):
    _fails_with_one_sentence(capsys, ["curve", *ckpts, "--out", str(tmp_path / "c.csv"), "--text", str(text_file),
                                      "--points", "1", "--eval-blocks", "2", "--quiet"], "endpoints")


# ------------------------------------------------------------------------------------ end to end
def test_align_then_curve_end_to_end(capsys, tmp_path, ckpts, text_file):
    a_path, b_path = ckpts
    out = tmp_path / "aligned"
    code = cli.main(["align", a_path, b_path, "--out", str(out), "--text", str(text_file), "--max-tokens", "2000", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "wrote" in captured.out

    # the written model: same class, loadable, tokenizer beside it
    aligned = BertForMaskedLM.from_pretrained(out / "model").eval()
    assert type(aligned) is BertForMaskedLM
    assert json.loads((out / "model" / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    assert (out / "model" / "tokenizer.json").exists()

    # the report
    report = json.loads((out / "report.json").read_text())
    assert report["function_preserving"] is True
    assert report["verification"]["ok"] is True and report["verification"]["max_abs_diff"] < 1e-4
    assert report["method"]["ff"] and report["method"]["attn"] and report["method"]["residual"] == "first"
    assert 0 < report["tokens"] <= 2000 + 8 * 128  # --max-tokens stops after the batch that crosses it
    assert {"ff.0", "attn.0", "residual"} <= set(report["matched_corr"])

    # the permutations: applied to B they give exactly the written model
    perms = torch.load(out / "permutations.pt")
    assert {"ff.0", "ff.1", "attn.0", "attn.1", "residual"} <= set(perms)
    model_b = models.load_model(b_path)
    model_a = models.load_model(a_path)
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    redo = apply_permutations(model_b, perms, bert_spec(model_b))
    sd_redo, sd_aligned = redo.state_dict(), aligned.state_dict()
    for k, v in sd_redo.items():
        assert torch.equal(v, sd_aligned[k]), k

    # the aligned model computes B's function
    tok = zoo.load_tokenizer(out / "model")
    batch = tok(["It was a truth universally acknowledged.", "Call me Ishmael, said the man."], padding=True, return_tensors="pt")
    with torch.inference_mode():
        want, got = model_b(**batch).logits, aligned(**batch).logits
    assert (want - got).abs().max() < 1e-4
    assert not torch.equal(aligned.bert.encoder.layer[0].intermediate.dense.weight,
                           model_b.bert.encoder.layer[0].intermediate.dense.weight)

    # then the curve from A to aligned B
    csv = tmp_path / "curve" / "x.csv"
    code = cli.main(["curve", a_path, str(out / "model"), "--out", str(csv), "--text", str(text_file), "--points", "5",
                     "--eval-blocks", "2", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "loss barrier (max − mean of endpoints)" in captured.out
    assert "loss barrier (max − linear interpolation of endpoints)" in captured.out
    df = pd.read_csv(csv)
    assert len(df) == 5 and df["lambda"].tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    lines = [line.strip() for line in text_file.read_text().splitlines() if line.strip()]
    es = data.mlm_eval_set(lines, tok, max_blocks=2, seed=42)
    assert es["input_ids"].shape[0] == 2
    assert df["loss"].iloc[-1] == pytest.approx(mlm_loss(model_a, es)["loss"], abs=1e-5)  # λ = 1: A
    assert df["loss"].iloc[0] == pytest.approx(mlm_loss(model_b, es)["loss"], abs=1e-4)  # λ = 0: B (function-equal)
    barrier = df["loss"].max() - 0.5 * (df["loss"].iloc[0] + df["loss"].iloc[-1])
    assert f"{barrier:.4f}" in captured.out
    assert not list(csv.parent.glob(".*"))  # no temporary file left


@pytest.mark.parametrize("overwrite", [False, True])
def test_failure_mid_way_leaves_nothing_behind(tmp_path, ckpts, text_file, monkeypatch, overwrite):
    out = tmp_path / "aligned"
    if overwrite:  # an existing result must survive a failed --overwrite run
        out.mkdir()
        (out / "old.txt").write_text("old result")

    def fail(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(BertForMaskedLM, "save_pretrained", fail)
    argv = ["align", *ckpts, "--out", str(out), "--text", str(text_file), "--max-tokens", "500", "--quiet"]
    with pytest.raises(RuntimeError, match="disk full"):
        cli.main(argv + (["--overwrite"] if overwrite else []))
    if overwrite:
        assert [p.name for p in out.iterdir()] == ["old.txt"]
    else:
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["passages.txt"] + (["aligned"] if overwrite else []))


def test_python_m_txmerge_help():
    for argv in (["--help"], ["align", "--help"], ["curve", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "txmerge", *argv], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "usage: txmerge" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "txmerge", "align", "a", "b", "--out", "x", "--heads", "sideways"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
