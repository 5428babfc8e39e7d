"""The human-evaluation report's intervals: Wilson for shares, Student's t over raters for paired differences,
and no interval where the counts cannot carry one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pasta_app.records import CHOICES
from pasta_app.report import MIN_RATERS, markdown, plot, report
from pasta_env.stats import t975, t_ci95, wilson_interval


@pytest.mark.parametrize("hits, n, low, high", [
    (0, 10, 0.0, 0.2775),      # all misses: not 0% +- 0
    (10, 10, 0.7225, 1.0),
    (88, 88, 0.9582, 1.0),     # 100% of 88: not +- 0.0
    (5, 10, 0.2366, 0.7634),
    (1, 3, 0.0615, 0.7923),    # 33% of 3: not +- 65 (beyond 0)
    (30, 100, 0.2189, 0.3958),
])
def test_wilson_intervals_match_the_textbook_cases(hits, n, low, high):
    got = wilson_interval(hits, n)
    assert got == pytest.approx((low, high), abs=1e-4)
    assert 0.0 <= got[0] <= hits / n <= got[1] <= 1.0


def test_t_intervals_use_the_t_quantile_and_need_two_values():
    assert t975(1) == 12.706 and t975(10) == 2.228 and t975(60) == pytest.approx(2.000, abs=0.003)
    x = np.array([0.1, 0.4, 0.2, 0.5])
    assert t_ci95(x) == pytest.approx(3.182 * x.std(ddof=1) / 2)
    assert np.isnan(t_ci95(np.array([0.3])))
    with pytest.raises(ValueError, match="at least 1"):
        t975(0)


def _write(folder, rows):
    folder.mkdir()
    lines = [json.dumps({"user_id": r, "trajectory_id": f"{r}-{a}-{i}", "agent": a, "turn": t, "answer": ans})
             for i, (r, a, t, ans) in enumerate(rows)]
    (folder / CHOICES).write_text("\n".join(lines) + "\n")


def test_small_and_extreme_counts_get_honest_intervals_and_labels(tmp_path):
    # agent a: 8 of 8 Better; agent b: 1 of 3 Better; only two raters met both
    rows = [("r1", "a", 1, "Better")] * 4 + [("r2", "a", 1, "Better")] * 4
    rows += [("r1", "b", 1, "Better"), ("r2", "b", 1, "Worse"), ("r2", "b", 2, "Same")]
    _write(tmp_path / "d", rows)
    rep = report(tmp_path / "d")
    a = rep["agents"]["a"]["all_turns"]
    assert a["Better"] == 1.0 and a["Better_high"] == 1.0 and a["Better_low"] == pytest.approx(0.6756, abs=1e-4)
    assert rep["agents"]["b"]["per_turn"]["3"]["n"] == 1  # the report numbers turns from 1 (record turn 2 is "3")
    pair = rep["paired_better"][0]
    assert pair["raters"] == 2 < MIN_RATERS and pair["ci95"] is None and pair["difference"] == pytest.approx(0.5)
    text = markdown(rep)
    assert "too few raters" in text and "nan" not in text and "± 0.0" not in text
    assert "100.0% (67.6-100.0)" in text and "(n=8)" in text
    assert "no answers" in text  # agent a has no answer at turn 3
    plot(rep, tmp_path / "report.png")
    assert (tmp_path / "report.png").stat().st_size > 1000


def test_enough_raters_give_a_t_interval_over_raters(tmp_path):
    rows = []
    for i, (better_a, better_b) in enumerate([(1, 0), (1, 1), (1, 0), (0, 0), (1, 0)]):
        rows += [(f"r{i}", "a", 1, "Better" if better_a else "Worse"),
                 (f"r{i}", "b", 1, "Better" if better_b else "Worse")]
    _write(tmp_path / "d", rows)
    pair = report(tmp_path / "d")["paired_better"][0]
    diff = np.array([1, 0, 1, 0, 1], float)
    assert pair["raters"] == 5 and pair["difference"] == pytest.approx(0.6)
    assert pair["ci95"] == pytest.approx(2.776 * diff.std(ddof=1) / np.sqrt(5))
