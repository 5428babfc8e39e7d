"""Dataset generation on Ray: one process against 1 and 2 workers, Ray's start-up, and a projection to a cluster.

Usage::

    pasta bench-ray [--episodes 20000] [--clip-episodes 48] [--workers 1,2] [--json results/ray_scaling.json]

Measured on this machine, each run's dataset checked equal (array checksums)
to the single-process one:

* Ray's start-up: ``ray.init`` of a local Ray, then the workers' start
  (actor processes, imports, world and policy built), timed apart;
* the synthetic world (``--episodes``, chunks of ``--chunk``) generated in
  this process and on 1 and 2 Ray workers;
* the clip world on tiny random models of the real classes (open_clip,
  diffusers; built in a temporary folder, nothing downloaded), likewise.

Projected, on paper: wall time of PASTA's 30,000 clip-world trajectories
(150,000 turns) on 1, 8 and 64 GPUs, from a GPU's per-turn cost (measured
with ``pasta bench-clip-turn``; default the H100 figures shipped in
``benchmarks/reference/clip_turn_h100.json``, or ``--turn-s`` such as the
reference 0.3 s), a worker's start-up and model load, and what the driver
must receive (the arrays' bytes per episode at the clip world's 1024-d).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine, table, write_json

#: The shipped per-turn costs measured on an H100 (see the module docstring).
REFERENCE = Path(__file__).with_name("reference") / "clip_turn_h100.json"
#: PASTA's dataset: 30,000 trajectories of 5 turns.
TRAJECTORIES, HORIZON = 30_000, 5
#: ViT-H-14's embedding size (the clip world's dimension with PASTA's encoder).
CLIP_DIM = 1024


def _generate(out: Path, spec, backend) -> tuple[float, dict[str, Any]]:
    from agents import make_agent
    from pasta_env.datasets import generate

    t0 = time.perf_counter()
    manifest = generate(out, spec, progress=False, make_policy=make_agent, backend=backend)
    return time.perf_counter() - t0, manifest


def _workers_ready(spec, workers: int) -> float:
    """Seconds to start ``workers`` actors and have each build its world and policy."""
    from pasta_env.datasets.generate import ChunkWorker
    from pasta_env.distributed import RayBackend, WorkerPool

    t0 = time.perf_counter()
    from agents import make_agent

    with WorkerPool(RayBackend(num_workers=workers), ChunkWorker, (spec, make_agent, 1), workers) as pool:
        pool.call_all("facts")
        return time.perf_counter() - t0


def scaling(name: str, spec, workers: tuple[int, ...], folder: Path) -> list[dict[str, Any]]:
    """One world: this process, then each worker count on the running Ray; rows of the table."""
    from pasta_env.distributed import RayBackend

    wall, reference = _generate(folder / f"{name}-local", spec, None)
    sums = {k: v["sha256"] for k, v in reference["arrays"].items()}
    rows = [{"world": name, "backend": "one process", "episodes": spec.episodes, "wall_s": round(wall, 2),
             "episodes_per_s": round(spec.episodes / wall, 1), "speedup": 1.0, "identical": True}]
    for w in workers:
        ready = _workers_ready(spec, w)
        wall_w, manifest = _generate(folder / f"{name}-ray{w}", spec, RayBackend(num_workers=w))
        same = {k: v["sha256"] for k, v in manifest["arrays"].items()} == sums
        rows.append({"world": name, "backend": f"Ray, {w} worker{'s' if w > 1 else ''}", "episodes": spec.episodes,
                     "wall_s": round(wall_w, 2), "episodes_per_s": round(spec.episodes / wall_w, 1),
                     "speedup": round(wall / wall_w, 2), "workers_ready_s": round(ready, 2), "identical": same})
    return rows


def per_turn_costs(paths: list[str]) -> list[dict[str, Any]]:
    """Per-user turn costs from ``pasta bench-clip-turn`` JSON files (a batch of 16k images is k users' turns)."""
    out = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        for run in data.get("runs", [data]):
            s = run["settings"]
            users = max(1, s["images"] // 16)
            decoder = "tiny autoencoder" if "tiny autoencoder" in s["architectures"] else "SDXL VAE"
            for steps, ms in run["turn_ms"].items():
                out.append({"gpu": s["gpu"] or s["device"], "steps": int(steps), "decoder": decoder,
                            "users_per_batch": users, "turn_s": round(ms / 1000.0 / users, 4),
                            "load_s": run.get("load_s"), "build_s": run.get("build_s")})
    return out


def bytes_per_episode(dim: int = CLIP_DIM, precision: str = "float16") -> int:
    """The dataset arrays' bytes for one episode (what a worker sends the driver, besides the texts)."""
    import numpy as np

    from pasta_env.datasets.layout import Layout

    shapes = Layout(HORIZON, 25, 4, dim, precision).shapes(1)
    return int(sum(int(np.prod(shape)) * np.dtype(dt).itemsize for shape, dt in shapes.values()))


def projection(turn_s: float, startup_s: float, load_s: float, gpus: tuple[int, ...] = (1, 8, 64),
               chunks: tuple[int, ...] = (1024, 256), driver_mb_s: float = 500.0) -> list[dict[str, Any]]:
    """Projected wall time of 30,000 clip-world trajectories.

    A shard of ``chunk`` users takes ``chunk * 5 * turn_s`` on one GPU;
    ``G`` GPUs take ``ceil(shards / G)`` shard-times (the last round may be
    part-empty), plus the workers' start-up and model load, plus the tail of
    the driver's writing (one shard's worth). The driver must also take in
    every shard's arrays; at ``driver_mb_s`` that is a floor on the whole run.
    """
    total_mb = TRAJECTORIES * bytes_per_episode() / 1e6
    rows = []
    for chunk in chunks:
        shards = math.ceil(TRAJECTORIES / chunk)
        shard_s = chunk * HORIZON * turn_s
        for g in gpus:
            rounds = math.ceil(shards / g)
            gpu_s = rounds * shard_s
            driver_floor = total_mb / driver_mb_s
            wall = startup_s + load_s + max(gpu_s, driver_floor) + chunk * bytes_per_episode() / 1e6 / driver_mb_s
            ideal = TRAJECTORIES * HORIZON * turn_s / g
            rows.append({"gpus": g, "chunk": chunk, "shards": shards, "shards_per_gpu": rounds,
                         "gpu_hours": round(TRAJECTORIES * HORIZON * turn_s / 3600, 2),
                         "wall_h": round(wall / 3600, 3), "wall_min": round(wall / 60, 1),
                         "efficiency": round(ideal / wall, 2), "busy_gpus": min(g, shards),
                         "bound": _bound(g, shards, gpu_s, driver_floor, startup_s + load_s)})
    return rows


def _bound(gpus: int, shards: int, gpu_s: float, driver_s: float, fixed_s: float) -> str:
    if driver_s > gpu_s:
        return "the driver's intake"
    if shards < gpus:
        return f"shard count ({shards} shards < {gpus} GPUs)"
    if shards % gpus and shards / gpus < 4:
        return f"the last round ({shards % gpus} of {gpus} GPUs busy)"
    if fixed_s > 0.1 * gpu_s:
        return "start-up and model load"
    return "the GPUs"


def run(episodes: int = 20000, chunk: int = 1024, clip_episodes: int = 48, clip_chunk: int = 8,
        workers: tuple[int, ...] = (1, 2), clip_turn: list[str] | None = None, turn_s: float | None = None,
        json_path: str | None = "results/ray_scaling.json") -> dict[str, Any]:
    """Measure, project, print and write the figures."""
    from pasta_env.datasets import DatasetSpec
    from simulators.backends import require

    ray = require("ray", "pasta bench-ray")
    if ray.is_initialized():
        raise RuntimeError("bench-ray times Ray's start-up: run it in a process where Ray is not started")
    result: dict[str, Any] = {"machine": machine(), "settings": {
        "episodes": episodes, "chunk": chunk, "clip_episodes": clip_episodes, "clip_chunk": clip_chunk,
        "workers": list(workers), "ray": ray.__version__}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level="ERROR")
        init_s = time.perf_counter() - t0
        try:
            synthetic = DatasetSpec(episodes=episodes, policy="lmm", seed=0, chunk=chunk)
            rows = scaling("synthetic", synthetic, workers, folder)
            if clip_episodes:
                from benchmarks import tiny_models

                options = tiny_models.tiny_clip_world_options(folder / "tiny-models")
                clip = DatasetSpec(episodes=clip_episodes, policy="lmm", seed=0, chunk=clip_chunk, world="clip",
                                   world_options=options)
                rows += scaling("clip (tiny models, CPU)", clip, workers, folder)
        finally:
            ray.shutdown()
    result["ray_init_s"] = round(init_s, 2)
    result["rows"] = rows
    costs = per_turn_costs(clip_turn or [str(REFERENCE)])
    basis: dict[str, Any]
    if turn_s is not None:
        basis = {"gpu": "given", "steps": None, "decoder": None, "users_per_batch": None, "turn_s": turn_s,
                 "load_s": None, "build_s": None}
    else:  # PASTA's setting: one step, SDXL's decoder, users batched on the GPU
        pasta_like = [c for c in costs if c["steps"] == 1 and c["decoder"] == "SDXL VAE"]
        basis = min(pasta_like, key=lambda c: c["turn_s"]) if pasta_like else {"gpu": "reference", "turn_s": 0.3}
    ready = max((r.get("workers_ready_s", 0.0) for r in rows if r["world"].startswith("clip")), default=0.0)
    load = max(float(basis.get("load_s") or 0.0), 30.0)  # a cold read of ~7 GB of weights: at least 30 s, say
    result["per_turn_costs"] = costs
    result["projection_basis"] = {**basis, "startup_s": round(init_s + ready, 2), "model_load_s": load,
                                  "bytes_per_episode": bytes_per_episode(), "driver_mb_s": 500.0}
    result["projection"] = projection(float(basis["turn_s"]), init_s + ready, load)
    print(markdown(result))
    if json_path:
        write_json(json_path, result)
        print(f"\nwrote {json_path}")
    return result


def markdown(result: dict[str, Any]) -> str:
    """The measured table, the per-turn costs and the projection."""
    cols = ["world", "backend", "episodes", "wall_s", "episodes_per_s", "speedup", "workers_ready_s", "identical"]
    basis = result["projection_basis"]
    lines = [f"Ray {result['settings']['ray']}, {result['machine']['cpu_count']} CPUs; local Ray started in "
             f"{result['ray_init_s']:.1f} s", "", table(result["rows"], cols), "",
             "per-user turn cost on a GPU (pasta bench-clip-turn):", "",
             table(result["per_turn_costs"], ["gpu", "steps", "decoder", "users_per_batch", "turn_s"]), "",
             f"projected: {TRAJECTORIES} clip-world trajectories at {basis['turn_s']} s per user-turn "
             f"({basis.get('gpu')}), start-up {basis['startup_s']} s, model load {basis['model_load_s']} s, "
             f"{basis['bytes_per_episode'] / 1e3:.0f} kB per episode to the driver at "
             f"{basis['driver_mb_s']:.0f} MB/s", "",
             table(result["projection"], ["gpus", "chunk", "shards", "shards_per_gpu", "gpu_hours", "wall_h",
                                          "efficiency", "bound"])]
    return "\n".join(lines)
