"""Throughput, start-up and memory of PastaT2I-v0: single env beside a peer, vector env scaling.

Usage::

    pasta bench [--sardine PATH] [--seconds 3] [--runs 3] [--profile 25] [--json results/throughput.json]

Measures, each figure the median of ``--runs`` interleaved runs of
``--seconds`` each (random slates, resets included):

* the single env through ``gym.make``, and beside it (run for run, in the
  same process) SARDINE's SlateTopK env set to PastaT2I's sizes (25 items,
  slates of 4, episodes of 5 steps) when ``--sardine`` names a local
  checkout of https://github.com/naver/sardine (MIT; nothing is fetched);
* the native vector env for N = 1, 64, 256, 1024, 4096 on one thread and on
  the default threads (autoreset steps included);
* start-up: ``import pasta_env``, ``gym.make`` and the first ``reset`` in a
  fresh process, with the compiled kernels cached and (once) with an empty
  kernel cache, and the whole ``pasta evaluate`` main job;
* observation bytes and the peak resident memory of a 1024-env run;
* with ``--profile N``: the N functions that took the most time in a
  single-env run and in a 1024-env run (cProfile, own time).

Targets on a 2-core CPU: the single env at least as fast as SARDINE's; the
vector env >= 100,000 env-steps/s at N = 1024 on the default threads.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np

import pasta_env  # noqa: F401
from benchmarks.common import machine, table, write_json
from pasta_env.vector_env import default_threads

#: SARDINE's env measured beside PastaT2I, with PastaT2I's sizes.
SARDINE_ENV = "sardine/SlateTopK-Bored-v0"
SARDINE_OPTIONS: dict = {"num_items": 25, "slate_size": 4, "episode_length": 5}
VECTOR_SIZES = (1, 64, 256, 1024, 4096)


class PeerError(ValueError):
    """The peer environment cannot be loaded from the given checkout."""


def _time_steps(env, actions: np.ndarray, seconds: float) -> float:
    """Steps per second of ``env`` stepped with ``actions`` in turn for about ``seconds``."""
    env.reset(seed=0)
    done, i, n = 0, 0, len(actions)
    start = time.perf_counter()
    while True:
        for _ in range(500):
            *_, term, trunc, _ = env.step(actions[i])
            i = (i + 1) % n
            if term or trunc:
                env.reset()
        done += 500
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def make_sardine(path: str | os.PathLike):
    """SARDINE's SlateTopK env from a local checkout, with PastaT2I's sizes.

    Raises:
        PeerError: ``path`` holds no SARDINE checkout (the message says how to get one).
    """
    root = Path(path).expanduser().resolve()
    if not (root / "sardine" / "simulator.py").is_file():
        raise PeerError(f"no SARDINE checkout at {str(root)!r} (expected sardine/simulator.py there); "
                        f"get one with: git clone https://github.com/naver/sardine {str(root)!r}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import importlib

    importlib.import_module("sardine")
    with warnings.catch_warnings():  # its first observation trips Gymnasium's passive checker
        warnings.simplefilter("ignore")
        env = gym.make(SARDINE_ENV, **SARDINE_OPTIONS)  # type: ignore[arg-type]
        env.reset(seed=0)
        env.step(np.zeros(4, np.int64))
    return env


def single_env(seconds: float = 3.0, runs: int = 3, sardine: str | None = None) -> dict:
    """Single-env steps/s through ``gym.make``; with ``sardine``, SARDINE's beside it, run for run.

    Returns:
        ``{"pasta": [...], "sardine": [...] or None, "pasta_median", "sardine_median", "ratio_median"}``,
        the ratio taken run by run (the runs alternate, so a drift of the machine's speed hits both).
    """
    actions = np.random.default_rng(0).integers(0, 25, (4096, 4))
    env = gym.make("PastaT2I-v0")
    peer = make_sardine(sardine) if sardine else None
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(_time_steps(env, actions, seconds))
        if peer is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs.append(_time_steps(peer, actions, seconds))
    out: dict = {"pasta": [round(x) for x in ours], "pasta_median": round(statistics.median(ours)),
                 "sardine": None, "sardine_median": None, "ratio_median": None}
    if theirs:
        out.update(sardine=[round(x) for x in theirs], sardine_median=round(statistics.median(theirs)),
                   ratio_median=round(statistics.median([a / b for a, b in zip(ours, theirs)]), 3))
    return out


def vector_env(num_envs: int, seconds: float = 3.0, runs: int = 3, num_threads: int | None = None) -> float:
    """Median env-steps/s of the native vector env with random slates (autoreset steps included)."""
    env = gym.make_vec("PastaT2I-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                       num_threads=num_threads)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 25, (8, num_envs, 4))
    for i in range(6):  # warm up (first steps touch fresh memory)
        env.step(actions[i % 8])
    rates = []
    for _ in range(runs):
        done, i = 0, 0
        start = time.perf_counter()
        while True:
            env.step(actions[i % 8])
            i += 1
            done += num_envs
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and i >= 6:
                break
        rates.append(done / elapsed)
    env.close()
    return statistics.median(rates)


def vector_scaling(sizes=VECTOR_SIZES, seconds: float = 3.0, runs: int = 3) -> list[dict]:
    """Env-steps/s for each N on one thread and on the default threads."""
    rows = []
    for n in sizes:
        for threads in (1, None):
            used = default_threads(n) if threads is None else threads
            if threads is None and used == 1:
                continue  # the default is one thread: already measured
            rows.append({"setting": "vector env", "num_envs": n, "threads": used,
                         "default_threads": threads is None or used == default_threads(n),
                         "steps_per_s": round(vector_env(n, seconds, runs, threads)),
                         "target": 100000 if n == 1024 and used == default_threads(n) else ""})
    return rows


_STARTUP = (
    "import time; t0 = time.perf_counter()\n"
    "import pasta_env, gymnasium as gym\n"
    "t1 = time.perf_counter(); env = gym.make('PastaT2I-v0'); t2 = time.perf_counter()\n"
    "env.reset(seed=0); env.step(env.action_space.sample()); t3 = time.perf_counter()\n"
    "print(t1 - t0, t2 - t1, t3 - t2)\n"
)


def startup(runs: int = 3, cold: bool = True) -> dict:
    """Seconds from a fresh interpreter to a started env: import, ``gym.make``, first reset and step.

    Args:
        runs: Fresh processes timed with the kernel cache in place (median reported).
        cold: Also time one process with an empty kernel cache (what the first run on a machine pays).
    """

    def once(env: dict | None = None) -> dict:
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _STARTUP], capture_output=True, text=True, check=True, env=env)
        wall = time.perf_counter() - start
        imp, make, first = (float(x) for x in out.stdout.split())
        return {"import_s": imp, "make_s": make, "first_reset_step_s": first, "process_wall_s": wall}

    once()  # fill the kernel cache if it is empty
    warm = [once() for _ in range(runs)]
    result = {"warm": {k: round(statistics.median(r[k] for r in warm), 3) for k in warm[0]}}
    if cold:
        with tempfile.TemporaryDirectory() as cache:
            result["cold"] = {k: round(v, 3) for k, v in once({**os.environ, "NUMBA_CACHE_DIR": cache}).items()}
    return result


def evaluate_job(episodes: int = 2000, cli: Sequence[str] = ("pasta",)) -> dict:
    """Wall seconds of the README's main job, ``pasta evaluate --episodes N --seed 0``, in a fresh process.

    ``cli`` runs the ``pasta`` command (the command line, above this layer, says how).
    """
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [*cli, "evaluate", "--episodes", str(episodes), "--seed", "0", "--json", os.path.join(tmp, "eval.json")]
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, text=True, check=True)
        wall = round(time.perf_counter() - start, 1)
    return {"command": f"pasta evaluate --episodes {episodes} --seed 0", "wall_s": wall}


def observation_bytes() -> dict:
    """Bytes of one observation, per key and in total."""
    env = gym.make("PastaT2I-v0")
    obs, _ = env.reset(seed=0)
    per_key = {k: int(np.asarray(v).nbytes) for k, v in obs.items()}
    return {"total": sum(per_key.values()), "per_key": per_key}


def peak_rss_mb(num_envs: int = 1024, steps: int = 60) -> float:
    """Peak resident memory (MiB) of a fresh process running ``num_envs`` envs.

    Read from the child's ``VmHWM`` (its own address space): ``ru_maxrss``
    would also count the parent's memory at the fork.
    """
    code = (
        "import numpy as np, gymnasium as gym, pasta_env\n"
        f"e = gym.make_vec('PastaT2I-v0', num_envs={num_envs}, vectorization_mode='vector_entry_point')\n"
        "e.reset(seed=0)\n"
        f"a = np.zeros(({num_envs}, 4), np.int64)\n"
        f"for _ in range({steps}): e.step(a)\n"
        "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    kb = int(out.stdout.strip().splitlines()[-1])
    return round(kb / 1024, 1)


def profile(top: int = 25, steps: int = 5000, vector_steps: int = 60) -> dict:
    """Where the time goes: the ``top`` functions by own time in a single-env and a 1024-env run (1 thread)."""

    def stats(fn) -> list[dict]:
        prof = cProfile.Profile()
        prof.runcall(fn)
        st = pstats.Stats(prof)
        total = sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]
        rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
        return [{"function": f"{Path(f).name}:{line}({name})", "calls": v[1], "own_s": round(v[2], 4),
                 "share": round(v[2] / total, 3)} for (f, line, name), v in rows]

    single = gym.make("PastaT2I-v0")
    single.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 25, (steps, 4))

    def run_single():
        for a in actions:
            *_, term, _, _ = single.step(a)
            if term:
                single.reset()

    vec = gym.make_vec("PastaT2I-v0", num_envs=1024, vectorization_mode="vector_entry_point", num_threads=1)
    vec.reset(seed=0)
    vactions = np.random.default_rng(0).integers(0, 25, (8, 1024, 4))

    def run_vector():
        for i in range(vector_steps):
            vec.step(vactions[i % 8])

    return {"single_env": stats(run_single), "vector_env_1024_1_thread": stats(run_vector)}


def run(seconds: float = 3.0, runs: int = 3, sardine: str | None = None, json_path: str | None = None,
        sizes=VECTOR_SIZES, with_startup: bool = True, evaluate_episodes: int = 2000, profile_top: int = 0,
        cli: Sequence[str] = ("pasta",)) -> dict:
    """Run the throughput benchmark; print tables and write JSON.

    Args:
        seconds: Length of one timed run.
        runs: Runs per figure (the median is reported).
        sardine: A local SARDINE checkout to measure beside the single env (``None``: PastaT2I alone).
        json_path: Where to write the figures (``None``: nowhere).
        sizes: Vector env sizes N.
        with_startup: Time start-up in fresh processes.
        evaluate_episodes: Episodes of the timed ``pasta evaluate`` job (0 skips it).
        profile_top: Functions to list per profile (0: no profile).

    Raises:
        PeerError: ``sardine`` is not a SARDINE checkout.
    """
    single = single_env(seconds, runs, sardine)
    rows = [{"setting": "single env (gym.make)", "num_envs": 1, "threads": 1, "default_threads": True,
             "steps_per_s": single["pasta_median"], "target": "SARDINE" if sardine else ""}]
    if sardine:
        rows.append({"setting": f"SARDINE {SARDINE_ENV} (25 items, slate 4, 5 steps)", "num_envs": 1,
                     "threads": 1, "default_threads": True, "steps_per_s": single["sardine_median"], "target": ""})
    rows += vector_scaling(sizes, seconds, runs)
    print(table(rows, ["setting", "num_envs", "threads", "steps_per_s", "target"]))
    if sardine:
        print(f"\nsingle env / SARDINE, run by run: median {single['ratio_median']}x "
              f"(PastaT2I {single['pasta']}, SARDINE {single['sardine']})")
    payload: dict = {"benchmark": "throughput", "rows": rows, "single_env_runs": single,
                     "seconds_per_run": seconds, "runs": runs, "machine": machine()}
    if with_startup:
        payload["startup"] = startup()
        w, c = payload["startup"]["warm"], payload["startup"]["cold"]
        print(f"\nstart-up (fresh process, kernels cached): import {w['import_s']} s, gym.make {w['make_s']} s, "
              f"first reset+step {w['first_reset_step_s']} s, whole process {w['process_wall_s']} s; "
              f"with an empty kernel cache (first run on a machine): whole process {c['process_wall_s']} s")
    if evaluate_episodes:
        payload["evaluate_job"] = evaluate_job(evaluate_episodes, cli)
        print(f"{payload['evaluate_job']['command']}: {payload['evaluate_job']['wall_s']} s")
    payload["observation_bytes"] = observation_bytes()
    payload["peak_rss_mb_1024_envs"] = peak_rss_mb()
    print(f"observation: {payload['observation_bytes']['total']} bytes per step; "
          f"peak RSS of a 1024-env run: {payload['peak_rss_mb_1024_envs']} MiB")
    if profile_top:
        payload["profile"] = profile(profile_top)
        for name, prof_rows in payload["profile"].items():
            print(f"\nprofile, {name} (own time):")
            print(table(prof_rows, ["function", "calls", "own_s", "share"]))
    payload["self_max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if json_path:
        write_json(json_path, payload)
    return payload
