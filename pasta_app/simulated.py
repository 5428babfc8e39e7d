"""Simulated raters for the app: a server in a child process, HTTP clients, and a user model choosing.

A simulated rater sees what a person sees (the slate's prompt cards) and
chooses with the world's user model: a rater of type ``k`` scores each
card's text embedding against their request and picks the best column; from
turn 2 on they answer Better / Same / Worse by comparing the best column's
score with the score of last turn's choice (``margin`` apart, else Same).
Used by the tests and by ``benchmarks/simulated_raters.py``. Needs httpx.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from html import unescape
from pathlib import Path

import numpy as np


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``pasta serve --data DATA ARGS`` in a child process on a free loopback port; its invite links.

    Args:
        data: The app's data folder.
        *args: More arguments of ``pasta serve``.
        raters: Invites to make first (as ``pasta serve invite`` does); their links and the admin's
            are in :attr:`links`.
        command: How to run ``pasta serve`` (e.g. ``[python, "-m", "pasta_cli.main", "serve"]``); the
            caller, above this layer, says.
        timeout: Seconds to wait for the server to answer.

    Raises:
        RuntimeError: The server exited or did not answer within ``timeout`` seconds.
    """

    def __init__(self, data: str | Path, *args: str, command: Sequence[str], raters: int = 0,
                 timeout: float = 120.0):
        import httpx

        from pasta_app.records import DataFolder

        self.data, self.port = Path(data), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.links: dict[str, str] = {}
        if raters:
            self.links = {r: f"{self.base}/join/{t}" for r, t in DataFolder.open(data).add_raters(raters).items()}
        t0 = time.monotonic()
        self.proc = subprocess.Popen([*command, "--data", str(data), "--port", str(self.port), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # the admin's link first, then the serving line
            m = re.match(r"(\S+): (http://\S+/join/\S+)$", line.strip())
            if m:
                self.links[m.group(1)] = m.group(2)
            if line.startswith("serving") or time.monotonic() > deadline:
                break
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).text == "ok":
                    #: Seconds from starting the process to its first answer.
                    self.startup_s = time.monotonic() - t0
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read() if self.proc.stderr and self.proc.poll() is not None else ""
                self.kill()
                raise RuntimeError(f"pasta serve did not come up: {err.strip()[-2000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the server (no cleanup: what is on disk is what a crash leaves)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


class Rater:
    """An HTTP client holding a rater's cookie (joined through their invite link).

    Like a browser, it chooses on the page it last read: the choice carries
    that page's turn token (a choice on no page read first reads the page).
    """

    def __init__(self, server: Server, link: str):
        import httpx

        self.http = httpx.Client(base_url=server.base, follow_redirects=False, timeout=60)
        self.tokens: dict[str, str] = {}
        r = self.http.get("/join/" + link.rsplit("/join/", 1)[1])  # the path: the link may name an older port
        if r.status_code != 303:
            raise RuntimeError(f"joining failed: {r.status_code} {r.text[:200]}")

    def start(self, prompt: str) -> str:
        """Start a session on ``prompt``; its id."""
        r = self.http.post("/sessions", data={"prompt": prompt})
        if r.status_code != 303:
            raise RuntimeError(f"starting a session failed: {r.status_code} {r.text[:200]}")
        return r.headers["location"].split("?")[0].rsplit("/", 1)[1]

    def page(self, sid: str) -> str:
        """The session's page."""
        r = self.http.get(f"/s/{sid}")
        if r.status_code != 200:
            raise RuntimeError(f"the session page failed: {r.status_code} {r.text[:200]}")
        token = turn_token(r.text)
        if token:
            self.tokens[sid] = token
        return r.text

    def choose(self, sid: str, column: int, answer: str | None) -> int:
        """Post a column (and answer) on the page last read (read now if none was); the status code."""
        if sid not in self.tokens:
            token = turn_token(self.http.get(f"/s/{sid}").text)
            if token:
                self.tokens[sid] = token
        data = {"column": str(column), "turn": self.tokens.pop(sid, "")} | ({"answer": answer} if answer else {})
        return self.http.post(f"/s/{sid}/choose", data=data).status_code


def turn_token(page: str) -> str | None:
    """The turn token of the slate on a session page (``None`` on other pages)."""
    m = re.search(r'name="turn" value="([^"]*)"', page)
    return unescape(m.group(1)) if m else None


def cards(page: str) -> list[str]:
    """The prompt texts of the slate on a session page."""
    return [unescape(t) for t in re.findall(r'<div class="card">(.*?)</div>', page, re.S)]


class Chooser:
    """A simulated rater's taste: the world's user model of type ``k``, on the cards' text embeddings."""

    def __init__(self, world, k: int, request: str, margin: float = 0.05):
        self.world, self.k, self.margin = world, k, margin
        self.request = world.encoder.encode([request])[0]
        self.last: float | None = None

    def pick(self, texts: list[str]) -> tuple[int, str | None]:
        """The column to choose and, after the first turn, the Better / Same / Worse answer."""
        emb = self.world.encoder.encode(texts)  # (L, d): each card stands for its column's images
        L, d = emb.shape
        scores = self.world.user_model.type_scores(np.broadcast_to(self.request, (1, L, d)),
                                                   emb[None, :, None, :], np.array([self.k]))[0, :, 0]
        column = int(np.argmax(scores))
        answer = None
        if self.last is not None:
            gap = float(scores[column]) - self.last
            answer = "Better" if gap > self.margin else "Worse" if gap < -self.margin else "Same"
        self.last = float(scores[column])
        return column, answer


def play(rater: Rater, world, k: int, prompt: str, log: list, horizon: int = 5) -> str:
    """One whole session by a simulated rater of type ``k``; appends ``(session, turn, column, answer)`` to ``log``."""
    sid = rater.start(prompt)
    chooser = Chooser(world, k, prompt)
    for t in range(horizon):
        column, answer = chooser.pick(cards(rater.page(sid)))
        status = rater.choose(sid, column, answer)
        if status != 303:
            raise RuntimeError(f"choosing failed with status {status}")
        log.append((sid, t, column, answer))
    return sid


def crowd(server: Server, world, names: list[str], seconds: float, requests: list[str],
          grace: float = 30.0) -> dict:
    """Raters ``names`` play sessions at once, one thread each, for ``seconds`` (a session under way may finish).

    Rater ``i`` asks for ``requests[i % len(requests)]`` and is of a type
    drawn from ``default_rng(i)``; a session still running ``grace`` seconds
    after the end is left unfinished.

    Returns:
        ``logs`` (per rater, ``(session, turn, column, answer)`` of every
        turn the server took), ``errors`` (texts), ``timings`` (seconds of
        each ``start``, ``page`` and ``choose`` request) and ``wall_s``.
    """
    import threading

    logs: dict[str, list] = {name: [] for name in names}
    timings: dict[str, list[float]] = {"start": [], "page": [], "choose": []}
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def timed(kind: str, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        with lock:
            timings[kind].append(time.perf_counter() - t)
        return out

    def run(i: int, name: str) -> None:
        try:
            rater = Rater(server, server.links[name])
            rng = np.random.default_rng(i)
            prompt = requests[i % len(requests)]
            while time.monotonic() < stop:
                sid = timed("start", rater.start, prompt)
                chooser = Chooser(world, int(rng.integers(world.user_model.num_types)), prompt)
                for t in range(5):
                    if time.monotonic() > stop + grace:
                        return
                    column, answer = chooser.pick(cards(timed("page", rater.page, sid)))
                    status = timed("choose", rater.choose, sid, column, answer)
                    if status != 303:
                        raise RuntimeError(f"choosing failed with status {status}")
                    logs[name].append((sid, t, column, answer))
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            with lock:
                errors.append(f"{name}: {exc!r}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i, name)) for i, name in enumerate(names)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return {"logs": logs, "errors": errors, "timings": timings, "wall_s": time.perf_counter() - t0}
