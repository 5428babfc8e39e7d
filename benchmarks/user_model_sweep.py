"""Accuracy of the EM-trained user model against the number of types K.

Usage::

    pasta user-model-sweep --k 1,2,4,8,16,32 --data DIR/train --test DIR/test --out results/user_model_sweep

Trains one model per K on ``--data`` and evaluates each on the held-out users
of ``--test`` (see :mod:`simulators.users.evaluation`); without ``--test``,
a seeded 20% of ``--data``'s users are held out. Writes ``sweep.md``,
``sweep.json`` and ``sweep.png`` under ``--out``. PASTA's accuracy-versus-K
table.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.common import machine, table
from simulators.atomic import atomic_path, write_json

COLUMNS = ["k", "pairwise_accuracy", "rating_spearman", "choice_accuracy", "loglik_per_record",
           "adjusted_rand_index", "train_seconds"]


def held_out_split(data, fraction: float = 0.2, seed: int = 0):
    """``(train, test)``: a seeded ``fraction`` of the users held out with all their records."""
    import numpy as np

    test_users = np.random.default_rng(seed).random(data.num_users) < fraction
    if test_users.all() or not test_users.any():
        raise ValueError(f"cannot hold out {fraction:.0%} of {data.num_users} users; give --test")
    return data.subset_users(~test_users), data.subset_users(test_users)


def sweep(ks, train_dir, test_dir=None, base_config=None, progress=True, reference=None) -> list[dict]:
    """Train and evaluate one model per K; return one row per K.

    Args:
        test_dir: Held-out users; ``None`` holds out 20% of ``train_dir``'s users.
    """
    from dataclasses import replace

    from pasta_env.datasets.preferences import read_preferences as read_dataset
    from simulators.users.em import EMConfig, train_user_model
    from simulators.users.evaluation import evaluate_user_model

    if test_dir is None:
        train, test = held_out_split(read_dataset(train_dir))
    else:
        train, test = read_dataset(train_dir), read_dataset(test_dir)
    base = base_config or EMConfig()
    rows = []
    if reference is not None:
        rows.append({"k": "planted", **_round(evaluate_user_model(reference, test))})
    for k in ks:
        t0 = time.perf_counter()
        model, _ = train_user_model(train, replace(base, num_types=k), progress=progress)
        metrics = evaluate_user_model(model, test)
        rows.append({"k": k, **_round(metrics), "train_seconds": round(time.perf_counter() - t0, 1)})
        if progress:
            print(table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    return rows


def _round(metrics: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


def plot(rows: list[dict], path) -> None:
    """Held-out log-likelihood and accuracies against K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows_k = [r for r in rows if r["k"] != "planted"]
    ks = [r["k"] for r in rows_k]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(ks, [r["loglik_per_record"] for r in rows_k], marker="o")
    a.set_xscale("log", base=2)
    a.set_xlabel("number of user types K")
    a.set_ylabel("held-out log-likelihood per record")
    for name in ("pairwise_accuracy", "choice_accuracy", "rating_spearman"):
        if name in rows_k[0]:
            b.plot(ks, [r[name] for r in rows_k], marker="o", label=name.replace("_", " "))
    b.set_xscale("log", base=2)
    b.set_xlabel("number of user types K")
    b.legend(fontsize="small")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.set_xticks(ks, [str(k) for k in ks])
    planted = [r for r in rows if r["k"] == "planted"]
    if planted:
        a.axhline(planted[0]["loglik_per_record"], color="grey", ls="--", label="planted model")
        a.legend(fontsize="small")
    fig.suptitle("EM user model on held-out users")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def run(ks: list[int], data: str, test: str | None = None, planted: str | None = None,
        epochs: int | None = None, out: str = "results/user_model_sweep", progress: bool = True) -> list[dict]:
    """Train a model per K, evaluate on held-out users, write ``sweep.md``, ``sweep.json`` and ``sweep.png``.

    Args:
        ks: Numbers of types to try.
        data: Training dataset folder.
        test: Held-out users' folder (``None``: hold out 20% of ``data``'s users).
        planted: A planted model checkpoint, listed as reference.
        epochs: EM epochs per model (``None``: the trainer's default).
        out: Output folder.
        progress: Show progress.
    """
    from dataclasses import replace

    from simulators.users.checkpoint import load_user_model
    from simulators.users.em import EMConfig

    if not ks or min(ks) < 1:
        raise ValueError(f"the numbers of types must be positive integers, got {ks}")
    base = EMConfig() if epochs is None else replace(EMConfig(), epochs=epochs)
    reference = load_user_model(planted) if planted else None
    rows = sweep(ks, data, test, base, progress=progress, reference=reference)
    folder = Path(out)
    md = table(rows, COLUMNS)
    print(md)
    with atomic_path(folder / "sweep.md") as tmp, open(tmp, "w") as fh:
        fh.write(md + "\n")
    args = {"k": ks, "data": str(data), "test": test, "planted": planted, "epochs": epochs, "out": str(out)}
    write_json(folder / "sweep.json", {"benchmark": "user_model_sweep", "rows": rows, "machine": machine(),
                                       "args": args})
    plot(rows, folder / "sweep.png")
    return rows
