"""The paper's human evaluation: at turns 2 to H, were the new images Better, Same or Worse than the last turn's?

``pasta human-eval-report DIR [--json F] [--plot F]`` reads the turns the
app recorded and gives, per agent and turn, the share of each answer with a
95% Wilson score interval (it holds at small counts and at 0% or 100%), the
same over all turns, and the paired difference of the Better share between
every two agents: per rater, the share of Better answers under each agent,
differenced over the raters who met both (the blind mode hands agents out
at random, so most raters meet several), with Student's t interval over
those raters; fewer than :data:`MIN_RATERS` raters give the difference
without an interval ("too few raters"), never a ``± 0`` or ``nan``.
"""

from __future__ import annotations

import os
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from pasta_app.records import ANSWERS, CHOICES, read_jsonl
from pasta_env.stats import t_ci95, wilson_interval

#: Raters who met both agents below which a paired difference gets no interval.
MIN_RATERS = 3


def report(folder: str | os.PathLike) -> dict[str, Any]:
    """The report of the answers recorded in ``folder``, JSON-ready.

    Raises:
        FileNotFoundError: ``folder`` holds no recorded turns.
        ValueError: No turn carries an answer (none reached turn 2).
    """
    path = Path(folder) / CHOICES
    if not path.is_file():
        raise FileNotFoundError(f"{str(folder)!r} holds no {CHOICES}; give the --data folder of `pasta serve`")
    rows = [t for t in read_jsonl(path) if t.get("answer") in ANSWERS]
    if not rows:
        raise ValueError(f"no answers in {path}: answers are given from turn 2 on")
    agents = sorted({t["agent"] for t in rows})
    turns = sorted({int(t["turn"]) for t in rows})
    out: dict[str, Any] = {"folder": str(folder), "answers": len(rows), "agents": {}, "paired_better": []}
    for agent in agents:
        mine = [t for t in rows if t["agent"] == agent]
        per_turn = {str(turn + 1): _shares([t["answer"] for t in mine if int(t["turn"]) == turn]) for turn in turns}
        out["agents"][agent] = {"all_turns": _shares([t["answer"] for t in mine]), "per_turn": per_turn,
                                "sessions": len({t["trajectory_id"] for t in mine}),
                                "raters": len({t["user_id"] for t in mine})}
    better: dict[tuple[str, str], float] = {}
    for rater in {t["user_id"] for t in rows}:
        for agent in agents:
            answers = [t["answer"] == "Better" for t in rows if t["user_id"] == rater and t["agent"] == agent]
            if answers:
                better[rater, agent] = float(np.mean(answers))
    raters = {r for r, _ in better}
    for a, b in combinations(sorted(agents, key=lambda n: -out["agents"][n]["all_turns"]["Better"]), 2):
        diff = np.array([better[r, a] - better[r, b] for r in sorted(raters) if (r, a) in better and (r, b) in better])
        out["paired_better"].append({"a": a, "b": b, "raters": int(len(diff)),
                                     "difference": float(diff.mean()) if len(diff) else None,
                                     "ci95": t_ci95(diff) if len(diff) >= MIN_RATERS else None})
    out["ranking"] = sorted(agents, key=lambda n: -out["agents"][n]["all_turns"]["Better"])
    return out


def _shares(answers: list[str]) -> dict[str, Any]:
    """Share of each answer with its 95% Wilson interval (``A_low``, ``A_high``), and the count ``n``."""
    n = len(answers)
    out: dict[str, Any] = {"n": n}
    for a in ANSWERS:
        hits = sum(x == a for x in answers)
        low, high = wilson_interval(hits, n)
        out[a], out[f"{a}_low"], out[f"{a}_high"] = (hits / n, low, high) if n else (None, None, None)
    return out


def markdown(rep: dict[str, Any]) -> str:
    """The report as markdown tables (percentages)."""
    turns = sorted({t for s in rep["agents"].values() for t in s["per_turn"]}, key=int)
    head = ["agent", "answers", "Better", "Same", "Worse"] + [f"Better, turn {t}" for t in turns]
    lines = [f"{rep['answers']} answers in {rep['folder']}; percentages with 95% Wilson intervals, n answers", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in rep["ranking"]:
        s = rep["agents"][name]
        cells = [name, str(s["all_turns"]["n"])] + [pct(s["all_turns"], a) for a in ANSWERS]
        cells += [pct(s["per_turn"][t], "Better") + f" (n={s['per_turn'][t]['n']})"
                  if t in s["per_turn"] and s["per_turn"][t]["n"] else "no answers" for t in turns]
        lines.append("| " + " | ".join(cells) + " |")
    if rep["paired_better"]:
        lines += ["", "| paired difference of Better (same raters) | raters | difference (95% CI, t over raters) |",
                  "|---|---|---|"]
        for p in rep["paired_better"]:
            lines.append(f"| {p['a']} - {p['b']} | {p['raters']} | {difference(p)} |")
    return "\n".join(lines)


def difference(pair: dict[str, Any]) -> str:
    """A paired difference of the Better share as ``+7.9 ± 13.1 pp``, or why it has no interval."""
    if pair["difference"] is None:
        return "no rater met both"
    if pair["ci95"] is None:
        return (f"{100 * pair['difference']:+.1f} pp (too few raters for an interval: "
                f"{pair['raters']} < {MIN_RATERS})")
    return f"{100 * pair['difference']:+.1f} ± {100 * pair['ci95']:.1f} pp"


def pct(shares: dict[str, Any], answer: str) -> str:
    """An answer's share as ``61.7% (54.6-68.3)``: the percentage and its 95% Wilson interval."""
    if not shares["n"]:
        return "no answers"
    return (f"{100 * shares[answer]:.1f}% ({100 * shares[f'{answer}_low']:.1f}-"
            f"{100 * shares[f'{answer}_high']:.1f})")


def plot(rep: dict[str, Any], path: str | os.PathLike) -> None:
    """Better / Same / Worse shares per agent and turn, stacked bars, saved as an image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simulators.atomic import atomic_path

    agents = rep["ranking"]
    turns = sorted({t for s in rep["agents"].values() for t in s["per_turn"]}, key=int)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(agents) * len(turns)), 4.6))
    colours = {"Better": "#4c9a5a", "Same": "#c9c3b3", "Worse": "#c0504d"}
    width = 0.8 / len(agents)
    for i, agent in enumerate(agents):
        x = np.arange(len(turns)) + i * width
        bottom = np.zeros(len(turns))
        for a in ANSWERS:
            share = np.array([rep["agents"][agent]["per_turn"].get(t, {}).get(a) or 0.0 for t in turns])
            ax.bar(x, share, width * 0.95, bottom=bottom, color=colours[a], label=a if i == 0 else None,
                   edgecolor="white")
            bottom += np.nan_to_num(np.asarray(share, float))
        cells = [rep["agents"][agent]["per_turn"].get(t, {}) for t in turns]
        better = np.array([c.get("Better") if c.get("n") else np.nan for c in cells], float)
        low = np.array([c.get("Better_low") if c.get("n") else np.nan for c in cells], float)
        high = np.array([c.get("Better_high") if c.get("n") else np.nan for c in cells], float)
        ax.errorbar(x, better, yerr=[better - low, high - better], fmt="none", ecolor="black", elinewidth=1,
                    capsize=3, label="Better, 95% Wilson interval" if i == 0 else None)
        for xi, c in zip(x, cells):
            ax.text(xi, 1.02, f"{agent} (n={c.get('n', 0)})", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(np.arange(len(turns)) + 0.4 - width / 2)
    ax.set_xticklabels([f"turn {t}" for t in turns])
    ax.set_ylim(0, 1.5)
    ax.set_ylabel("share of answers")
    ax.set_title("Compared with the last turn, the new images are ...")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize="small", ncol=4, frameon=False)
    fig.tight_layout()
    fmt = os.path.splitext(str(path))[1].lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=fmt)
    plt.close(fig)
