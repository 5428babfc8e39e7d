"""The evaluation harness: every agent meets the same users (common random numbers).

Episode ``e`` of an evaluation with seed ``s`` is played in a vector-env slot
reset with seed ``s + e``, for every agent: the same user type, initial
prompt, candidate draws, image noise and choice uniforms. Differences
between agents are therefore paired, and their confidence intervals are
tight.

Episodes are played in blocks of ``num_envs`` users; before each block an
agent is reset with a seed drawn from ``(seed, block)``, so a block's
episodes do not depend on which blocks came before. That is what lets
``backend=RayBackend(...)`` play the blocks as shards on Ray workers
(:mod:`pasta_env.distributed`) and return the same numbers as one process.

The harness sees the hidden user (to measure), agents do not: an agent gets
the env's ``info`` without :data:`pasta_env.PRIVILEGED_INFO_KEYS` unless it
declares ``privileged = True`` (the oracle).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from agents import make_agent
from pasta_env import ENV_ID
from pasta_env.datasets.identity import same_world, world_identity
from pasta_env.distributed import RayBackend, WorkerPool, one_blas_thread, shard_seed
from pasta_env.env import PRIVILEGED_INFO_KEYS
from pasta_env.rewards import reward_log_likelihood
from pasta_env.stats import ci95
from pasta_env.worlds import PromptsArg, build_world
from simulators.atomic import atomic_path


@dataclass
class AgentResult:
    """Per-episode measurements of one agent.

    Attributes:
        name: Agent name.
        returns: ``(E,)`` episode returns.
        utilities: ``(E, H)`` reward of each turn.
        entropies: ``(E, H)`` entropy (nats) of the user's choice distribution.
        seconds: Wall-clock time of the agent's episodes.
        true_type_mass: ``(E, H)`` posterior probability of the true user
            type after each turn: the exact Bayes posterior the harness
            computes with the world's user model from the turn's images, the
            choices and the rewards (how identifiable the user is from this
            agent's slates and the feedback they drew).
        information: ``(E, H, 3)`` what each turn's feedback told about the
            type, in nats, given the feedback before it: ``log p(f | k) -
            log sum_k' P(k' | history) p(f | k')`` at the true type ``k`` for
            ``f`` the choice, the reward and both (their means estimate the
            conditional mutual information of type and feedback).
        request_kept: ``(E,)`` whether the last chosen prompt still holds the
            user's request (its subject or free text).
        request_cosine: ``(E,)`` cosine of the last chosen prompt to the request.
    """

    name: str
    returns: np.ndarray
    utilities: np.ndarray
    entropies: np.ndarray
    seconds: float
    true_type_mass: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    information: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3)))
    request_kept: np.ndarray = field(default_factory=lambda: np.zeros(0))
    request_cosine: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def summary(self) -> dict[str, Any]:
        """Means and 95% confidence half-widths, JSON-ready."""
        return {
            "episodes": int(len(self.returns)),
            "return_mean": float(self.returns.mean()),
            "return_ci95": ci95(self.returns),
            "return_std": float(self.returns.std(ddof=1)) if len(self.returns) > 1 else 0.0,
            "per_turn_utility_mean": self.utilities.mean(axis=0).tolist(),
            "per_turn_utility_ci95": [ci95(c) for c in self.utilities.T],
            "choice_entropy_mean": float(self.entropies.mean()),
            "choice_entropy_per_turn": self.entropies.mean(axis=0).tolist(),
            "true_type_mass_mean": _mean(self.true_type_mass[:, -1]) if self.true_type_mass.size else float("nan"),
            "true_type_mass_per_turn": self.true_type_mass.mean(axis=0).tolist(),
            "information_per_turn": {what: self.information[:, :, i].mean(axis=0).tolist()
                                     for i, what in enumerate(FEEDBACK)},
            "request_kept_rate": _mean(self.request_kept),
            "request_cosine_mean": _mean(self.request_cosine),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class EvaluationResult:
    """All agents' results and the settings that produced them."""

    settings: dict[str, Any]
    agents: dict[str, AgentResult] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def comparisons(self) -> list[dict[str, Any]]:
        """Paired differences of mean return for every ordered pair, best first."""
        names = self.ranking()
        out = []
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                diff = self.agents[a].returns - self.agents[b].returns
                half = ci95(diff)
                out.append({"a": a, "b": b, "mean_difference": float(diff.mean()), "ci95": half,
                            "significant": bool(abs(diff.mean()) > half)})
        return out

    def ranking(self) -> list[str]:
        """Agent names by mean return, best first."""
        return sorted(self.agents, key=lambda n: -self.agents[n].returns.mean())

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON layout: settings, agents, comparisons, ranking, elapsed_s."""
        return {"settings": self.settings,
                "agents": {n: r.summary() for n, r in self.agents.items()},
                "comparisons": self.comparisons(), "ranking": self.ranking(),
                "elapsed_s": round(self.elapsed_s, 3)}

    def table(self) -> str:
        """A markdown table: mean return with 95% CI, mean reward per turn, choice entropy."""
        horizon = self.settings["horizon"]
        head = ["agent", "return (95% CI)"] + [f"turn {t + 1}" for t in range(horizon)] + ["entropy"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name in self.ranking():
            s = self.agents[name].summary()
            cells = [name, f"{s['return_mean']:.3f} ± {s['return_ci95']:.3f}"]
            cells += [f"{u:.3f}" for u in s["per_turn_utility_mean"]]
            cells.append(f"{s['choice_entropy_mean']:.3f}")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


#: The parts of a turn's feedback whose information the harness measures (the last axis of ``information``).
FEEDBACK = ("choice", "reward", "both")


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=-1)


def evaluate(agents: Sequence[str | Any], episodes: int = 2000, seed: int = 0,
             prompts: PromptsArg = None, num_envs: int = 1024, progress: bool = True,
             backend: RayBackend | None = None, **env_kwargs) -> EvaluationResult:
    """Evaluate agents on the same users.

    Args:
        agents: Registered agent names, or objects with ``reset(seed)`` and
            ``act(obs, info)`` (batched) and a ``name``. An agent sees the
            hidden user's information only if it has ``privileged = True``.
        episodes: Episodes per agent.
        seed: Episode ``e`` uses env seed ``seed + e``; before each block of
            ``num_envs`` episodes an agent is reset with a seed drawn from
            ``(seed, block)``.
        prompts: Initial prompts (strings or a file), as for the env.
        num_envs: Users simulated at once (the block size; with Ray, a shard).
        progress: Show a progress bar.
        backend: ``None`` plays in this process; a
            :class:`~pasta_env.distributed.RayBackend` plays the blocks on
            Ray workers (agents then given by name), with the same results.
        **env_kwargs: Passed to the env (``reward``, ``horizon``, ``world``...);
            ``expose_user_type`` is the harness's to set and is refused.

    Raises:
        ValueError: Unknown agent name (listing the known ones), or
            ``episodes``/``num_envs`` below 1, or agent objects with Ray.
    """
    if episodes < 1 or num_envs < 1:
        raise ValueError(f"episodes and num_envs must be positive, got {episodes} and {num_envs}")
    if "expose_user_type" in env_kwargs:
        raise ValueError("evaluate() decides what agents see: give an agent privileged = True instead of "
                         "passing expose_user_type")
    start = time.perf_counter()
    blocks = [(b, a, min(num_envs, episodes - a)) for b, a in enumerate(range(0, episodes, num_envs))]
    parts: dict[int, dict] = {}
    with contextlib.ExitStack() as stack:  # the world is built (bad input refused) before the progress bar shows
        if backend is None:
            evaluator = stack.enter_context(Evaluator(agents, seed, prompts, env_kwargs))
            facts = evaluator.facts()
            played: Iterator[dict] = (evaluator.play(block) for block in blocks)
        else:
            specs = [a for a in agents if isinstance(a, str)]
            if len(specs) != len(agents):
                raise ValueError("with the Ray backend give agents by name (NAME or NAME:MODEL): each worker "
                                 "builds them itself")
            pool = stack.enter_context(WorkerPool(backend, Evaluator, (specs, seed, prompts, env_kwargs,
                                                                        backend.threads), len(blocks)))
            facts = same_world(pool.call_all("facts"))
            pool.submit("play", blocks)
            played = (pool.next() for _ in blocks)
        bar = stack.enter_context(contextlib.closing(_progress(episodes, progress,
                                                               "" if backend is None else " on Ray")))
        for out in played:
            parts[out["block"]] = out
            bar.update(out["episodes"])
    names = facts["names"]
    settings = {"episodes": episodes, "seed": seed, "num_envs": num_envs, "world": facts["world"],
                "prompts": _prompt_source(prompts), **facts["config"]}
    result = EvaluationResult(settings)
    ordered = [parts[b] for b, _, _ in blocks]
    for name in names:
        def joined(key: str, name: str = name) -> np.ndarray:
            return np.concatenate([block["agents"][name][key] for block in ordered])

        r = joined("r")
        result.agents[name] = AgentResult(name, r.sum(axis=1), r, joined("ent"),
                                          sum(block["agents"][name]["seconds"] for block in ordered),
                                          joined("mass"), joined("info"), joined("kept"), joined("cos"))
    result.elapsed_s = time.perf_counter() - start
    return result


def _prompt_source(prompts: PromptsArg) -> str | None:
    if prompts is None or isinstance(prompts, (str, os.PathLike)):
        return None if prompts is None else str(prompts)
    return f"{len(prompts)} prompts given in code"


class Evaluator:
    """The world, the envs and the agents of an evaluation: what one process (or Ray worker) holds.

    Built on first use (a Ray worker builds it when first called, and again
    after a restart). :meth:`play` plays one block of episodes with every agent.

    Args:
        agents: Agent names or objects, as for :func:`evaluate`.
        seed: The evaluation's seed.
        prompts: Initial prompts, as for :func:`evaluate`.
        env_kwargs: The env's arguments, as for :func:`evaluate`.
        num_threads: Threads of the vector envs (``None``: their default).
    """

    def __init__(self, agents: Sequence[str | Any], seed: int, prompts: PromptsArg, env_kwargs: dict[str, Any],
                 num_threads: int | None = None):
        self.args = (list(agents), seed, prompts, dict(env_kwargs), num_threads)
        self.ready = False

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _build(self) -> None:
        if self.ready:
            return
        agents, seed, prompts, env_kwargs, self.num_threads = self.args
        env_kwargs = {**env_kwargs, "expose_user_type": True}  # for the harness; filtered per agent
        self.world = build_world(env_kwargs.pop("world", "synthetic"), prompts,
                                 env_kwargs.get("num_candidates", 25), env_kwargs.pop("world_kwargs", None))
        self.env_kwargs, self.seed = env_kwargs, seed
        self.envs: dict[int, Any] = {}
        self.config = self.env_for(1).config
        self.players = [make_agent(a, self.world, self.config, seed) if isinstance(a, str) else a for a in agents]
        self.names = [getattr(p, "name", type(p).__name__) for p in self.players]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"agent names must be unique, got {self.names}")
        self.ready = True

    def env_for(self, n: int):
        """The vector env of ``n`` users (made once)."""
        if n not in self.envs:
            threads: dict[str, Any] = {}
            if self.num_threads is not None:
                threads["num_threads"] = max(1, min(self.num_threads, n))
            self.envs[n] = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point",
                                        world=self.world, **self.env_kwargs, **threads)
        return self.envs[n]

    def facts(self) -> dict[str, Any]:
        """The agents' names, the world's name and the env's settings."""
        self._build()
        return {"names": self.names, "world": self.world.name, "config": self.config.to_dict(),
                "identity": world_identity(self.world)}

    def play(self, block: tuple[int, int, int]) -> dict[str, Any]:
        """Play block ``(index, first episode, episodes)`` with every agent; per-agent arrays and seconds."""
        self._build()
        index, start, n = block
        with one_blas_thread():
            played = {name: _play(player, self.seed, index, start, self.env_for(n))
                      for name, player in zip(self.names, self.players)}
        return {"block": index, "episodes": n, "agents": played}

    def close(self) -> None:
        """Stop the envs' worker threads."""
        for env in getattr(self, "envs", {}).values():
            env.close()
        self.envs = {}


def public_info(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` without the hidden user's keys (:data:`pasta_env.PRIVILEGED_INFO_KEYS`)."""
    return {k: v for k, v in info.items() if k not in PRIVILEGED_INFO_KEYS}


def _play(player, seed: int, index: int, start: int, env) -> dict[str, Any]:
    """One agent on one block: per-episode turn rewards, choice entropies, identification and the end measures."""
    t0 = time.perf_counter()
    player.reset(shard_seed(seed, index))
    shown = (lambda i: i) if getattr(player, "privileged", False) else public_info
    obs, info = env.reset(seed=seed + start)
    types = info["user_type"]
    tracker = FeedbackTracker(env.world.user_model, env.config.reward, types)
    rewards, entropies = [], []
    for _ in range(env.config.horizon):
        obs, reward, term, trunc, info = env.step(player.act(obs, shown(info)))
        rewards.append(reward)
        entropies.append(_entropy(info["choice_probs"]))
        tracker.update(obs["initial_prompt"], env.core.images, info["choice"], reward)
    return {"r": np.stack(rewards, axis=1), "ent": np.stack(entropies, axis=1),
            "mass": tracker.mass(), "info": tracker.information(), "kept": env.core.request_kept(),
            "cos": (obs["current_prompt"] * obs["initial_prompt"]).sum(axis=1),
            "seconds": time.perf_counter() - t0}


class FeedbackTracker:
    """The harness's exact Bayes posterior over user types, turn by turn, and what each turn's feedback told.

    It scores the images each turn actually showed (not their mean
    embeddings) with the world's user model for every type, and reads the
    choice and the reward with their exact likelihoods
    (:mod:`pasta_env.rewards`; a deterministic reward is matched within
    0.001, so it identifies the type as it would for anyone who reads it).

    Args:
        user_model: The world's user model.
        reward: The env's reward.
        types: ``(N,)`` the true user types.
    """

    def __init__(self, user_model, reward: str, types: np.ndarray):
        self.users, self.reward, self.types = user_model, reward, np.asarray(types)
        self.rows = np.arange(len(self.types))
        self.logpost = np.broadcast_to(np.log(np.maximum(user_model.prior, 1e-300)),
                                       (len(self.types), user_model.num_types)).copy()
        self._mass: list[np.ndarray] = []
        self._info: list[np.ndarray] = []

    def update(self, requests: np.ndarray, images: np.ndarray, choice: np.ndarray, reward: np.ndarray) -> None:
        """Read one turn: ``(N, d)`` requests, ``(N, L, M, d)`` shown images, ``(N,)`` choices and rewards."""
        users = self.users
        req = np.broadcast_to(requests[:, None, :], (*images.shape[:2], images.shape[-1]))
        util = np.moveaxis(users.utilities(req, images), -1, -2).astype(np.float64)  # (N, K, L)
        lc = users.log_likelihood(util, choice)
        lr = reward_log_likelihood(reward, util, choice, users.temperature, self.reward)
        told = [self._told(ll) for ll in (lc, lr, lc + lr)]
        self._info.append(np.stack(told, axis=1))
        self.logpost += lc + lr
        self.logpost -= np.logaddexp.reduce(self.logpost, axis=1, keepdims=True)
        self._mass.append(np.exp(self.logpost[self.rows, self.types]))

    def _told(self, loglik: np.ndarray) -> np.ndarray:
        """``log p(f | true k) - log sum_k P(k | history) p(f | k)`` per user."""
        return loglik[self.rows, self.types] - np.logaddexp.reduce(self.logpost + loglik, axis=1)

    def mass(self) -> np.ndarray:
        """``(N, turns)`` posterior mass on the true type after each turn read."""
        return np.stack(self._mass, axis=1)

    def information(self) -> np.ndarray:
        """``(N, turns, 3)`` nats told by the choice, the reward and both, each turn."""
        return np.stack(self._info, axis=1)


class _NoBar:
    def update(self, n):  # noqa: D102
        pass

    def close(self):  # noqa: D102
        pass


def _progress(total: int, enabled: bool, where: str = ""):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="ep", desc="evaluating" + where, leave=False)


def plot_per_turn(result: EvaluationResult, path: str, labels: dict[str, str] | None = None) -> None:
    """Per-turn utility of every agent with 95% confidence bands, saved as an image.

    ``labels``: shorter names for the legend (e.g. a model's path). With
    more than eight agents the legend sits beside the plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = result.ranking()
    many = len(names) > 8
    fig, ax = plt.subplots(figsize=(9.6 if many else 6.4, 4.6 if many else 4.2))
    colors = plt.get_cmap("tab20" if many else "tab10")
    styles = ["-", "--", "-.", ":"]
    turns = np.arange(1, result.settings["horizon"] + 1)
    for i, name in enumerate(names):
        s = result.agents[name].summary()
        mean, half = np.array(s["per_turn_utility_mean"]), np.array(s["per_turn_utility_ci95"])
        label = (labels or {}).get(name, name)
        ax.plot(turns, mean, marker="o", markersize=3, color=colors(i % colors.N), linestyle=styles[i // 10 % 4],
                label=f"{label} ({s['return_mean']:.2f})")
        ax.fill_between(turns, mean - half, mean + half, alpha=0.15, color=colors(i % colors.N))
    ax.set_xlabel("turn")
    ax.set_ylabel("mean reward of the turn")
    ax.set_xticks(turns)
    ax.set_title(f"PastaT2I-v0, {result.settings['episodes']} episodes per agent (95% CI)")
    if many:
        ax.legend(title="agent (mean return)", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(title="agent (mean return)", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fmt = os.path.splitext(str(path))[1].lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=fmt)
    plt.close(fig)
