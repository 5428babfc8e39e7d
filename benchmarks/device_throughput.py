"""The synthetic world on a torch device: env-steps/s against the number of users, memory, and agreement with numba.

Usage::

    pasta bench --device cuda [--sizes 1000,10000,100000,1000000] [--seconds 3] [--agreement-users 100000]

Measures, on ``--device``:

* env-steps/s of the torch vector env (``copy=False``) for each N, the
  median of ``--runs`` runs of ``--seconds``, with a random policy that
  lives on the device (``torch.randint`` there: no data crosses per step);
  autoreset steps are counted as the numpy benchmark counts them;
* memory: on a GPU the peak allocated during those runs (total and per
  env); on a CPU the bytes of the state and observation tensors;
* on a CPU, the numba vector env at the same N, run for run beside it;
* agreement with the numba path: ``--agreement-users`` users per backend,
  random slates, each backend its own draws; per turn the two-sample KS
  statistic and p-value of the chosen column's utility, the slate's best
  utility and the reward, and a chi-square test of the chosen columns.

A size that does not fit in the device's memory is reported as such and
the larger sizes are skipped. Target (the issue's): >= 10,000,000
env-steps/s at the best N on one H100/H200-class GPU.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from benchmarks.common import machine, table, write_json

DEFAULT_SIZES = {"cuda": (1_000, 10_000, 100_000, 1_000_000), "cpu": (1_024, 16_384)}


def _sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_device(env, torch, seconds: float) -> float:
    """Env-steps/s of ``env`` under a random policy on its device for about ``seconds``."""
    n, (L, C) = env.num_envs, (env.config.slate_size, env.config.num_candidates)
    device = env.device
    gen = torch.Generator(device=device).manual_seed(0)
    env.reset(seed=0)
    for _ in range(3):  # warm up: allocator, kernels
        env.step(torch.randint(0, C, (n, L), device=device, generator=gen))
    _sync(torch, device)
    steps, start = 0, time.perf_counter()
    while True:
        for _ in range(4):
            env.step(torch.randint(0, C, (n, L), device=device, generator=gen))
        steps += 4
        _sync(torch, device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps * n / elapsed


def _time_numba(n: int, seconds: float) -> float:
    from benchmarks.throughput import vector_env

    return vector_env(n, seconds, runs=1)


def _state_bytes(env) -> int:
    core = env.core
    tensors = [*core.state.values(), core.u, core.cand_ids]
    return int(sum(t.numel() * t.element_size() for t in tensors))


def throughput(device: str, sizes, seconds: float, runs: int) -> list[dict]:
    """One row per N: env-steps/s (median of ``runs``), memory, and numba's figure beside it on a CPU."""
    import gymnasium as gym
    import torch

    import pasta_env  # noqa: F401

    dev = torch.device(device)
    rows: list[dict] = []
    for n in sizes:
        row: dict[str, Any] = {"num_envs": n, "device": str(dev)}
        try:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
            env = gym.make_vec("PastaT2I-v0", num_envs=n, vectorization_mode="vector_entry_point", device=device,
                               copy=False)
            figures, numba = [], []
            for _ in range(runs):
                figures.append(_time_device(env, torch, seconds))
                if dev.type == "cpu":
                    numba.append(_time_numba(n, seconds))
            row["steps_per_s"] = round(statistics.median(figures))
            row["runs"] = [round(f) for f in figures]
            if dev.type == "cuda":
                peak = torch.cuda.max_memory_allocated(dev)
                row["peak_memory_mb"] = round(peak / 2 ** 20, 1)
                row["bytes_per_env"] = round(peak / n)
            else:
                row["state_bytes_per_env"] = round(_state_bytes(env) / n)
                row["numba_steps_per_s"] = round(statistics.median(numba))
                row["numba_runs"] = [round(f) for f in numba]
            env.close()
            del env
        except (torch.cuda.OutOfMemoryError, MemoryError):
            row["steps_per_s"] = None
            row["error"] = "out of device memory"
            rows.append(row)
            print(f"N={n:,}: out of device memory; larger sizes skipped")
            break
        rows.append(row)
        print(f"N={n:,}: {row['steps_per_s']:,} env-steps/s" + (
            f" (numba {row['numba_steps_per_s']:,})" if "numba_steps_per_s" in row else ""), flush=True)
    return rows


def agreement(device: str, users: int, seed: int = 0) -> list[dict]:
    """Per turn: KS statistics and p-values (utility, best utility, reward) and a choice chi-square, numba vs device."""
    import gymnasium as gym
    from scipy import stats

    import pasta_env  # noqa: F401

    samples = {}
    for backend in ("numba", device):
        options: dict[str, Any] = {} if backend == "numba" else {"device": device}
        env: Any = gym.make_vec("PastaT2I-v0", num_envs=users, vectorization_mode="vector_entry_point",
                                expose_user_type=True, copy=False, **options)
        env.reset(seed=seed)
        rng = np.random.default_rng(seed + 1)
        turns = []
        for _ in range(env.config.horizon):
            _, reward, _, _, info = env.step(rng.integers(0, env.config.num_candidates, (users, env.config.slate_size)))
            util, choice = (np.asarray(_host(info["utilities"])), np.asarray(_host(info["choice"])))
            turns.append({"utility": np.take_along_axis(util, choice[:, None], 1)[:, 0], "best": util.max(1),
                          "reward": np.asarray(_host(reward), np.float64), "choice": choice})
        samples[backend] = turns
        env.close()
    rows = []
    for t, (a, b) in enumerate(zip(samples["numba"], samples[device])):
        row: dict[str, Any] = {"turn": t + 1, "users": users}
        for stat in ("utility", "best", "reward"):
            res = stats.ks_2samp(a[stat], b[stat])
            row[f"{stat}_mean_numba"] = round(float(a[stat].mean()), 4)
            row[f"{stat}_mean_device"] = round(float(b[stat].mean()), 4)
            row[f"{stat}_ks"] = round(float(res.statistic), 5)
            row[f"{stat}_p"] = float(f"{res.pvalue:.3g}")
        counts = np.stack([np.bincount(a["choice"], minlength=4), np.bincount(b["choice"], minlength=4)])
        row["choice_chi2_p"] = float(f"{stats.chi2_contingency(counts).pvalue:.3g}")
        rows.append(row)
    return rows


def _host(x):
    return x.cpu().numpy() if hasattr(x, "cpu") else x


def run(device: str, sizes=None, seconds: float = 3.0, runs: int = 3, agreement_users: int = 100_000,
        json_path: str | None = None, cli=("pasta",)) -> dict:
    """Run the device benchmark; print tables and write JSON.

    Args:
        device: A torch device name (``"cuda"``, ``"cuda:1"``, ``"cpu"``).
        sizes: Numbers of users N (default: 1k to 1M on a GPU, 1,024 and 16,384 on a CPU).
        seconds: Length of one timed run.
        runs: Runs per figure (the median is reported).
        agreement_users: Users per backend in the agreement check (0 skips it).
        json_path: Where to write the figures (``None``: nowhere).
    """
    import torch

    dev = torch.device(device)
    sizes = tuple(sizes or DEFAULT_SIZES["cuda" if dev.type == "cuda" else "cpu"])
    rows = throughput(device, sizes, seconds, runs)
    cols = ["num_envs", "steps_per_s"] + (["peak_memory_mb", "bytes_per_env"] if dev.type == "cuda"
                                          else ["numba_steps_per_s", "state_bytes_per_env"])
    print(table(rows, cols))
    payload: dict = {"benchmark": "device-throughput", "device": str(dev), "rows": rows, "seconds_per_run": seconds,
                     "runs": runs, "machine": machine(), "command": " ".join(cli)}
    if dev.type == "cuda":
        payload["gpu"] = torch.cuda.get_device_name(dev)
    measured = [r for r in rows if r.get("steps_per_s")]
    if measured:
        best = max(measured, key=lambda r: r["steps_per_s"])
        payload["best"] = best
        print(f"best: {best['steps_per_s']:,} env-steps/s at N={best['num_envs']:,}"
              + (f", peak memory {best['peak_memory_mb']:,} MB" if "peak_memory_mb" in best else ""))
    if agreement_users:
        payload["agreement"] = agreement(device, agreement_users)
        print(f"\nagreement with the numba path ({agreement_users:,} users per backend, random slates; KS statistic "
              "and p-value per turn):")
        print(table(payload["agreement"], ["turn", "utility_ks", "utility_p", "best_ks", "best_p", "reward_ks",
                                           "reward_p", "choice_chi2_p"]))
    payload["torch_version"] = torch.__version__
    if json_path:
        write_json(json_path, payload)
        print(f"wrote {json_path}")
    return payload
