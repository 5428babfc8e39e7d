"""Rater sessions: an env and an agent per session, each turn recorded, sessions rebuilt when next used.

A session is one episode of ``PastaT2I-v0`` whose initial prompt is the
rater's request and whose choices are the rater's: the agent proposes a
slate, the env shows it (:meth:`pasta_env.PastaT2IEnv.show`: images
rendered, nothing chosen), the rater picks a column (and, from turn 2 on,
answers Better / Same / Worse), and the env goes on from the chosen prompt
(:meth:`~pasta_env.PastaT2IEnv.choose`). The env and the agent are
deterministic given the session's seed and the rater's choices, so an
unfinished session is rebuilt by replaying its recorded turns (and checking
that it shows the slates it showed before) the first time it is used after
a restart: a restart reads the records and nothing more, whatever the
history.

Each shown slate carries a turn token (a keyed digest of the session and
the turn, the same across restarts): a choice whose token is not the shown
slate's (a form sent twice, an old tab) is refused and records nothing.
Sessions are bounded: a rater has at most one open session per agent (a
new request while one is open resumes it), at most ``max_per_rater``
sessions in all, the server at most ``max_open`` open sessions, and a
session with no choice for ``expire_hours`` expires.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pasta_app.records import ANSWERS, DataFolder, now
from simulators.errors import PastaError

#: Longest request a rater may type, in characters.
MAX_PROMPT = 300


class SessionError(PastaError, ValueError):
    """A request the session cannot take (unknown session, bad column or answer, finished)."""


class StaleTurn(SessionError):
    """A choice made on a slate that is not the one shown now (a form sent twice, an old tab)."""


class SessionLimit(SessionError):
    """A new session the caps do not allow (the rater's or the server's)."""


@dataclass
class Entry:
    """What is known of a session without building it: from the records, kept up to date."""

    rater: str
    agent: str
    prompt: str
    seed: int
    turns: int
    horizon: int
    last: float  # time of the last slate shown (the session's start or its last choice)

    @property
    def finished(self) -> bool:
        return self.turns >= self.horizon


@dataclass
class Session:
    """One rater's episode, built: its env and agent at the shown slate."""

    id: str
    rater: str
    agent_name: str
    seed: int
    prompt: str
    env: Any
    agent: Any
    obs: dict[str, np.ndarray]
    info: dict[str, Any]
    turn: int = 0
    slate: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    shown_at: float = 0.0
    #: The shown slate's one-time token: a choice must carry it.
    token: str = ""
    #: The last turn's chosen prompt and its ``(M, h, w, 3)`` images (worlds with pixels), for the page.
    previous: tuple[str, np.ndarray | None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: The shown slate's images encoded for the page, with the turn they belong to (encoded once per turn).
    encoded: tuple[int, list[list[str]]] | None = None

    @property
    def done(self) -> bool:
        return self.turn >= self.env.config.horizon

    def texts(self) -> list[str]:
        """The shown slate's prompt texts."""
        return [str(t) for t in self.env.core.slate_prompts[0].texts()]

    def pixels(self) -> np.ndarray | None:
        """``(L, M, h, w, 3)`` uint8 images of the shown slate, in worlds with pixels."""
        pixels = self.env.core.pixels  # the env's own copy, taken when the slate was shown
        return None if pixels is None else pixels[0]


def clean_prompt(text: str) -> str:
    """A rater's request, checked: printable text of 1 to :data:`MAX_PROMPT` characters.

    Raises:
        SessionError: Empty, too long, or holding control characters.
    """
    text = unicodedata.normalize("NFC", str(text)).strip()
    if not text:
        raise SessionError("the request is empty: describe the image you want")
    if len(text) > MAX_PROMPT:
        raise SessionError(f"the request is {len(text)} characters; keep it under {MAX_PROMPT}")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in text):
        raise SessionError("the request holds control characters; type plain text")
    return text


class Sessions:
    """The server's sessions: made, stepped, recorded, bounded, and rebuilt when next used.

    Args:
        folder: The data folder.
        agents: Agent specs (``bayes``, ``iql:PATH``...); with several, each
            session gets one at random (recorded, never shown to the rater).
        world: Registered world name.
        world_options: The world factory's options.
        horizon: Turns per session.
        seed: Seeds the agent assignment and the sessions' episode seeds (a
            reproducible study); ``None``: drawn from the OS's randomness.
        max_open: Open (unfinished, unexpired) sessions the server holds at most.
        max_per_rater: Sessions a rater may start in all.
        expire_hours: Hours without a choice after which an open session expires.
        idle_minutes: Minutes without a request after which a built session's
            env is let go (it is rebuilt from its records when next used).
    """

    def __init__(self, folder: DataFolder, agents: list[str], world: str = "synthetic",
                 world_options: dict[str, Any] | None = None, horizon: int = 5, seed: int | None = None,
                 max_open: int = 1000, max_per_rater: int = 100, expire_hours: float = 24.0,
                 idle_minutes: float = 30.0):
        from agents import check_agent_spec

        for spec in agents:
            check_agent_spec(spec)
        if not agents:
            raise ValueError("give at least one agent")
        if max_open < 1 or max_per_rater < 1 or not expire_hours > 0 or not idle_minutes > 0:
            raise ValueError("the session caps must be >= 1 and the expiry and idle times positive")
        self.folder, self.agents, self.world_name = folder, list(agents), world
        self.world_options, self.horizon = dict(world_options or {}), horizon
        self.max_open, self.max_per_rater = max_open, max_per_rater
        self.expire_s, self.idle_s = expire_hours * 3600.0, idle_minutes * 60.0
        #: Every session, light: id -> :class:`Entry` (read from the records at start).
        self.index: dict[str, Entry] = {}
        #: Built sessions (their envs and agents): id -> :class:`Session`.
        self.live: dict[str, Session] = {}
        self.worlds: OrderedDict[str, Any] = OrderedDict()
        self.lock = threading.Lock()
        self.build_lock = threading.Lock()  # one session built (replayed) at a time
        # Worlds whose parts are not thread-safe (the clip world's models, shared by every session) step
        # one session at a time; the synthetic world's sessions step in parallel.
        self.model_lock = threading.Lock()
        #: The first world built; the others are it with another request (:meth:`World.with_prompts`).
        self.base: Any = None
        self._read()
        self.rng = None if seed is None else np.random.default_rng([seed, len(self.index)])

    # Worlds ---------------------------------------------------------------------------------------

    def _world(self, prompt: str):
        """The world whose only initial prompt is ``prompt`` (kept for the last 64 prompts)."""
        from pasta_env.worlds import build_world

        with self.lock:
            if prompt in self.worlds:
                self.worlds.move_to_end(prompt)
                return self.worlds[prompt]
        # Built outside the sessions' lock (other raters' requests go on), one at a time: the world's models
        # load once and every request's world shares them; a request queued behind the build of its own
        # prompt's world takes that world.
        with self.model_lock:
            with self.lock:
                if prompt in self.worlds:
                    return self.worlds[prompt]
            if self.base is None:
                world = self.base = build_world(self.world_name, [prompt], 25, self.world_options)
            else:
                world = self.base.with_prompts([prompt])
            with self.lock:
                self.worlds[prompt] = world
                if len(self.worlds) > 64:
                    self.worlds.popitem(last=False)
        return world

    def _make(self, sid: str, rater: str, agent_name: str, seed: int, prompt: str) -> Session:
        import gymnasium as gym

        from agents import make_agent

        world = self._world(prompt)
        env: Any = gym.make("PastaT2I-v0", world=world, horizon=self.horizon).unwrapped
        agent = make_agent(agent_name, world, env.config, seed)
        obs, info = env.reset(seed=seed)
        return Session(sid, rater, agent_name, seed, prompt, env, agent, obs, info)

    # Sessions -------------------------------------------------------------------------------------

    def expired(self, entry: Entry, at: float | None = None) -> bool:
        """Whether an unfinished session has gone ``expire_hours`` without a choice."""
        return not entry.finished and (now() if at is None else at) - entry.last > self.expire_s

    def open_of(self, rater: str) -> list[tuple[str, Entry]]:
        """The rater's open sessions (unfinished, unexpired), newest first."""
        t = now()
        with self.lock:
            mine = [(sid, e) for sid, e in self.index.items()
                    if e.rater == rater and not e.finished and not self.expired(e, t)]
        return sorted(mine, key=lambda item: -item[1].last)

    def start(self, rater: str, prompt: str) -> tuple[Session, bool]:
        """A session for ``rater`` on ``prompt``: ``(session, resumed)``.

        The agent is drawn first; if the rater has an open session with it,
        that session is resumed (and ``resumed`` is true) rather than a
        second one opened. A new session has its first slate shown and is
        recorded.

        Raises:
            SessionError: The request is not valid (:func:`clean_prompt`).
            SessionLimit: The rater has started ``max_per_rater`` sessions, or
                the server holds ``max_open`` open sessions.
        """
        prompt = clean_prompt(prompt)
        sid = secrets.token_urlsafe(12)
        t = now()
        with self.lock:
            if self.rng is None:
                agent_name, seed = self.agents[secrets.randbelow(len(self.agents))], secrets.randbelow(2 ** 31)
            else:
                agent_name = self.agents[int(self.rng.integers(len(self.agents)))]
                seed = int(self.rng.integers(2 ** 31))
            mine = [(s, e) for s, e in self.index.items() if e.rater == rater]
            same = [s for s, e in mine if e.agent == agent_name and not e.finished and not self.expired(e, t)]
            if not same:
                if len(mine) >= self.max_per_rater:
                    raise SessionLimit(f"you have started the {self.max_per_rater} sessions this study asks "
                                       "for; thank you for taking part")
                if sum(not e.finished and not self.expired(e, t) for e in self.index.values()) >= self.max_open:
                    raise SessionLimit("the app is at its limit of open sessions; try again in a while")
                # Reserved now, so that two requests at once cannot both pass the caps.
                self.index[sid] = Entry(rater, agent_name, prompt, seed, 0, self.horizon, t)
        if same:
            return self.get(rater, same[0]), True
        try:
            session = self._make(sid, rater, agent_name, seed, prompt)
            self.folder.add_session({"session": sid, "rater": rater, "agent": agent_name, "seed": seed,
                                     "prompt": prompt, "world": self.world_name, "horizon": self.horizon,
                                     "created": t})
        except BaseException:
            with self.lock:
                self.index.pop(sid, None)
            raise
        self._show(session)
        with self.lock:
            self.live[sid] = session
        self._sweep()
        return session, False

    def entry(self, rater: str, sid: str) -> Entry:
        """The rater's session ``sid``, light (finished or not).

        Raises:
            SessionError: No such session of this rater (another rater's is not found either).
        """
        entry = self.index.get(sid)
        if entry is None or entry.rater != rater:
            raise SessionError("no such session; start a new one")
        return entry

    def get(self, rater: str, sid: str) -> Session:
        """The rater's open session ``sid``, built (replayed from its records) if it is not in memory.

        Raises:
            SessionError: No such session of this rater, or it is finished,
                has expired, or cannot be replayed.
        """
        entry = self.entry(rater, sid)
        if entry.finished:
            raise SessionError("this session is finished; start a new one")
        if self.expired(entry):
            with self.lock:
                self.live.pop(sid, None)
            raise SessionError(f"this session expired after {self.expire_s / 3600:g} hours without a choice; "
                               "start a new one")
        session = self.live.get(sid)
        if session is None:
            with self.build_lock:
                session = self.live.get(sid) or self._replay(sid)
                with self.lock:
                    self.live[sid] = session
        return session

    def code(self, sid: str) -> str:
        """The completion code of session ``sid``: shown to the rater at its end, listed for the organiser."""
        c = self.folder.mac("done", sid, length=8)
        return f"{c[:4]}-{c[4:]}"

    def _serial(self, session: Session):
        return contextlib.nullcontext() if session.env.world.thread_safe else self.model_lock

    def _show(self, session: Session) -> None:
        from agents.evaluation import public_info

        slate = np.asarray(session.agent.act(session.obs, public_info(session.info)))
        with self._serial(session):
            session.slate = session.env.show(slate)["slate"]
        session.shown_at = now()
        session.token = self.folder.mac("turn", session.id, session.turn)

    def _advance(self, session: Session, column: int) -> None:
        """The env goes on from ``column`` (remembered as the previous choice)."""
        pixels = session.pixels()
        session.previous = (session.texts()[column], None if pixels is None else np.array(pixels[column]))
        with self._serial(session):
            session.obs, _, _, _, session.info = session.env.choose(column)
        session.turn += 1

    def choose(self, session: Session, column: int, answer: str | None, token: str | None) -> None:
        """Record the rater's column (and answer) for the shown slate, then show the next one.

        Raises:
            StaleTurn: ``token`` is not the shown slate's (nothing recorded).
            SessionError: The session is finished, the column is not one of the
                slate's, or the answer is missing (turn 2 on) or not one of
                :data:`~pasta_app.records.ANSWERS`.
            RecordError: The turn could not be written (a full disk); the
                session stays on the same slate.
        """
        with session.lock:
            if session.done:
                raise SessionError("this session is finished; start a new one")
            with self.lock:  # let go while idle, and rebuilt since: the rebuilt one takes the turn
                current = self.live.get(session.id) is session
            if not current or not token or not secrets.compare_digest(str(token), session.token):
                raise StaleTurn("this choice was made on a page that is no longer the current one (sent twice, "
                                "or from an old tab), so it was not recorded; choose again on the current slate")
            L = session.env.config.slate_size
            if not isinstance(column, int) or not 0 <= column < L:
                raise SessionError(f"pick one of the {L} columns")
            if session.turn >= 1 and answer not in ANSWERS:
                raise SessionError("say whether this turn is Better, Same or Worse than your last choice")
            if session.turn == 0:
                answer = None
            record, keys = self._record(session, column, answer)
            self.folder.add_turn(record, *keys)  # on disk first: a failed write leaves the session where it was
            self._advance(session, column)
            if not session.done:
                self._show(session)
            with self.lock:
                entry = self.index[session.id]
                entry.turns, entry.last = session.turn, session.shown_at or now()
                if session.done:  # finished: the entry stays, the env and the agent go
                    self.live.pop(session.id, None)

    def _record(self, session: Session, column: int, answer: str | None) -> tuple[dict, tuple]:
        """The turn's record (the preference format's choice fields and the app's) and its embeddings."""
        core = session.env.core
        L, M = core.images.shape[1:3]
        tag = f"{session.id}-{session.turn:02d}"
        image_keys = [f"{tag}-c{j}-m{m}" for j in range(L) for m in range(M)]
        texts = session.texts()
        record = {"user_id": session.rater, "trajectory_id": session.id, "turn": session.turn,
                  "initial_prompt": session.prompt, "prompts": texts,
                  "images": [image_keys[j * M:(j + 1) * M] for j in range(L)], "chosen": column,
                  "session": session.id, "agent": session.agent_name, "answer": answer,
                  "slate": [int(i) for i in session.slate], "shown_at": session.shown_at, "chosen_at": now()}
        prompt_keys = [session.prompt, *texts]
        prompt_emb = np.concatenate([core.request.embeddings[:1], core.slate_prompts.embeddings[0]])
        return record, (prompt_keys, prompt_emb, image_keys, core.images[0].reshape(L * M, -1))

    def _read(self) -> None:
        """Index every session from the records (nothing is built: sessions are replayed when next used)."""
        turns: dict[str, list[dict]] = {}
        for t in self.folder.turns():
            turns.setdefault(t["trajectory_id"], []).append(t)
        for rec in self.folder.sessions():
            done = turns.get(rec["session"], [])
            last = max([float(rec.get("created", 0.0)), *(float(t.get("chosen_at", 0.0)) for t in done)])
            self.index[rec["session"]] = Entry(rec["rater"], rec["agent"], rec["prompt"], int(rec["seed"]), len(done),
                                               int(rec.get("horizon", self.horizon)), last)

    def _replay(self, sid: str) -> Session:
        """Rebuild an unfinished session: replay its recorded turns, checking the slates agree."""
        e = self.index[sid]
        done = sorted((t for t in self.folder.turns() if t["trajectory_id"] == sid), key=lambda t: t["turn"])
        session = self._make(sid, e.rater, e.agent, e.seed, e.prompt)
        for t in done:
            self._show(session)
            if [int(i) for i in session.slate] != t["slate"]:
                raise SessionError(f"session {sid}: replaying turn {t['turn']} shows another slate than was "
                                   "recorded (was the agent, the world or pasta-t2i changed?); restore the "
                                   "installation the study began with, or start a new session")
            self._advance(session, int(t["chosen"]))
        self._show(session)
        return session

    def _sweep(self) -> None:
        """Let go of built sessions unused for ``idle_minutes`` (kept in the records) and of expired ones."""
        t = now()
        with self.lock:  # a session being chosen on holds its lock and is kept (see choose)
            for sid in [sid for sid, s in self.live.items()
                        if (t - s.shown_at > self.idle_s or self.expired(self.index[sid], t)) and not s.lock.locked()]:
                self.live.pop(sid, None)
