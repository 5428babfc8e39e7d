"""The rating app on loopback: sessions over HTTP, concurrent raters, a killed server, access rules, the report.

A real server (``pasta serve`` in a child process, uvicorn) is driven by
HTTP clients. Simulated raters see what a person sees (the slate's prompt
cards) and choose with the world's user model: a rater of type ``k`` scores
each card's text embedding against their request and picks the best column;
from turn 2 on they answer Better / Same / Worse by comparing the best
column's score with the last turn's choice.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from html import unescape
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``pasta serve`` in a child process; its invite links."""

    def __init__(self, data: Path, *args: str):
        self.data, self.port = data, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "pasta_cli.main", "serve", "--data", str(data),
                                      "--port", str(self.port), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.links: dict[str, str] = {}
        deadline = time.monotonic() + 120
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # invite links first, then the serving line
            m = re.match(r"(\S+): (http://\S+/join/\S+)$", line.strip())
            if m:
                self.links[m.group(1)] = m.group(2)
            if line.startswith("serving"):
                break
            assert time.monotonic() < deadline
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).text == "ok":
                    break
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


class Rater:
    """An HTTP client holding a rater's cookie."""

    def __init__(self, server: Server, link: str):
        self.http = httpx.Client(base_url=server.base, follow_redirects=False, timeout=60)
        r = self.http.get("/join/" + link.rsplit("/join/", 1)[1])  # the path: the link may name an older port
        assert r.status_code == 303, r.text

    def start(self, prompt: str) -> str:
        r = self.http.post("/sessions", data={"prompt": prompt})
        assert r.status_code == 303, r.text
        return r.headers["location"].rsplit("/", 1)[1]

    def page(self, sid: str) -> str:
        r = self.http.get(f"/s/{sid}")
        assert r.status_code == 200, r.text
        return r.text

    def choose(self, sid: str, column: int, answer: str | None) -> int:
        data = {"column": str(column)} | ({"answer": answer} if answer else {})
        return self.http.post(f"/s/{sid}/choose", data=data).status_code


def cards(page: str) -> list[str]:
    return [unescape(t) for t in re.findall(r'<div class="card">(.*?)</div>', page, re.S)]


class Chooser:
    """A simulated rater's taste: the world's user model of one type, on the cards' text embeddings."""

    def __init__(self, world, k: int, request: str):
        self.world, self.k = world, k
        self.request = world.encoder.encode([request])[0]
        self.last: float | None = None

    def pick(self, texts: list[str]) -> tuple[int, str | None]:
        emb = self.world.encoder.encode(texts)  # (L, d): each card as its column's image
        L = len(texts)
        scores = self.world.user_model.type_scores(np.broadcast_to(self.request, (1, L, len(self.request))),
                                                   emb[None, :, None, :], np.array([self.k]))[0, :, 0]
        column = int(np.argmax(scores))
        answer = None
        if self.last is not None:
            gap = float(scores[column]) - self.last
            answer = "Better" if gap > 0.05 else "Worse" if gap < -0.05 else "Same"
        self.last = float(scores[column])
        return column, answer


@pytest.fixture(scope="module")
def world():
    from pasta_env.worlds import make_world

    return make_world("synthetic")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("serve") / "data", "--raters", "60", "--agents", "bayes,random")
    yield srv
    srv.kill()


REQUESTS = ["a red fox in a snowy forest", "a lighthouse at dusk", "a bowl of ramen", "a city street in the rain"]


def play(rater: Rater, chooser_world, k: int, prompt: str, log: list, horizon: int = 5) -> str:
    sid = rater.start(prompt)
    chooser = Chooser(chooser_world, k, prompt)
    for t in range(horizon):
        column, answer = chooser.pick(cards(rater.page(sid)))
        assert rater.choose(sid, column, answer) == 303
        log.append((sid, t, column, answer))
    assert 'id="finished"' in rater.page(sid)
    return sid


def records(data: Path) -> list[dict]:
    return [json.loads(line) for line in (data / "choices.jsonl").read_text().splitlines()]


def test_a_session_played_over_http_is_recorded_turn_by_turn_and_trains_the_user_model(server, world, tmp_path):
    rater = Rater(server, server.links["rater-0001"])
    log: list = []
    sid = play(rater, world, 2, "a red fox <b>in</b> a snowy forest", log)
    mine = [r for r in records(server.data) if r["trajectory_id"] == sid]
    assert [(r["trajectory_id"], r["turn"], r["chosen"], r["answer"]) for r in mine] == log
    assert all(r["user_id"] == "rater-0001" and len(r["prompts"]) == 4 and len(r["images"][0]) == 4 for r in mine)
    assert mine[0]["answer"] is None and all(r["answer"] in ("Better", "Same", "Worse") for r in mine[1:])
    from simulators.preferences.data import read_dataset

    data = read_dataset(server.data)  # the preference format: the user model trains on it as it is
    assert len(data.choices["chosen"]) >= 5 and data.dim == 64
    out = tmp_path / "model.npz"
    proc = subprocess.run([sys.executable, "-m", "pasta_cli.main", "train-user-model", "--data", str(server.data),
                           "--k", "2", "--epochs", "2", "--inits", "1", "--quiet", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and out.is_file(), proc.stderr


def test_fifty_concurrent_raters_lose_and_mix_no_record(server, world):
    logs: dict[str, list] = {}
    errors: list[BaseException] = []
    stop = time.monotonic() + 20

    def run(i: int) -> None:
        name = f"rater-{i + 10:04d}"
        log = logs.setdefault(name, [])
        try:
            rater = Rater(server, server.links[name])
            rng = np.random.default_rng(i)
            while time.monotonic() < stop:
                sid = rater.start(REQUESTS[i % len(REQUESTS)])
                chooser = Chooser(world, int(rng.integers(8)), REQUESTS[i % len(REQUESTS)])
                for t in range(5):
                    if time.monotonic() > stop + 30:
                        return
                    column, answer = chooser.pick(cards(rater.page(sid)))
                    assert rater.choose(sid, column, answer) == 303
                    log.append((sid, t, column, answer))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(50)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=180)
    assert not errors, errors[:3]
    recorded = records(server.data)
    for name, log in logs.items():
        mine = [(r["trajectory_id"], r["turn"], r["chosen"], r["answer"]) for r in recorded if r["user_id"] == name]
        assert mine == log, name  # every posted turn on disk, in order, under its own rater
    assert sum(len(v) for v in logs.values()) >= 50  # every rater got at least one turn in
    by_session: dict[str, list[int]] = {}
    for r in recorded:
        by_session.setdefault(r["trajectory_id"], []).append(r["turn"])
    assert all(turns == list(range(len(turns))) for turns in by_session.values())


def test_a_server_killed_mid_session_restarts_with_every_completed_turn_and_the_session_continues(tmp_path, world):
    data = tmp_path / "data"
    first = Server(data, "--raters", "1", "--agent", "bayes")
    link = first.links["rater-0001"]
    rater = Rater(first, link)
    sid = rater.start("a lighthouse at dusk")
    chooser = Chooser(world, 3, "a lighthouse at dusk")
    log = []
    for t in range(2):
        column, answer = chooser.pick(cards(rater.page(sid)))
        assert rater.choose(sid, column, answer) == 303
        log.append((sid, t, column, answer))
    shown = cards(rater.page(sid))
    first.kill()
    assert [(r["trajectory_id"], r["turn"], r["chosen"], r["answer"]) for r in records(data)] == log
    second = Server(data)  # no new tokens: the old links still work
    assert not second.links
    rater = Rater(second, link)
    assert cards(rater.page(sid)) == shown  # rebuilt by replay: the same slate as before the kill
    for t in range(2, 5):
        column, answer = chooser.pick(cards(rater.page(sid)))
        assert rater.choose(sid, column, answer) == 303
        log.append((sid, t, column, answer))
    assert [(r["trajectory_id"], r["turn"], r["chosen"], r["answer"]) for r in records(data)] == log
    second.kill()


def test_requests_without_a_token_or_for_another_raters_session_are_refused_and_markup_is_escaped(server):
    anon = httpx.Client(base_url=server.base, follow_redirects=False)
    assert anon.get("/").status_code == 401
    assert anon.post("/sessions", data={"prompt": "x"}).status_code == 401
    assert anon.get("/join/not-a-token").status_code == 403
    assert anon.get("/admin/export").status_code == 401
    alice, bob = Rater(server, server.links["rater-0002"]), Rater(server, server.links["rater-0003"])
    sid = alice.start('<script>alert("x")</script><img src=x onerror=alert(1)>')
    page = alice.page(sid)
    assert "<script>alert" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "script-src" not in page.split("</head>")[0]
    assert alice.http.get(f"/s/{sid}").headers["content-security-policy"].startswith("default-src 'none'")
    assert bob.http.get(f"/s/{sid}").status_code == 404  # another rater's session is not found
    assert bob.choose(sid, 0, None) == 404
    assert alice.choose(sid, 7, None) == 400  # not a column
    assert alice.http.post("/sessions", data={"prompt": "x" * 5000}).status_code == 413
    assert alice.http.post("/sessions", data={"prompt": "x" * 400}).status_code == 400  # over 300 characters
    assert alice.http.post("/sessions", data={"prompt": "a\x00b"}).status_code == 400
    chunked = alice.http.post("/sessions", content=iter([b"prompt=abc"]),
                              headers={"content-type": "application/x-www-form-urlencoded"})
    assert chunked.status_code == 411
    assert alice.http.get("/admin/export").status_code == 403
    admin = httpx.Client(base_url=server.base, follow_redirects=False)
    assert admin.get("/join/" + server.links["admin"].rsplit("/join/", 1)[1]).status_code == 303
    export = admin.get("/admin/export")
    assert export.status_code == 200 and export.content[:2] == b"PK"
    flood = [bob.http.get("/").status_code for _ in range(120)]
    assert 429 in flood and flood[0] == 200  # bursts are bounded per client


def test_the_report_of_simulated_raters_ranks_the_agents_as_the_evaluation_does(server, world, tmp_path):
    from agents.evaluation import evaluate
    from pasta_app.report import markdown, plot, report

    data = tmp_path / "data"
    srv = Server(data, "--raters", "8", "--agents", "bayes,random", "--rate", "1000")
    try:
        log: list = []
        rng = np.random.default_rng(0)
        for i in range(8):
            rater = Rater(srv, srv.links[f"rater-{i + 1:04d}"])
            k = int(rng.integers(8))
            for j in range(8):
                play(rater, world, k, REQUESTS[(i + j) % len(REQUESTS)], log)
    finally:
        srv.kill()
    rep = report(data)
    expected = evaluate(["bayes", "random"], episodes=400, seed=0, num_envs=200, progress=False).ranking()
    assert rep["ranking"] == expected == ["bayes", "random"]
    pair = rep["paired_better"][0]
    assert pair["a"] == "bayes" and pair["difference"] - pair["ci95"] > 0, pair
    text = markdown(rep)
    assert "| bayes |" in text and "paired difference" in text
    plot(rep, tmp_path / "report.png")
    assert (tmp_path / "report.png").stat().st_size > 1000


def test_the_clip_world_shows_each_column_as_images_and_records_their_embeddings(tmp_path):
    pytest.importorskip("open_clip")
    pytest.importorskip("diffusers")
    from benchmarks import tiny_models

    options = tiny_models.tiny_clip_world_options(tmp_path / "models")
    data = tmp_path / "data"
    srv = Server(data, "--raters", "1", "--agent", "lmm", "--world", "clip",
                 *[f"--world-option={k}={json.dumps(v)}" for k, v in options.items()])
    try:
        rater = Rater(srv, srv.links["rater-0001"])
        sid = rater.start("a bowl of ramen")
        page = rater.page(sid)
        assert len(re.findall(r'<img alt="image \d of column \d" src="data:image/png;base64,', page)) == 16
        for t in range(5):
            assert rater.choose(sid, t % 4, None if t == 0 else "Same") == 303
        second = rater.start("a lighthouse at dusk")  # a new request reuses the loaded models
        assert len(cards(rater.page(second))) == 4
    finally:
        srv.kill()
    from simulators.preferences.data import read_dataset

    prefs = read_dataset(data)
    assert prefs.dim == 32 and len(prefs.choices["chosen"]) == 5  # the tiny CLIP's space
