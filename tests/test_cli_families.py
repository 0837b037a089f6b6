"""The command line on every supported family and checkpoint class: `align` writes B in A's basis as
the same class with the same tensors, `merge` writes a merged checkpoint (plain averaging with
--components none), `curve` uses the loss that fits the head, and bad input gets one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, pre_tokenizers, processors
from tokenizers import models as tk_models
from transformers import PreTrainedTokenizerFast

from conftest import FAMILIES, tiny_model, token_batches
from txmerge import cli
from txmerge.core import models
from txmerge.core.permute import verify_function_preserved
from txmerge.core.spec import model_spec

SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
WORDS = [f"w{i}" for i in range(61 - len(SPECIALS))]


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A 61-token word-level tokenizer (ids fit the tiny models' vocabulary), with [CLS] x [SEP] framing."""
    vocab = {t: i for i, t in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(tk_models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                                   mask_token="[MASK]", unk_token="[UNK]")


def _save(model, folder: Path) -> str:
    model.save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    g = torch.Generator().manual_seed(0)
    lines = [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (int(n),), generator=g))
             for n in torch.randint(20, 60, (80,), generator=g)]
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(capsys, argv) -> tuple[int, str]:
    """(exit status, standard error); standard output is kept in ``_run.out``."""
    capsys.readouterr()
    code = cli.main(argv)
    captured = capsys.readouterr()
    _run.out = captured.out
    return code, captured.err


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["base", "mlm", "cls"])
def test_align_keeps_the_class_and_the_tensors_of_every_checkpoint(tmp_path, capsys, text_file, family, kind):
    a = _save(tiny_model(family, kind, seed=1), tmp_path / "a")
    b_model = tiny_model(family, kind, seed=2)
    b = _save(b_model, tmp_path / "b")
    code, err = _run(capsys, ["align", a, b, "--out", str(tmp_path / "out"), "--text", str(text_file), "--max-tokens", "600",
                              "--separate-qk", "--quiet"])
    assert code == 0, err
    aligned = models.load_checkpoint(tmp_path / "out" / "model")
    original = models.load_checkpoint(b)
    assert type(aligned) is type(original) is type(b_model)
    assert aligned.state_dict().keys() == original.state_dict().keys()  # no tensor added or dropped
    assert any(not torch.equal(x, y) for x, y in zip(aligned.state_dict().values(), original.state_dict().values()))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["class"] == type(b_model).__name__ and report["function_preserving"] and report["verification"]["ok"]
    perms = torch.load(tmp_path / "out" / "permutations.pt")
    check = verify_function_preserved(original, aligned, token_batches(61, 1, seed=5)[0], atol=1e-4, perms=perms,
                                      spec=model_spec(original, separate_qk=True))
    assert check.ok, check  # B in A's basis computes what B computed


@pytest.mark.parametrize("family", FAMILIES)
def test_weight_matching_aligns_without_any_text(tmp_path, capsys, family):
    """A planted permutation of A is undone from the weights alone: no --text, tensors equal A's."""
    from txmerge.core.permute import apply_permutations, random_permutations
    from txmerge.methods.method import method_named

    model_a = tiny_model(family, "mlm", seed=1)
    spec = method_named("full").spec(model_a)
    planted = apply_permutations(model_a, random_permutations(spec, torch.Generator().manual_seed(3)), spec)
    a, b = _save(model_a, tmp_path / "a"), _save(planted, tmp_path / "b")
    code, err = _run(capsys, ["align", a, b, "--out", str(tmp_path / "out"), "--matcher", "weight", "--residual", "first",
                              "--quiet"])
    assert code == 0, err
    aligned = models.load_checkpoint(tmp_path / "out" / "model")
    for name, tensor in model_a.state_dict().items():
        assert torch.equal(aligned.state_dict()[name], tensor), name
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["function_preserving"] and report["verification"]["ok"] and report["method"]["matcher"] == "weight"


@pytest.mark.parametrize("family", FAMILIES)
def test_curve_uses_the_loss_of_the_head(tmp_path, capsys, text_file, family):
    a = _save(tiny_model(family, "mlm", seed=1), tmp_path / "a")
    b = _save(tiny_model(family, "mlm", seed=2), tmp_path / "b")
    csv = tmp_path / "curve.csv"
    code, err = _run(capsys, ["curve", a, b, "--out", str(csv), "--text", str(text_file), "--points", "3",
                              "--eval-blocks", "4", "--quiet"])
    assert code == 0, err
    df = pd.read_csv(csv)
    assert list(df["lambda"]) == [0.0, 0.5, 1.0] and df["loss"].notna().all()
    expected = "next-token loss" if family == "gpt2" else "MLM loss"
    assert f"{expected} barrier" in _run.out
    assert models.loss_kind(models.load_checkpoint(a)) == ("clm" if family == "gpt2" else "mlm")


def test_curve_of_classifiers_reads_a_labelled_tsv_and_base_models_are_refused(tmp_path, capsys, text_file):
    a = _save(tiny_model("distilbert", "cls", seed=1), tmp_path / "a")
    b = _save(tiny_model("distilbert", "cls", seed=2), tmp_path / "b")
    lines = text_file.read_text().splitlines()[:20]
    tsv = tmp_path / "task.tsv"
    pd.DataFrame({"sentence1": lines, "label": [i % 3 for i in range(20)]}).to_csv(tsv, sep="\t", index=False)
    code, err = _run(capsys, ["curve", a, b, "--out", str(tmp_path / "c.csv"), "--text", str(tsv), "--points", "3", "--quiet"])
    assert code == 0, err
    assert "accuracy" in pd.read_csv(tmp_path / "c.csv") and "task loss barrier" in _run.out
    code, err = _run(capsys, ["curve", a, b, "--out", str(tmp_path / "c.csv"), "--text", str(text_file), "--quiet"])
    assert code == 2 and "sentence1 and label" in err
    base_a = _save(tiny_model("bert", "base", seed=1), tmp_path / "ba")
    base_b = _save(tiny_model("bert", "base", seed=2), tmp_path / "bb")
    code, err = _run(capsys, ["curve", base_a, base_b, "--out", str(tmp_path / "d.csv"), "--text", str(text_file)])
    assert code == 2 and "has no head" in err and not (tmp_path / "d.csv").exists()


@pytest.mark.parametrize("family", ["roberta", "gpt2"])
def test_merge_without_alignment_is_plain_weight_averaging(tmp_path, capsys, text_file, family):
    model_a, model_b = tiny_model(family, "mlm", seed=1), tiny_model(family, "mlm", seed=2)
    a, b = _save(model_a, tmp_path / "a"), _save(model_b, tmp_path / "b")
    code, err = _run(capsys, ["merge", a, b, "--components", "none", "--lambda", "0.25", "--out", str(tmp_path / "avg"),
                              "--eval-text", str(text_file), "--eval-blocks", "4", "--quiet"])
    assert code == 0, err
    merged = models.load_checkpoint(tmp_path / "avg")
    assert type(merged) is type(model_a) and merged.state_dict().keys() == model_a.state_dict().keys()
    for key, value in merged.state_dict().items():
        expected = 0.25 * model_a.state_dict()[key] + 0.75 * model_b.state_dict()[key]
        assert torch.allclose(value, expected, atol=1e-6), key
    report = json.loads((tmp_path / "avg" / "merge_report.json").read_text())
    assert report["method"]["ff"] is False and set(report["loss"]) == {"A", "B", "merged"}
    assert (tmp_path / "avg" / "tokenizer.json").exists()


def test_merge_with_alignment_writes_the_same_class_and_a_report(tmp_path, capsys, text_file):
    a = _save(tiny_model("bert", "mlm", seed=1), tmp_path / "a")
    b = _save(tiny_model("bert", "mlm", seed=2), tmp_path / "b")
    code, err = _run(capsys, ["merge", a, b, "--out", str(tmp_path / "m"), "--text", str(text_file), "--quiet"])
    assert code == 0, err
    report = json.loads((tmp_path / "m" / "merge_report.json").read_text())
    assert report["lambda"] == 0.5 and report["verification"]["ok"] and report["method"]["residual"] == "first"
    assert type(models.load_checkpoint(tmp_path / "m")).__name__ == "BertForMaskedLM"


@pytest.mark.parametrize("argv_tail,needle", [
    (["--max-tokens", "-5"], "--max-tokens must be a positive"),
    (["--max-tokens", "0"], "--max-tokens must be a positive"),
    (["--components", "ff,mlp"], "Unknown component"),
])
def test_bad_align_options_are_refused_before_loading(tmp_path, capsys, argv_tail, needle):
    code, err = _run(capsys, ["align", "nowhere_a", "nowhere_b", "--out", str(tmp_path / "o")] + argv_tail)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_merge_refuses_a_lambda_outside_the_segment(tmp_path, capsys):
    code, err = _run(capsys, ["merge", "a", "b", "--out", str(tmp_path / "o"), "--lambda", "1.5"])
    assert code == 2 and "--lambda must lie in [0, 1]" in err


def test_an_unsupported_family_is_refused_listing_the_supported_ones(tmp_path, capsys):
    from transformers import T5Config, T5Model

    T5Model(T5Config(d_model=16, num_layers=1, num_heads=2, d_ff=32, vocab_size=20, d_kv=8)).save_pretrained(tmp_path / "t5")
    code, err = _run(capsys, ["align", str(tmp_path / "t5"), str(tmp_path / "t5"), "--out", str(tmp_path / "o")])
    assert code == 2 and "supported families: bert, distilbert, gpt2, roberta, xlm-roberta" in err


def test_different_classes_are_refused(tmp_path, capsys, text_file):
    a = _save(tiny_model("bert", "mlm", seed=1), tmp_path / "a")
    b = _save(tiny_model("bert", "base", seed=2), tmp_path / "b")
    code, err = _run(capsys, ["align", a, b, "--out", str(tmp_path / "o"), "--text", str(text_file)])
    assert code == 2 and "same class" in err and not (tmp_path / "o").exists()


def test_a_corrupt_zoo_checkpoint_fails_its_checksum_naming_the_regeneration(tmp_path):
    folder = tmp_path / "seed_3"
    tiny_model("bert", "mlm").save_pretrained(folder)
    (folder / "training.json").write_text(json.dumps({"seed": 3, "sha256": "0" * 64}))
    with pytest.raises(Exception, match=r"model.safetensors does not match the sha256 .*zoo train --seed 3"):
        models.load_model(folder)
