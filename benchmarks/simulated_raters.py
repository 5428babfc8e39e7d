"""The rating app under simulated raters: load (latency, throughput) and the human-evaluation pipeline end to end.

Usage::

    pasta bench-serve [--agents bayes,lmm,random] [--raters 16] [--sessions 9] [--concurrent 50]
                      [--seconds 20] [--abandoned 300] [--json results/serve.json]

Three runs of ``pasta serve`` (a child process on loopback, the synthetic world):

* **Pipeline**: ``--raters`` simulated raters (:mod:`pasta_app.simulated`,
  one user type each) play ``--sessions`` sessions each, one after another,
  under a blind assignment of ``--agents`` (``--seed`` fixes it); the
  records go through ``human-eval-report``, whose ranking is set beside
  ``pasta evaluate``'s on the same agents (2,000 users).
* **Load**: ``--concurrent`` raters play at once for ``--seconds``;
  reported: turns recorded per second, the latency of the choose request
  (which steps the env, records the turn with an fsync and proposes the next
  slate) and of the page request, median / 95th percentile / max, and the
  records checked against what the clients posted.
* **Restart**: a data folder holding ``--abandoned`` unfinished sessions
  (two turns each) is served; reported: seconds from starting the process
  to its first answer, beside the same for an empty folder, the server's
  memory, and the first request of an abandoned session (rebuilt then).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import machine, write_json

REQUESTS = ["a red fox in a snowy forest", "a lighthouse at dusk", "a bowl of ramen", "a city street in the rain",
            "a portrait of an old sailor", "a cozy reading nook"]


def pipeline(folder: Path, agents: list[str], raters: int, sessions: int, seed: int,
             serve: Sequence[str]) -> dict[str, Any]:
    """Simulated raters' sessions through the app and the report, beside ``evaluate``'s ranking."""
    from agents.evaluation import evaluate
    from pasta_app.report import report
    from pasta_app.simulated import Rater, Server, play
    from pasta_env.worlds import make_world

    world = make_world("synthetic")
    srv = Server(folder, "--agents", ",".join(agents), "--rate", "1000",
                 "--seed", str(seed), command=serve, raters=raters)
    t0 = time.perf_counter()
    log: list = []
    try:
        rng = np.random.default_rng(seed)
        for i in range(raters):
            rater = Rater(srv, srv.links[f"rater-{i + 1:04d}"])
            k = int(rng.integers(world.user_model.num_types))
            for j in range(sessions):
                play(rater, world, k, REQUESTS[(i + j) % len(REQUESTS)], log)
    finally:
        srv.kill()
    wall = time.perf_counter() - t0
    rep = report(folder)
    ranking = evaluate(agents, episodes=2000, seed=0, progress=False).ranking()
    return {"report": rep, "evaluate_ranking": ranking, "same_ranking": rep["ranking"] == ranking,
            "sessions": raters * sessions, "wall_s": round(wall, 2)}


def load(folder: Path, concurrent: int, seconds: float, agents: list[str], serve: Sequence[str]) -> dict[str, Any]:
    """``concurrent`` raters at once for ``seconds``; throughput, latencies, and the records checked."""
    import json

    from pasta_app.simulated import Server, crowd
    from pasta_env.worlds import make_world

    world = make_world("synthetic")
    # --rate 1000: the server is measured here, not its per-rater limit
    srv = Server(folder, "--agents", ",".join(agents), "--rate", "1000",
                 command=serve, raters=concurrent)
    try:
        run = crowd(srv, world, [f"rater-{i + 1:04d}" for i in range(concurrent)], seconds, REQUESTS)
    finally:
        srv.kill()
    logs, timings, errors, wall = run["logs"], run["timings"], run["errors"], run["wall_s"]
    recorded = [json.loads(line) for line in (folder / "choices.jsonl").read_text().splitlines()]
    intact = all([(r["trajectory_id"], r["turn"], r["chosen"], r["answer"]) for r in recorded
                  if r["user_id"] == name] == log for name, log in logs.items())
    turns = sum(len(v) for v in logs.values())

    def stats(xs: list[float]) -> dict[str, float]:
        a = np.array(xs) * 1000 if xs else np.zeros(1)
        return {"median_ms": round(float(np.median(a)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1),
                "max_ms": round(float(a.max()), 1), "count": len(xs)}

    return {"concurrent": concurrent, "seconds": round(wall, 2), "turns": turns,
            "turns_per_s": round(turns / wall, 1), "errors": errors[:5], "error_count": len(errors),
            "records_intact": intact, "latency": {k: stats(v) for k, v in timings.items()}}


def _rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (Linux), or ``None``."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def restart(folder: Path, abandoned: int, agents: list[str], serve: Sequence[str]) -> dict[str, Any]:
    """Serve a folder of ``abandoned`` unfinished sessions: startup time and memory, and a first rebuild."""
    from pasta_app.records import DataFolder
    from pasta_app.sessions import Sessions
    from pasta_app.simulated import Rater, Server

    empty = Server(folder / "empty", "--agents", ",".join(agents), command=serve)
    empty_s = empty.startup_s
    empty.kill()
    data = DataFolder.open(folder / "study")
    links = data.add_raters(abandoned)
    sessions = Sessions(data, agents, seed=0)
    t0 = time.perf_counter()
    for name in links:  # one session each, left after two turns
        session, _ = sessions.start(name, REQUESTS[len(sessions.index) % len(REQUESTS)])
        for t in range(2):
            sessions.choose(session, t, None if t == 0 else "Same", session.token)
    made_s = time.perf_counter() - t0
    srv = Server(folder / "study", "--agents", ",".join(agents), command=serve)
    try:
        rss = _rss_mb(srv.proc.pid)
        rater = Rater(srv, f"{srv.base}/join/{links['rater-0001']}")
        sid = next(sid for sid, e in sessions.index.items() if e.rater == "rater-0001")
        t0 = time.perf_counter()
        page = rater.page(sid)
        first_page_s = time.perf_counter() - t0
        assert "Turn 3 of 5" in page
    finally:
        srv.kill()
    return {"abandoned": abandoned, "made_s": round(made_s, 1), "startup_s": round(srv.startup_s, 2),
            "empty_startup_s": round(empty_s, 2), "rss_mb": rss, "first_page_s": round(first_page_s, 2)}


def run(agents: list[str], raters: int = 16, sessions: int = 9, concurrent: int = 50, seconds: float = 20.0,
        seed: int = 0, json_path: str | None = "results/serve.json", abandoned: int = 300,
        cli: Sequence[str] = ("pasta",)) -> dict[str, Any]:
    """The three runs; print and write the figures. ``cli`` runs the ``pasta`` command (``serve`` is added)."""
    from pasta_app.report import markdown

    with tempfile.TemporaryDirectory() as tmp:
        result = {"machine": machine(),
                  "pipeline": pipeline(Path(tmp) / "pipeline", agents, raters, sessions, seed, [*cli, "serve"]),
                  "load": load(Path(tmp) / "load", concurrent, seconds, agents, [*cli, "serve"]),
                  "restart": restart(Path(tmp) / "restart", abandoned, agents, [*cli, "serve"])}
    p, lo, re_ = result["pipeline"], result["load"], result["restart"]
    print(f"pipeline: {p['sessions']} sessions by {raters} simulated raters in {p['wall_s']} s")
    print(markdown(p["report"]))
    print(f"\nranking by Better: {', '.join(p['report']['ranking'])}; by `pasta evaluate` (2,000 users): "
          f"{', '.join(p['evaluate_ranking'])}; same: {p['same_ranking']}")
    print(f"\nload: {lo['concurrent']} raters at once for {lo['seconds']} s: {lo['turns']} turns, "
          f"{lo['turns_per_s']} turns/s, {lo['error_count']} errors, records intact: {lo['records_intact']}")
    for kind, s in lo["latency"].items():
        print(f"  {kind:>6}: median {s['median_ms']} ms, p95 {s['p95_ms']} ms, max {s['max_ms']} ms "
              f"({s['count']} requests)")
    print(f"\nrestart: {re_['abandoned']} abandoned sessions in the folder: up in {re_['startup_s']} s "
          f"(an empty folder: {re_['empty_startup_s']} s), {re_['rss_mb']} MB resident; the first page of an "
          f"abandoned session (rebuilt then) took {re_['first_page_s']} s")
    if json_path:
        write_json(json_path, result)
        print(f"\nwrote {json_path}")
    return result
