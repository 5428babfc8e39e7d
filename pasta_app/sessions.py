"""Rater sessions: an env and an agent per session, each turn recorded, sessions rebuilt after a restart.

A session is one episode of ``PastaT2I-v0`` whose initial prompt is the
rater's request and whose choices are the rater's: the agent proposes a
slate, the env shows it (:meth:`pasta_env.PastaT2IEnv.show`: images
rendered, nothing chosen), the rater picks a column (and, from turn 2 on,
answers Better / Same / Worse), and the env goes on from the chosen prompt
(:meth:`~pasta_env.PastaT2IEnv.choose`). The env and the agent are
deterministic given the session's seed and the rater's choices, so a
restarted server rebuilds an unfinished session by replaying its recorded
turns, and checks that it shows the slates it showed before.
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


@dataclass
class Session:
    """One rater's episode."""

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
    """The server's sessions: made, stepped, recorded, and rebuilt after a restart.

    Args:
        folder: The data folder.
        agents: Agent specs (``bayes``, ``iql:PATH``...); with several, each
            session gets one at random (recorded, never shown to the rater).
        world: Registered world name.
        world_options: The world factory's options.
        horizon: Turns per session.
        seed: Seeds the agent assignment and the sessions' episode seeds (a
            reproducible study); ``None``: drawn from the OS's randomness.
    """

    def __init__(self, folder: DataFolder, agents: list[str], world: str = "synthetic",
                 world_options: dict[str, Any] | None = None, horizon: int = 5, seed: int | None = None):
        from agents import check_agent_spec

        for spec in agents:
            check_agent_spec(spec)
        if not agents:
            raise ValueError("give at least one agent")
        self.folder, self.agents, self.world_name = folder, list(agents), world
        self.world_options, self.horizon = dict(world_options or {}), horizon
        self.live: dict[str, Session] = {}
        #: Finished sessions, kept light (their envs are let go): id -> (rater, request).
        self.finished: dict[str, tuple[str, str]] = {}
        self.worlds: OrderedDict[str, Any] = OrderedDict()
        self.lock = threading.Lock()
        # Worlds whose parts are not thread-safe (the clip world's models, shared by every session) step
        # one session at a time; the synthetic world's sessions step in parallel.
        self.model_lock = threading.Lock()
        #: The first world built; the others are it with another request (:meth:`World.with_prompts`).
        self.base: Any = None
        self.rng = None if seed is None else np.random.default_rng([seed, len(folder.sessions())])
        self._rebuild()

    # Worlds ---------------------------------------------------------------------------------------

    def _world(self, prompt: str):
        """The world whose only initial prompt is ``prompt`` (kept for the last 64 prompts)."""
        from pasta_env.worlds import build_world

        with self.lock:
            if prompt in self.worlds:
                self.worlds.move_to_end(prompt)
                return self.worlds[prompt]
            if self.base is None:  # the world's models load once; every request's world shares them
                world = self.base = build_world(self.world_name, [prompt], 25, self.world_options)
            else:
                world = self.base.with_prompts([prompt])
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

    def start(self, rater: str, prompt: str) -> Session:
        """A new session for ``rater`` on ``prompt``, its first slate shown and the session recorded."""
        prompt = clean_prompt(prompt)
        sid = secrets.token_urlsafe(12)
        with self.lock:
            if self.rng is None:
                agent_name, seed = self.agents[secrets.randbelow(len(self.agents))], secrets.randbelow(2 ** 31)
            else:
                agent_name = self.agents[int(self.rng.integers(len(self.agents)))]
                seed = int(self.rng.integers(2 ** 31))
        session = self._make(sid, rater, agent_name, seed, prompt)
        self.folder.add_session({"session": sid, "rater": rater, "agent": agent_name, "seed": seed,
                                 "prompt": prompt, "world": self.world_name, "horizon": self.horizon,
                                 "created": now()})
        self._show(session)
        with self.lock:
            self.live[sid] = session
        return session

    def get(self, rater: str, sid: str) -> Session:
        """The rater's unfinished session ``sid``.

        Raises:
            SessionError: No such session of this rater (another rater's is not found either), or it is finished.
        """
        session = self.live.get(sid)
        if session is None or session.rater != rater:
            if self.finished.get(sid, ("",))[0] == rater:
                raise SessionError("this session is finished; start a new one")
            raise SessionError("no such session; start a new one")
        return session

    def request_of_finished(self, rater: str, sid: str) -> str | None:
        """The request of the rater's finished session ``sid`` (``None`` if it is not one)."""
        rec = self.finished.get(sid)
        return rec[1] if rec is not None and rec[0] == rater else None

    def of(self, rater: str) -> list[Session]:
        """The rater's sessions, newest first."""
        return sorted((s for s in self.live.values() if s.rater == rater), key=lambda s: -s.shown_at)

    def _serial(self, session: Session):
        return contextlib.nullcontext() if session.env.world.thread_safe else self.model_lock

    def _show(self, session: Session) -> None:
        from agents.evaluation import public_info

        slate = np.asarray(session.agent.act(session.obs, public_info(session.info)))
        with self._serial(session):
            session.slate = session.env.show(slate)["slate"]
        session.shown_at = now()

    def choose(self, session: Session, column: int, answer: str | None) -> None:
        """Record the rater's column (and answer) for the shown slate, then show the next one.

        Raises:
            SessionError: The session is finished, the column is not one of the
                slate's, or the answer is missing (turn 2 on) or not one of
                :data:`~pasta_app.records.ANSWERS`.
            RecordError: The turn could not be written (a full disk); the
                session stays on the same slate.
        """
        with session.lock:
            if session.done:
                raise SessionError("this session is finished; start a new one")
            L = session.env.config.slate_size
            if not isinstance(column, int) or not 0 <= column < L:
                raise SessionError(f"pick one of the {L} columns")
            if session.turn >= 1 and answer not in ANSWERS:
                raise SessionError("say whether these images are Better, Same or Worse than the last turn's")
            if session.turn == 0:
                answer = None
            record, keys = self._record(session, column, answer)
            self.folder.add_turn(record, *keys)  # on disk first: a failed write leaves the session where it was
            with self._serial(session):
                session.obs, _, _, _, session.info = session.env.choose(column)
            session.turn += 1
            if not session.done:
                self._show(session)
                return
        with self.lock:  # finished: keep the id and the request, let the env and the agent go
            self.live.pop(session.id, None)
            self.finished[session.id] = (session.rater, session.prompt)

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

    def _rebuild(self) -> None:
        """Rebuild unfinished sessions from the records: replay their turns, check the slates agree."""
        turns: dict[str, list[dict]] = {}
        for t in self.folder.turns():
            turns.setdefault(t["trajectory_id"], []).append(t)
        for rec in self.folder.sessions():
            done = sorted(turns.get(rec["session"], []), key=lambda t: t["turn"])
            if len(done) >= rec.get("horizon", self.horizon):
                self.finished[rec["session"]] = (rec["rater"], rec["prompt"])
                continue
            session = self._make(rec["session"], rec["rater"], rec["agent"], rec["seed"], rec["prompt"])
            for t in done:
                self._show(session)
                if [int(i) for i in session.slate] != t["slate"]:
                    raise SessionError(f"session {rec['session']}: replaying turn {t['turn']} shows another slate "
                                       "than was recorded (was the agent, the world or pasta-t2i changed?); "
                                       "move the data folder aside or restore the installation")
                with self._serial(session):
                    session.obs, _, _, _, session.info = session.env.choose(int(t["chosen"]))
                session.turn += 1
            self._show(session)
            self.live[session.id] = session
