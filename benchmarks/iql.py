"""PASTA's agent against the baselines and the data-only model-based reference.

IQL variants (:data:`VARIANTS`) trained on behaviour data of lmm (with and
without random slates), of bayes, and on mixes (:data:`RECIPES`); a user
model fitted by EM to the same data, acted on with bayes's rule
(``bayes:MODEL``, with K = 8 and with K chosen by a held-out sweep); returns
with 95% CIs, per turn, on the default prompts and on a prompt file;
learning curves with the untrained point and reference lines; gradient
steps per second and the training time to the reported return.

Usage::

    pasta bench-iql [--episodes 30000] [--steps 3000] [--out results/iql]

Generates the datasets it needs into ``OUT/data`` (skipped when present and
complete), fits the user models into ``OUT/user_models``, trains one model
per run (``RECIPE/VARIANT``) into ``OUT/models`` (resumable), then
evaluates every model next to the baselines on the same users (env seeds
``eval_seed + e``, none of which the datasets hold), and writes
``OUT/iql.json``, ``OUT/iql.md``, ``OUT/curves.png`` and ``OUT/per_turn.png``
(and ``OUT/prompts/`` for the prompt file).
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
#: IQL variants: name -> (IQLSettings fields, whether the belief starts from the user model fitted to the data).
VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    # PASTA's agent: decomposed slate value, one prompt per category, no belief
    "pasta": ({}, False),
    # the same critic and rule, the history encoder holding the fitted model's belief over types
    "pasta+belief": ({"critic": "mean"}, True),
    # the belief-weighted inclusive value of the slate, searched over every slate; belief from the fitted model
    "mixture": ({"critic": "mixture", "one_per_category": False}, True),
    # the same learned in one run from scratch: random types, the belief's own likelihood loss beside the TD loss
    "mixture-scratch": ({"critic": "mixture", "one_per_category": False, "belief_types": 8, "belief_loss": 1.0,
                         "belief_lr": 3e-2}, False),
}
#: What ``pasta bench-iql`` trains by default: every variant on lmm with 10% random slates, and the data-mix
#: ablation of the mixture variant.
DEFAULT_RUNS: tuple[str, ...] = ("lmm-eps10/pasta", "lmm-eps10/pasta+belief", "lmm-eps10/mixture",
                                 "lmm-eps10/mixture-scratch", "lmm/mixture", "bayes/mixture", "lmm+bayes/mixture")
BASELINES = ("random", "lmm", "popular", "greedy", "bayes", "bayes-diverse", "planner", "oracle")
#: Types tried by the user-model sweep on the main recipe's data (the best held-out log-likelihood is kept).
SWEEP_K: tuple[int, ...] = (4, 8, 16)


def parse_runs(text: str) -> tuple[str, ...]:
    """``RECIPE/VARIANT,...`` checked against :data:`RECIPES` and :data:`VARIANTS`."""
    runs = tuple(r.strip() for r in text.split(",") if r.strip())
    for run in runs:
        recipe, _, variant = run.partition("/")
        if recipe not in RECIPES or variant not in VARIANTS:
            raise ValueError(f"run {run!r} is not RECIPE/VARIANT; recipes: {', '.join(RECIPES)}; variants: "
                             f"{', '.join(VARIANTS)}")
    if not runs:
        raise ValueError("give at least one run, e.g. lmm-eps10/mixture")
    return runs


def _dataset_name(policy: str, epsilon: float) -> str:
    return f"{policy}-eps{round(epsilon * 100)}" if epsilon else policy


def _fit_user_model(data: list[Path], out: Path, k: int, progress: bool) -> Path:
    from pasta_env.datasets.preferences import trajectory_preferences
    from simulators.users.em import EMConfig, train_user_model

    if not out.is_file():
        train_user_model(trajectory_preferences([str(d) for d in data]), EMConfig(num_types=k, users_per_batch=256),
                         progress=progress, out=out)
    return out


def run(out: str = "results/iql", episodes: int = 30000, steps: int = 3000, eval_episodes: int = 2000,
        eval_seed: int = 1_000_000, runs: tuple[str, ...] = DEFAULT_RUNS, hidden: int = 128,
        batch_size: int = 256, device: str = "cpu", progress: bool = True,
        prompts: str | None = None) -> dict[str, Any]:
    """Generate, fit, train, evaluate; print the tables and write JSON, markdown and plots under ``out``."""
    from dataclasses import replace

    from agents import make_agent
    from agents.evaluation import evaluate, plot_per_turn
    from agents.offline.iql import IQLSettings, train_iql
    from benchmarks.user_model_sweep import sweep
    from pasta_env.datasets import DatasetSpec, generate
    from simulators.users.em import EMConfig

    root = Path(out)
    timings: dict[str, float] = {}
    datasets: dict[str, Path] = {}
    recipes = list(dict.fromkeys(r.split("/")[0] for r in runs))
    for name in recipes:
        for policy, eps in RECIPES[name][0]:
            key = _dataset_name(policy, eps)
            if key not in datasets:
                t0 = time.perf_counter()
                datasets[key] = root / "data" / key
                generate(datasets[key], DatasetSpec(episodes=episodes, policy=policy, epsilon=eps), progress=progress,
                         make_policy=make_agent)
                timings[f"generate {key}"] = round(time.perf_counter() - t0, 1)

    def data_of(recipe: str) -> list[Path]:
        return [datasets[_dataset_name(p, e)] for p, e in RECIPES[recipe][0]]

    # the data-only model-based reference: EM on each recipe's choices and rewards (K = 8), and a K sweep on the first
    user_models: dict[str, Path] = {}
    for name in recipes:
        t0 = time.perf_counter()
        user_models[name] = _fit_user_model(data_of(name), root / "user_models" / f"{name}-k8.npz", 8, progress)
        timings[f"fit user model {name}"] = round(time.perf_counter() - t0, 1)
    main = recipes[0]
    t0 = time.perf_counter()
    sweep_rows = sweep(list(SWEEP_K), str(data_of(main)[0]), base_config=EMConfig(users_per_batch=256),
                       progress=progress)
    best_k = max(sweep_rows, key=lambda r: r["loglik_per_record"])["k"]
    swept = _fit_user_model(data_of(main), root / "user_models" / f"{main}-k{best_k}.npz", int(best_k), progress)
    timings["user model sweep"] = round(time.perf_counter() - t0, 1)

    base = IQLSettings(steps=steps, batch_size=batch_size, hidden=hidden, eval_every=max(steps // 6, 1),
                       eval_episodes=500)
    histories = {}
    for run_name in runs:
        recipe, _, variant = run_name.partition("/")
        fields, fitted = VARIANTS[variant]
        settings = replace(base, **fields, user_model=str(user_models[recipe]) if fitted else None)
        t0 = time.perf_counter()
        histories[run_name] = train_iql(data_of(recipe), root / "models" / recipe / variant, settings,
                                        mix=RECIPES[recipe][1], device=device, progress=progress)
        timings[f"train {run_name}"] = round(time.perf_counter() - t0, 1)
    models = {f"iql:{root / 'models' / r}": f"iql[{r}]" for r in runs}
    references = {f"bayes:{user_models[main]}": f"bayes:fitted[{main},K=8]",
                  f"bayes-diverse:{user_models[main]}": f"bayes-diverse:fitted[{main},K=8]"}
    if swept != user_models[main]:
        references[f"bayes:{swept}"] = f"bayes:fitted[{main},K={best_k}]"
    rename = {**models, **references}
    agents = [*models, *references, *BASELINES]
    report: dict[str, Any] = {
        "machine": machine(), "episodes_per_dataset": episodes, "steps": steps, "settings": base.__dict__,
        "runs": list(runs), "device": device, "timings_s": timings, "user_model_sweep": sweep_rows,
        "swept_k": best_k,
        "training": {r: {"steps_per_second": h["steps_per_second"], "seconds": h["seconds"],
                         "update_steps_per_second": h.get("update_steps_per_second"),
                         "final_return": h["evaluations"][-1]["return_mean"]} for r, h in histories.items()},
        "learning_curves": {r: h["evaluations"] for r, h in histories.items()},
    }
    refs: dict[str, float] = {}
    sections = [("default prompts", root, None)] + ([(f"prompts of {prompts}", root / "prompts", prompts)]
                                                      if prompts else [])
    lines = [f"IQL on {episodes} trajectories per dataset, {steps} gradient steps (batch {batch_size}, hidden "
             f"{hidden}, {device}); {eval_episodes} users per agent (env seeds {eval_seed}+e)", "",
             f"user-model sweep on {main} (held-out 20% of users): " + ", ".join(
                 f"K={r['k']} log-lik/choice {r['loglik_per_record']:.4f}" for r in sweep_rows) + f"; kept K={best_k}"]
    for title, folder, prompt_file in sections:
        result = evaluate(agents, episodes=eval_episodes, seed=eval_seed, prompts=prompt_file, progress=progress)
        table = result.table()
        for long, short in rename.items():
            table = table.replace(f"| {long} |", f"| {short} |")
        against = {"lmm", "popular", "bayes", "bayes-diverse", *references}
        comparisons = [{**c, "a": rename.get(c["a"], c["a"]), "b": rename.get(c["b"], c["b"])}
                       for c in result.comparisons()
                       if (c["a"] in rename and c["b"] in against) or (c["b"] in rename and c["a"] in against)]
        report[title] = {"evaluation": result.to_dict(), "comparisons": comparisons}
        lines += ["", f"## {title}", "", table, "", "paired differences involving the learned agents (same users):"]
        for c in comparisons:
            mark = "" if c["significant"] else "  (within CI)"
            lines.append(f"  {c['a']} - {c['b']}: {c['mean_difference']:+.3f} ± {c['ci95']:.3f}{mark}")
        folder.mkdir(parents=True, exist_ok=True)
        plot_per_turn(result, str(folder / "per_turn.png"), labels=rename)
        if prompt_file is None:
            refs = {n: float(result.agents[n].returns.mean()) for n in ("lmm", "popular", "bayes", "oracle")}
    lines += ["", "training (gradient steps/s of the updates alone and with evaluations; seconds to the reported "
                  "return):"]
    lines += [f"  {r}: {t['update_steps_per_second'] or 0:.1f} steps/s ({t['steps_per_second']:.1f} with evaluations), "
              f"{t['seconds']:.0f} s, return {t['final_return']:.2f}"
              for r, t in report["training"].items() if t["steps_per_second"]]
    text = "\n".join(lines)
    print(text)
    root.mkdir(parents=True, exist_ok=True)
    (root / "iql.md").write_text(text + "\n")
    write_json(root / "iql.json", report)
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
        ax.plot(steps, mean, marker="o", markersize=3, label=f"iql[{name}]")
        ax.fill_between(steps, mean - half, mean + half, alpha=0.15)
    for name, value in references.items():
        ax.axhline(value, linestyle="--", linewidth=1, color="grey")
        ax.text(1.0, value, f"{name} ", transform=ax.get_yaxis_transform(), ha="right", va="bottom",
                fontsize="small", color="grey")
    ax.set_xlabel("gradient steps")
    ax.set_ylabel("mean return, 500 users (95% CI)")
    ax.set_title("IQL learning curves (step 0: the untrained network)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
