"""The plan a paper chapter prints before any work: models, tokens, curves, time for the device."""

from __future__ import annotations

import pytest

from txmerge.chapters import params as tp
from txmerge.chapters import plan


def test_plan_is_printed_for_the_paper_preset_only(capsys):
    assert plan.show_plan(tp.chapter_params("tiny", "02_ffn_attention"), "cpu") is None
    assert plan.show_plan(tp.chapter_params("paper", "07_exercises"), "cuda") is None
    assert capsys.readouterr().out == ""
    p = plan.show_plan(tp.chapter_params("paper", "04_residual"), "cuda")
    out = capsys.readouterr().out
    assert "google/multiberts-seed_1" in out and "110 curve(s) of 21 λ" in out and "time: about" in out
    assert p["curves"] == 10 * 11 and p["eval_tokens_per_lambda"] == plan.WIKITEXT_VALIDATION_TOKENS
    plan.show_plan(tp.chapter_params("paper", "03_attention_heads"), "mps")
    assert "no estimate for device mps" in capsys.readouterr().out


def test_plan_counts_and_cpu_time_follow_the_parameters():
    one = tp.validate("03_attention_heads", {"preset": "paper", "pairs": [[1, 2]], "n_sentences": 100_000, "eval_blocks": None})
    two = tp.validate("03_attention_heads", {"preset": "paper", "pairs": [[1, 2], [3, 4]], "n_sentences": 100_000, "eval_blocks": None})
    p1, p2 = plan.chapter_plan(one, "cpu", threads=1), plan.chapter_plan(two, "cpu", threads=1)
    assert p1["correlation_tokens"] == 1_600_000 and p2["curves"] == 2 * p1["curves"] == 10
    # one pair at paper scale: the statistics (3.5 h on one thread, measured) and 5 curves of 3.5 h each
    assert p1["seconds"] == pytest.approx(3.5 * 3600 * (1 + 5))
    assert plan.chapter_plan(one, "cpu", threads=2)["seconds"] == pytest.approx(p1["seconds"] / 2)
    assert plan.chapter_plan(one, "cuda")["seconds"] < p1["seconds"] / 100
    glue = tp.validate("06_glue", {"preset": "paper", "tasks": ["rte", "mrpc"], "pairs": [[1, 2]], "n_sentences": None})
    g = plan.chapter_plan(glue, "cuda")
    assert g["finetune_steps"] == 2 * (312 * 3 + 459 * 5)  # seeds 1 and 2: RTE 3 epochs, MRPC 5, batch 8
