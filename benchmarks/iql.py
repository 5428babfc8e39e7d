"""PASTA's agent against the baselines: IQL trained on behaviour data of lmm (with and without random
slates), of bayes, and on mixes; returns with 95% CIs, per turn; learning curves; gradient steps per second.

Usage::

    pasta bench-iql [--episodes 30000] [--steps 3000] [--out results/iql]

Generates the datasets it needs into ``OUT/data`` (skipped when present and
complete), trains one model per behaviour-data recipe into ``OUT/models``
(resumable), then evaluates every model next to random, lmm, popular,
greedy, bayes, planner and oracle on the same users (env seeds
``eval_seed + e``, none of which the datasets hold), and writes
``OUT/iql.json``, ``OUT/iql.md``, ``OUT/curves.png`` and ``OUT/per_turn.png``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine, write_json

#: Behaviour data recipes: name -> ([(policy, epsilon)], mix).
RECIPES: dict[str, tuple[list[tuple[str, float]], list[float]]] = {
    "lmm": ([("lmm", 0.0)], [1.0]),
    "lmm-eps10": ([("lmm", 0.1)], [1.0]),
    "bayes": ([("bayes", 0.0)], [1.0]),
    "lmm+bayes": ([("lmm", 0.0), ("bayes", 0.0)], [0.5, 0.5]),
}
BASELINES = ("random", "lmm", "popular", "greedy", "bayes", "planner", "oracle")


def _dataset_name(policy: str, epsilon: float) -> str:
    return f"{policy}-eps{round(epsilon * 100)}" if epsilon else policy


def run(out: str = "results/iql", episodes: int = 30000, steps: int = 3000, eval_episodes: int = 2000,
        eval_seed: int = 1_000_000, recipes: tuple[str, ...] = tuple(RECIPES), hidden: int = 128,
        batch_size: int = 256, device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Generate, train, evaluate; print the tables and write JSON, markdown and plots under ``out``."""
    from agents import make_agent
    from agents.evaluation import evaluate, plot_per_turn
    from agents.offline.iql import IQLSettings, train_iql
    from pasta_env.datasets import DatasetSpec, generate

    root = Path(out)
    timings: dict[str, float] = {}
    datasets = {}
    for name in recipes:
        for policy, eps in RECIPES[name][0]:
            key = _dataset_name(policy, eps)
            if key not in datasets:
                t0 = time.perf_counter()
                datasets[key] = root / "data" / key
                generate(datasets[key], DatasetSpec(episodes=episodes, policy=policy, epsilon=eps), progress=progress,
                         make_policy=make_agent)
                timings[f"generate {key}"] = round(time.perf_counter() - t0, 1)
    settings = IQLSettings(steps=steps, batch_size=batch_size, hidden=hidden, eval_every=max(steps // 6, 1),
                           eval_episodes=500)
    histories = {}
    for name in recipes:
        sources, mix = RECIPES[name]
        data = [datasets[_dataset_name(p, e)] for p, e in sources]
        t0 = time.perf_counter()
        histories[name] = train_iql(data, root / "models" / name, settings, mix=mix, device=device,
                                    progress=progress)
        timings[f"train {name}"] = round(time.perf_counter() - t0, 1)
    agents = [f"iql:{root / 'models' / name}" for name in recipes] + list(BASELINES)
    result = evaluate(agents, episodes=eval_episodes, seed=eval_seed, progress=progress)
    rename = {f"iql:{root / 'models' / name}": f"iql[{name}]" for name in recipes}
    summary = result.to_dict()
    table = result.table()
    for long, short in rename.items():
        table = table.replace(f"| {long} |", f"| {short} |")
    comparisons = [c for c in result.comparisons() if c["a"] in rename or c["b"] in rename]
    report: dict[str, Any] = {
        "machine": machine(), "episodes_per_dataset": episodes, "steps": steps, "settings": settings.__dict__,
        "device": device, "timings_s": timings, "evaluation": summary,
        "gradient_steps_per_second": {n: h["steps_per_second"] for n, h in histories.items()},
        "learning_curves": {n: h["evaluations"] for n, h in histories.items()},
        "iql_comparisons": [{**c, "a": rename.get(c["a"], c["a"]), "b": rename.get(c["b"], c["b"])}
                            for c in comparisons],
    }
    lines = [f"IQL on {episodes} trajectories per dataset, {steps} gradient steps (batch {batch_size}, hidden "
             f"{hidden}, {device}); {eval_episodes} users per agent (env seeds {eval_seed}+e)", "", table, "",
             "paired differences involving IQL (same users):"]
    for c in report["iql_comparisons"]:
        mark = "" if c["significant"] else "  (within CI)"
        lines.append(f"  {c['a']} - {c['b']}: {c['mean_difference']:+.3f} ± {c['ci95']:.3f}{mark}")
    lines.append("")
    lines.append("gradient steps/s (evaluations included): " + ", ".join(
        f"{n} {v:.1f}" for n, v in report["gradient_steps_per_second"].items() if v))
    text = "\n".join(lines)
    print(text)
    root.mkdir(parents=True, exist_ok=True)
    (root / "iql.md").write_text(text + "\n")
    write_json(root / "iql.json", report)
    plot_per_turn(result, str(root / "per_turn.png"))
    refs: dict[str, float] = {n: float(result.agents[n].returns.mean()) for n in ("lmm", "bayes", "oracle")
                              if n in result.agents}
    _plot_curves(histories, refs, root / "curves.png")
    return report


def _plot_curves(histories: dict[str, dict], references: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from simulators.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, h in histories.items():
        ev = h["evaluations"]
        steps = [e["step"] for e in ev]
        mean = np.array([e["return_mean"] for e in ev])
        half = np.array([e["return_ci95"] for e in ev])
        ax.plot(steps, mean, marker="o", label=f"iql[{name}]")
        ax.fill_between(steps, mean - half, mean + half, alpha=0.15)
    for name, value in references.items():
        ax.axhline(value, linestyle="--", linewidth=1, color="grey")
        ax.text(1.0, value, f"{name} ", transform=ax.get_yaxis_transform(), ha="right", va="bottom",
                fontsize="small", color="grey")
    ax.set_xlabel("gradient steps")
    ax.set_ylabel("mean return, 500 users (95% CI)")
    ax.set_title("IQL learning curves by behaviour data")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
