"""Throughput and memory of PastaT2I-v0: single env and native vector env.

Usage::

    pasta bench [--steps 20000] [--json results/throughput.json]
    python -m benchmarks.throughput [--steps 20000] [--json results/throughput.json]

Measures single-env steps/s (through ``gym.make``, resets included), vector
env-steps/s at N = 1, 64, 1024 on one thread and at N = 1024 with the
default worker threads (autoreset steps included), observation bytes per
step, and the peak resident memory of a process running 1024 envs.
Targets on a 2-core CPU: >= 10,000 steps/s single, >= 100,000 env-steps/s at
N = 1024.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np

import pasta_env  # noqa: F401
from benchmarks.common import machine, table, write_json
from pasta_env.vector_env import default_threads


def single_env(steps: int, seed: int = 0) -> float:
    """Steps per second of one env with random slates."""
    env = gym.make("PastaT2I-v0")
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, 25, (steps, 4))
    start = time.perf_counter()
    for a in actions:
        *_, term, _, _ = env.step(a)
        if term:
            env.reset()
    return steps / (time.perf_counter() - start)


def vector_env(num_envs: int, steps: int, seed: int = 0, num_threads: int | None = None) -> float:
    """Env-steps per second of the native vector env with random slates."""
    env = gym.make_vec("PastaT2I-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                       num_threads=num_threads)
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, 25, (8, num_envs, 4))
    n = max(12, steps // num_envs)
    start = time.perf_counter()
    for i in range(n):
        env.step(actions[i % 8])
    return n * num_envs / (time.perf_counter() - start)


def observation_bytes() -> dict:
    """Bytes of one observation, per key and in total."""
    env = gym.make("PastaT2I-v0")
    obs, _ = env.reset(seed=0)
    per_key = {k: int(np.asarray(v).nbytes) for k, v in obs.items()}
    return {"total": sum(per_key.values()), "per_key": per_key}


def peak_rss_mb(num_envs: int = 1024, steps: int = 60) -> float:
    """Peak resident memory (MiB) of a fresh process running ``num_envs`` envs."""
    code = (
        "import resource, numpy as np, gymnasium as gym, pasta_env\n"
        f"e = gym.make_vec('PastaT2I-v0', num_envs={num_envs}, vectorization_mode='vector_entry_point')\n"
        "e.reset(seed=0)\n"
        f"a = np.zeros(({num_envs}, 4), np.int64)\n"
        f"for _ in range({steps}): e.step(a)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    kb = int(out.stdout.strip().splitlines()[-1])
    return round(kb / 1024, 1)


def run(steps: int = 20000, json_path: str | None = "results/throughput.json") -> dict:
    """Run the throughput benchmark; print a table and write JSON.

    Args:
        steps: Steps per single-env measurement (vector measurements take 5x).
        json_path: Where to write the figures (``None``: nowhere).
    """
    rows = [{"setting": "single env (gym.make)", "num_envs": 1, "threads": 1,
             "steps_per_s": round(single_env(steps)), "target": 10000}]
    for n, threads in ((1, 1), (64, 1), (1024, 1), (1024, None)):
        env_threads = default_threads(n) if threads is None else threads
        rows.append({"setting": "vector env", "num_envs": n, "threads": env_threads,
                     "steps_per_s": round(vector_env(n, steps * 5 if n > 1 else steps, num_threads=threads)),
                     "target": 100000 if n == 1024 else ""})
    obs = observation_bytes()
    rss = peak_rss_mb()
    print(table(rows, ["setting", "num_envs", "threads", "steps_per_s", "target"]))
    print(f"\nobservation: {obs['total']} bytes per step; peak RSS of a 1024-env run: {rss} MiB")
    payload = {"benchmark": "throughput", "command": f"pasta bench --steps {steps}", "rows": rows,
               "observation_bytes": obs, "peak_rss_mb_1024_envs": rss, "machine": machine(),
               "self_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if json_path:
        write_json(json_path, payload)
    return payload


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.throughput ARGS`` is ``pasta bench ARGS``."""
    from pasta_cli.main import main as pasta

    return pasta(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
