"""How fast PASTA's agent trains: gradient steps per second of d3rlpy's IQL update and of ours, and where the time goes.

Usage::

    pasta bench-iql-speed [--device cuda] [--steps 200] [--json results/iql_speed.json]

For each configuration (the update: d3rlpy's ``algo.update`` path with its
actor, or the critic-only step the trainer takes; the critic: ``mean`` or
``mixture``; the batch size) it times ``steps`` gradient steps after a
warm-up, with the device synchronised before and after (steps/s of the
updates alone: batches are gathered on the device, no evaluation), and
profiles a few steps of the first two with the torch profiler (the
operators that took the most time). Writes the figures as JSON.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine, table, write_json

#: (update, critic, batch size) of each timed configuration.
CONFIGS: tuple[tuple[str, str, int], ...] = (
    ("d3rlpy", "mean", 256), ("critic-only", "mean", 256), ("critic-only", "mean", 1024),
    ("d3rlpy", "mixture", 256), ("critic-only", "mixture", 256), ("critic-only", "mixture", 1024))


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(data: str | None = None, device: str = "cpu", steps: int = 200, warmup: int = 20, profile_steps: int = 20,
        top: int = 12, json_path: str | None = "results/iql_speed.json", progress: bool = True) -> dict[str, Any]:
    """Time every configuration of :data:`CONFIGS`; print a table and the profiles, write JSON."""
    from agents import make_agent
    from agents.offline.iql import IQLSettings, _Sampler, algo_device, make_iql, update
    from pasta_env.datasets import DatasetSpec, generate

    with tempfile.TemporaryDirectory() as tmp:
        if data is None:
            data = str(Path(tmp) / "data")
            generate(data, DatasetSpec(episodes=2000, policy="lmm", epsilon=0.1), progress=progress,
                     make_policy=make_agent)
        rows, profiles = [], {}
        for update_kind, critic, batch in CONFIGS:
            settings = IQLSettings(batch_size=batch, critic=critic, belief_types=8 if critic == "mixture" else 0)
            sampler = _Sampler([data], [1.0], batch, 0, device=algo_device(device), check=False)
            algo = make_iql(settings, sampler.layout.horizon, sampler.layout.slate_size, sampler.layout.dim,
                            device, sampler.reward_norm)
            actor = update_kind == "d3rlpy"
            for _ in range(warmup):
                update(algo, sampler.sample(), actor)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                update(algo, sampler.sample(), actor)
            _sync(device)
            seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(steps):
                sampler.sample()
            _sync(device)
            sampling = time.perf_counter() - t0
            rows.append({"update": update_kind, "critic": critic, "batch": batch,
                         "steps_per_s": round(steps / seconds, 1), "ms_per_step": round(1000 * seconds / steps, 2),
                         "ms_batch_gathering": round(1000 * sampling / steps, 2)})
            if progress:
                print(table(rows[-1:], list(rows[0])).splitlines()[-1], flush=True)
            if batch == 256 and critic == "mean":
                profiles[update_kind] = _profile(algo, sampler, actor, profile_steps, top, device)
    params = sum(p.numel() for p in algo.impl.q_function.parameters())
    report = {"machine": machine(), "device": device, "steps": steps, "critic_parameters_last": params,
              "configs": rows, "profiles": profiles}
    print(table(rows, list(rows[0])))
    for name, ops in profiles.items():
        print(f"\nprofile, {name} update (mean critic, batch 256), {profile_steps} steps: the operators that took "
              "the most time")
        print(table(ops, list(ops[0])))
    if json_path:
        write_json(json_path, report)
        print(f"\nwrote {json_path}")
    return report


def _profile(algo, sampler, actor: bool, steps: int, top: int, device: str) -> list[dict[str, Any]]:
    from torch.profiler import ProfilerActivity, profile

    from agents.offline.iql import update

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            update(algo, sampler.sample(), actor)
        _sync(device)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) or 1
    return [{"operator": e.key[:48], "calls_per_step": round(e.count / steps, 1),
             "self_cpu_ms_per_step": round(e.self_cpu_time_total / 1000 / steps, 3),
             "share": f"{100 * e.self_cpu_time_total / total:.1f}%"} for e in events]
