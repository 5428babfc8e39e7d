"""Does EM recover the planted user types? Accuracy, ARI and training time.

Usage::

    pasta bench-user-model [--data data/planted] [--json results/user_model.json]

Generates planted synthetic data (8 tastes; 2,000 training and 500 held-out
users; 100,000 training records) unless ``--data`` already holds it, trains
the EM user model with K = 8 on a single CPU thread, and evaluates it and the
planted model on the held-out users. Checks the targets: adjusted Rand index
>= 0.9; pairwise accuracy within 2 points of the planted model's.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.common import machine, table
from simulators.atomic import write_json

COLUMNS = ["model", "pairwise_accuracy", "rating_spearman", "choice_accuracy", "loglik_per_record",
           "adjusted_rand_index"]


def run(data: str = "data/planted", epochs: int = 20, json_path: str | None = "results/user_model.json") -> dict:
    """Run the benchmark; print a table and write JSON.

    Args:
        data: Planted data folder (generated there if it holds none).
        epochs: EM epochs.
        json_path: Where to write the figures (``None``: nowhere).
    """
    from pasta_env.synthetic_data import SyntheticDataConfig, generate
    from simulators.preferences.data import read_dataset
    from simulators.users.checkpoint import load_user_model
    from simulators.users.em import EMConfig, train_user_model
    from simulators.users.evaluation import evaluate_user_model

    folder = Path(data)
    timings = {}
    if not (folder / "train").is_dir():
        t0 = time.perf_counter()
        generate(folder, SyntheticDataConfig(), progress=False)
        timings["generate_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    train, test = read_dataset(folder / "train"), read_dataset(folder / "test")
    timings["read_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    model, history = train_user_model(train, EMConfig(num_types=8, epochs=epochs), progress=False)
    timings["train_s"] = round(time.perf_counter() - t0, 1)
    planted = load_user_model(folder / "planted_model.npz")
    rows = [{"model": "planted", **evaluate_user_model(planted, test)},
            {"model": "EM K=8", **evaluate_user_model(model, test)}]
    for r in rows:
        r.pop("query_records", None)
        for k, v in r.items():
            if isinstance(v, float):
                r[k] = round(v, 4)
    checks = {
        "ari_at_least_0.9": rows[1]["adjusted_rand_index"] >= 0.9,
        "pairwise_within_2_points": rows[1]["pairwise_accuracy"] >= rows[0]["pairwise_accuracy"] - 0.02,
    }
    print(table(rows, COLUMNS))
    print(f"\ntraining records: {len(train)} ({train.counts()}), users: {train.num_users}")
    print(f"timings (s): {timings}; checks: {checks}")
    payload = {"benchmark": "user_model", "command": f"pasta bench-user-model --data {data} --epochs {epochs}",
               "rows": rows, "timings": timings, "checks": checks, "train_records": len(train), "history": history,
               "machine": machine()}
    if json_path:
        write_json(json_path, payload)
    return payload
