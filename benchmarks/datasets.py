"""The 30,000-trajectory dataset: wall time, peak memory, size on disk, verify, and what float16 costs.

Usage::

    pasta bench-dataset [--episodes 30000] [--policy lmm] [--json results/datasets.json]

Generates the dataset in a child process (``pasta generate``, so the peak
resident memory is the generator's alone), reads its size and the
generator's own phase timings, runs ``verify`` and times it, and measures
the float16 storage: the largest rounding error, and for the ``lmm``,
``greedy`` and ``bayes`` agents the share of slates that change and the
paired return difference when they act on rounded observations (same users,
95% CI). Targets on a 2-core CPU: <= 60 s and <= 1 GB for 30,000 episodes.
"""

from __future__ import annotations

import resource
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import machine, table, write_json
from pasta_env.stats import ci95


def generate_in_child(out: Path, episodes: int, policy: str, seed: int,
                      cli: Sequence[str] = ("pasta",)) -> dict[str, Any]:
    """Run ``pasta generate`` in a child process (``cli`` runs ``pasta``); its wall time and peak memory."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    cmd = [*cli, "generate", "--episodes", str(episodes), "--policy", policy, "--seed", str(seed), "--out", str(out),
           "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"pasta generate failed: {proc.stderr.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"command": "pasta " + " ".join(cmd[len(cli):-3] + ["--out", "DIR"]), "wall_s": round(wall, 2),
            "peak_rss_mb": round(max(peak, before) / 1024, 1), "output": proc.stdout.strip()}


def float16_cost(episodes: int, seed: int, agents: tuple[str, ...] = ("lmm", "greedy", "bayes")) -> dict[str, Any]:
    """What storing embeddings as float16 changes for agents that act on them.

    For each agent, two runs on the same users (env seeds ``seed + e``): one
    on the env's observations, one on the observations rounded to float16
    as the dataset stores them. Reports the share of turns whose slate
    differs in the first run's states and the paired return difference.
    """
    import gymnasium as gym

    import pasta_env  # noqa: F401
    from agents import make_agent

    def rounded(obs):
        return {k: v.astype(np.float16).astype(np.float32) if v.dtype == np.float32 else v for k, v in obs.items()}

    out: dict[str, Any] = {}
    max_err = 0.0
    for name in agents:
        returns = {}
        changed = turns = 0
        for variant in ("exact", "float16"):
            env: Any = gym.make_vec("PastaT2I-v0", num_envs=episodes, vectorization_mode="vector_entry_point")
            agent = make_agent(name, env.world, env.config, seed)
            obs, info = env.reset(seed=seed)
            total = np.zeros(episodes)
            for _ in range(env.config.horizon):
                seen = obs if variant == "exact" else rounded(obs)
                slates = agent.act(seen, info)
                if variant == "exact":
                    other = agent.act(rounded(obs), info)
                    changed += int((np.sort(other, axis=1) != np.sort(slates, axis=1)).any(axis=1).sum())
                    turns += episodes
                    max_err = max(max_err, float(np.abs(rounded(obs)["candidates"] - obs["candidates"]).max()))
                obs, reward, *_, info = env.step(slates)
                total += reward
            env.close()
            returns[variant] = total
        diff = returns["float16"] - returns["exact"]
        out[name] = {"slates_changed": round(changed / turns, 4),
                     "return_exact": round(float(returns["exact"].mean()), 3),
                     "return_float16": round(float(returns["float16"].mean()), 3),
                     "difference": round(float(diff.mean()), 4),
                     "difference_ci95": round(ci95(diff), 4)}
    return {"episodes": episodes, "max_abs_rounding_error": max_err, "agents": out}


def run(episodes: int = 30000, policy: str = "lmm", seed: int = 0, precision_episodes: int = 2000,
        json_path: str | None = "results/datasets.json", out: str | None = None,
        cli: Sequence[str] = ("pasta",)) -> dict[str, Any]:
    """Generate, measure, verify; print a summary and write JSON.

    Args:
        episodes: Episodes in the dataset.
        policy: Behaviour policy.
        seed: Generation seed.
        precision_episodes: Episodes per agent for the float16 measurement (0 skips it).
        json_path: Where to write the figures (``None``: nowhere).
        out: Where to put the dataset (``None``: a temporary folder, removed after).
        cli: How to run the ``pasta`` command (generation is timed as a whole process).
    """
    from pasta_env.datasets import info, verify

    with tempfile.TemporaryDirectory(prefix="pasta-bench-") as tmp:
        folder = Path(out) if out else Path(tmp) / "dataset"
        gen = generate_in_child(folder, episodes, policy, seed, cli)
        facts = info(folder)
        t0 = time.perf_counter()
        report = verify(folder)
        verify_s = time.perf_counter() - t0
    result = {
        "machine": machine(), "episodes": episodes, "policy": policy, "seed": seed,
        "generate": {**gen, "timings": facts["timings"]},
        "size_bytes": facts["bytes"], "size_mb": round(facts["bytes"] / 1e6, 1),
        "bytes_per_episode": round(facts["bytes"] / episodes),
        "files_mb": {k: round(v / 1e6, 1) for k, v in facts["files"].items()},
        "returns": facts["returns"],
        "verify": {"ok": report.ok, "seconds": round(verify_s, 1), "text": report.text()},
    }
    if precision_episodes:
        result["float16"] = float16_cost(precision_episodes, seed)
    print(f"{episodes} episodes of {policy}: {gen['wall_s']:.1f} s wall (generator phases: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in facts["timings"].items())
          + f"), peak memory {gen['peak_rss_mb']:.0f} MB, {result['size_mb']:.0f} MB on disk "
            f"({result['bytes_per_episode']} B per episode)")
    print(f"verify ({verify_s:.1f} s):\n{report.text()}")
    if precision_episodes:
        f16 = result["float16"]
        rows = [{"agent": k, **v} for k, v in f16["agents"].items()]
        print(f"\nfloat16 storage: largest rounding error {f16['max_abs_rounding_error']:.2e}; agents acting on "
              f"rounded observations ({f16['episodes']} paired episodes):")
        print(table(rows, ["agent", "slates_changed", "return_exact", "return_float16", "difference",
                           "difference_ci95"]))
    if json_path:
        write_json(json_path, result)
        print(f"wrote {json_path}")
    return result
