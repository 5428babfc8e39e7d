"""The world-validity report: does a world reward what PASTA is about, and nothing else?

Runs every reference agent and five exploit probes on the same users
(common random numbers) and checks:

* **bracketing**: oracle > bayes > greedy > lmm > random and bayes > popular,
  each paired gap beyond its 95% CI; planner not below bayes beyond its CI;
* **the gaps** that say what the world rewards: adaptation (bayes - popular),
  knowing the user (oracle - bayes), planning ahead (planner - bayes);
* **exploits** that must not beat the oracle: showing one prompt in every
  column (with the true type); reading the hidden type from ``info``;
  reading it from the rewards (a reward reader that matches past rewards
  and choices against each type's predictions and plays the oracle's rule
  on its guess: it must not beat ``bayes`` either); one good prompt beside
  the three the known type likes least (decoys, which pay when the reward
  is the chosen column's utility); and the known type's myopic optimum
  over every slate (which the oracle must match, its lookahead on top);
* **the feedback channel**: per turn, the posterior mass on the true type
  and the information (nats) the choice, the reward and both carry about
  the type, against the type's entropy; one turn's feedback must leave the
  type uncertain (at most :data:`ONE_TURN_INFORMATION` of its entropy);
* **intent retention**: how often the last chosen prompt still holds the
  user's request, and its cosine to the request, per agent.

Run by ``pasta validate-world``; :func:`run` returns the report as a dict,
:func:`markdown` prints it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from agents.base import Agent
from agents.evaluation import FEEDBACK, EvaluationResult, ci95, evaluate
from agents.model_based import (
    BayesAgent,
    OracleAgent,
    best_known_type_slates,
    candidate_utilities,
    true_types,
    type_log_posterior,
)
from pasta_env.config import EnvConfig
from pasta_env.env import PRIVILEGED_INFO_KEYS
from pasta_env.rewards import STOCHASTIC_REWARDS
from pasta_env.worlds import build_world

AGENTS = ("random", "lmm", "popular", "greedy", "bayes", "planner", "oracle")
#: (better, worse): each must win beyond its paired 95% CI.
ORDER = (("oracle", "bayes"), ("bayes", "greedy"), ("greedy", "lmm"), ("lmm", "random"), ("bayes", "popular"))
GAPS = {"adaptation": ("bayes", "popular"), "knowing the user": ("oracle", "bayes"),
        "planning ahead": ("planner", "bayes")}
#: The most of the type's entropy that one turn's feedback (choice and reward) may tell, on bayes's first slate.
ONE_TURN_INFORMATION = 2 / 3


class DuplicateExploit(Agent):
    """Probe: the true type's best candidate in every column (what a repeated index would buy)."""

    name = "exploit-duplicates"
    privileged = True

    def act_batch(self, obs, info):
        types = true_types(info, self.name)
        util = candidate_utilities(obs, self.world.user_model)  # (N, K, C)
        best = util[np.arange(len(types)), types].argmax(axis=1)
        return np.repeat(best[:, None], self.config.slate_size, axis=1)


class DecoyExploit(Agent):
    """Probe: the known type's best candidate beside the three it likes least.

    Against a softmax user the decoys make the best column's choice almost
    certain; under a chosen-utility reward that beats showing four good
    prompts, under a reward grounded in the choice model it cannot.
    """

    name = "exploit-decoys"
    privileged = True

    def act_batch(self, obs, info):
        types = true_types(info, self.name)
        util = candidate_utilities(obs, self.world.user_model)[np.arange(len(types)), types]  # (N, C)
        order = np.argsort(util, axis=1, kind="stable")
        return np.concatenate([order[:, -1:], order[:, :self.config.slate_size - 1]], axis=1)


class KnownTypeMyopic(Agent):
    """Probe: the known type's myopic optimum, the env's expected reward maximised over every slate."""

    name = "known-type-myopic"
    privileged = True

    def act_batch(self, obs, info):
        types = true_types(info, self.name)
        users = self.world.user_model
        util = candidate_utilities(obs, users)[np.arange(len(types)), types]
        return best_known_type_slates(util, None, users.temperature, self.config.slate_size, self.config.reward)


class RewardReader(Agent):
    """Probe (not privileged): reads the type from past rewards and choices, then plays the oracle's rule on it.

    Its guess is the type that best matches the feedback in the observation:
    the posterior from the choices and the rewards (the reward's own
    likelihood when it is noisy; a Gaussian match within 0.1 around each
    type's prediction when it is deterministic), its most likely type.
    Before any feedback it plays ``bayes``; then it acts as the oracle would
    if its guess were the truth. It reads only
    the observation, so it is what any learner that reads the reward could
    do; a world whose reward names the type lets it beat ``bayes``.
    """

    name = "exploit-rewards"
    #: The match's standard deviation for a deterministic reward (utilities
    #: judged from mean image embeddings are off by about 0.05).
    spread = 0.1

    def __init__(self, world, config, seed=None):
        super().__init__(world, config, seed)
        self._bayes = BayesAgent(world, config, seed)
        self._oracle = OracleAgent(world, config, seed)

    def reset(self, seed=None):
        super().reset(seed)
        self._bayes.reset(seed)
        self._oracle.reset(seed)

    def guess(self, obs) -> np.ndarray:
        """``(N,)`` the most likely type given the observation's feedback."""
        spread = None if self.config.reward in STOCHASTIC_REWARDS else self.spread
        return type_log_posterior(obs, self.world.user_model, self.config.reward, spread).argmax(axis=1)

    def act_batch(self, obs, info):
        if not np.asarray(obs["history_mask"]).any():
            return self._bayes.act_batch(obs, info)
        return self._oracle.known_type_slates(obs, info, self.guess(obs))


class InfoExploit(Agent):
    """Probe: reads the hidden type from ``info`` when it can, else plays ``bayes``.

    With the true type's utilities or choice probabilities in ``info``, one
    turn identifies the type: the agent then plays the oracle's slates.
    Counts the steps on which it found any privileged key.
    """

    name = "exploit-info"

    def __init__(self, world, config, seed=None):
        super().__init__(world, config, seed)
        self._bayes = BayesAgent(world, config, seed)
        self._oracle = OracleAgent(world, config, seed)
        self._known: np.ndarray | None = None
        self.leaky_steps = 0

    def reset(self, seed=None):
        super().reset(seed)
        self._bayes.reset(seed)
        self._oracle.reset(seed)
        self._known = None

    def act_batch(self, obs, info):
        if int(np.asarray(obs["turn"]).reshape(-1)[0]) == 0:
            self._known = None
        if any(k in info for k in PRIVILEGED_INFO_KEYS):
            self.leaky_steps += 1
            self._known = self._match(obs, info)
        if self._known is None:
            return self._bayes.act_batch(obs, info)
        return self._oracle.act_batch(obs, {**info, "user_type": self._known})

    def _match(self, obs, info) -> np.ndarray | None:
        if "user_type" in info:
            return np.asarray(info["user_type"]).reshape(-1)
        if "utilities" not in info or int(np.asarray(obs["turn"]).reshape(-1)[0]) == 0:
            return self._known
        t = int(np.asarray(obs["turn"]).reshape(-1)[0]) - 1
        users = self.world.user_model
        images = obs["history_slate_images"][:, t][:, :, None, :]
        requests = np.broadcast_to(obs["initial_prompt"][:, None, :], images.shape[:2] + images.shape[3:])
        predicted = users.utilities(requests, images)  # (N, L, K)
        err = ((predicted - np.asarray(info["utilities"])[..., None]) ** 2).sum(axis=1)
        return err.argmin(axis=1)


def _diff(result: EvaluationResult, a: str, b: str) -> dict[str, float]:
    x = result.agents[a].returns - result.agents[b].returns
    return {"mean": float(x.mean()), "ci95": ci95(x)}


def run(world: str = "synthetic", prompts: str | None = None, episodes: int = 2000, seed: int = 0,
        num_envs: int = 1024, progress: bool = True, world_kwargs: dict | None = None,
        reward: str = "experienced") -> dict[str, Any]:
    """Run the report and return it as a JSON-ready dict (see the module docstring).

    Args:
        world: A registered world name.
        prompts: Initial prompts file (``None``: the world's own pool).
        episodes: Episodes per agent.
        seed: Episode ``e`` uses env seed ``seed + e`` for every agent.
        num_envs: Users simulated at once.
        progress: Show a progress bar.
        world_kwargs: Options of the world's factory (e.g. the clip world's
            ``clip_model``); the world is built once for every agent.
        reward: The env's reward (:data:`pasta_env.rewards.REWARDS`); the
            deterministic ones fail the report, as they should.
    """
    start = time.perf_counter()
    config = EnvConfig(reward=reward)
    probe_world = build_world(world, prompts, config.num_candidates, world_kwargs)
    info_probe = InfoExploit(probe_world, config, seed=seed)
    reader = RewardReader(probe_world, config, seed=seed)
    probes = [DuplicateExploit(probe_world, config, seed=seed), info_probe, reader,
              DecoyExploit(probe_world, config, seed=seed), KnownTypeMyopic(probe_world, config, seed=seed)]
    result = evaluate([*AGENTS, *probes], episodes=episodes, seed=seed, num_envs=num_envs,
                      progress=progress, world=probe_world, reward=reward)
    checks = []
    for a, b in ORDER:
        d = _diff(result, a, b)
        checks.append({"check": f"{a} > {b}", **d, "passed": d["mean"] > d["ci95"]})
    d = _diff(result, "planner", "bayes")
    checks.append({"check": "planner >= bayes (within CI)", **d, "passed": d["mean"] + d["ci95"] >= 0})
    for probe in probes:
        d = _diff(result, probe.name, "oracle")
        checks.append({"check": f"{probe.name} does not beat oracle", **d, "passed": not d["mean"] > d["ci95"]})
    d = _diff(result, reader.name, "bayes")
    checks.append({"check": f"{reader.name} does not beat bayes", **d, "passed": not d["mean"] > d["ci95"]})
    checks.append({"check": "no privileged info reaches a non-privileged agent",
                   "mean": float(info_probe.leaky_steps), "ci95": 0.0, "passed": info_probe.leaky_steps == 0})
    channel = feedback_channel(result, probe_world.user_model.prior)
    told = channel["bayes"]["information_per_turn"]["both"][0]
    checks.append({"check": "one turn's feedback leaves the type uncertain", "mean": told,
                   "ci95": channel["bayes"]["information_turn1_both_ci95"],
                   "limit": ONE_TURN_INFORMATION * channel["type_entropy"],
                   "passed": told <= ONE_TURN_INFORMATION * channel["type_entropy"]})
    gaps = {name: {"a": a, "b": b, **_diff(result, a, b)} for name, (a, b) in GAPS.items()}
    prior = probe_world.user_model.prior
    per_agent = {n: r.summary() for n, r in result.agents.items()}
    return {
        "settings": {**result.settings, "prompts": prompts, "world_kwargs": {k: str(v) for k, v in
                                                                             (world_kwargs or {}).items()}},
        "agents": per_agent,
        "gaps": gaps,
        "checks": checks,
        "passed": all(c["passed"] for c in checks),
        "identifiability": {"prior_true_type_mass": float((prior ** 2).sum()),
                            **{n: per_agent[n]["true_type_mass_mean"] for n in AGENTS}},
        "feedback_channel": channel,
        "elapsed_s": round(time.perf_counter() - start, 2),
    }


def feedback_channel(result: EvaluationResult, prior: np.ndarray) -> dict[str, Any]:
    """What the feedback tells about the type, turn by turn, for ``bayes`` and ``random``'s slates.

    The type's entropy ``H = -sum_k pi_k log pi_k`` (nats); per turn the
    posterior mass on the true type and the information of the choice, the
    reward and both, given the turns before (means over episodes of the
    harness's pointwise information, which estimate the conditional mutual
    information).
    """
    prior = np.asarray(prior, np.float64)
    out: dict[str, Any] = {"type_entropy": float(-(prior * np.log(np.maximum(prior, 1e-300))).sum()),
                           "prior_true_type_mass": float((prior ** 2).sum())}
    for name in ("bayes", "random"):
        r = result.agents[name]
        summary = r.summary()
        out[name] = {"true_type_mass_per_turn": summary["true_type_mass_per_turn"],
                     "information_per_turn": summary["information_per_turn"],
                     "information_turn1_both_ci95": ci95(r.information[:, 0, FEEDBACK.index("both")])}
    return out


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown tables."""
    s = report["settings"]
    lines = [f"World `{s['world']}`, prompts {s['prompts'] or 'built-in'}, reward `{s['reward']}`, "
             f"{s['episodes']} episodes per agent, seed {s['seed']}.", "",
             "| agent | return (95% CI) | " + " | ".join(f"turn {t + 1}" for t in range(s["horizon"]))
             + " | P(true type) | request kept | cos(request) |",
             "|---|---|" + "---|" * s["horizon"] + "---|---|---|"]
    for name, a in sorted(report["agents"].items(), key=lambda kv: -kv[1]["return_mean"]):
        turns = " | ".join(f"{u:.2f}" for u in a["per_turn_utility_mean"])
        lines.append(f"| {name} | {a['return_mean']:.2f} ± {a['return_ci95']:.2f} | {turns} | "
                     f"{a['true_type_mass_mean']:.2f} | {a['request_kept_rate']:.2f} | "
                     f"{a['request_cosine_mean']:.2f} |")
    lines += ["", "| gap | pair | paired difference (95% CI) |", "|---|---|---|"]
    for name, g in report["gaps"].items():
        lines.append(f"| {name} | {g['a']} - {g['b']} | {g['mean']:+.2f} ± {g['ci95']:.2f} |")
    lines += ["", "| check | value (95% CI) | result |", "|---|---|---|"]
    for c in report["checks"]:
        if "leaky" in c["check"] or "privileged" in c["check"]:
            value = f"{c['mean']:.0f} leaky steps"
        elif "limit" in c:
            value = f"{c['mean']:.2f} ± {c['ci95']:.2f} nats (limit {c['limit']:.2f})"
        else:
            value = f"{c['mean']:+.2f} ± {c['ci95']:.2f}"
        lines.append(f"| {c['check']} | {value} | {'pass' if c['passed'] else 'FAIL'} |")
    ch = report["feedback_channel"]
    lines += ["", f"The feedback channel on bayes's slates (type entropy {ch['type_entropy']:.2f} nats; "
              f"prior mass on the true type {ch['prior_true_type_mass']:.2f}):", "",
              "| | " + " | ".join(f"turn {t + 1}" for t in range(s["horizon"])) + " |",
              "|---|" + "---|" * s["horizon"]]
    b = ch["bayes"]
    lines.append("| P(true type) after the turn | " + " | ".join(f"{m:.2f}" for m in b["true_type_mass_per_turn"])
                 + " |")
    for what in FEEDBACK:
        lines.append(f"| nats told by the {what if what != 'both' else 'choice and reward'} | "
                     + " | ".join(f"{x:.2f}" for x in b["information_per_turn"][what]) + " |")
    lines += ["", f"Overall: {'valid' if report['passed'] else 'NOT valid'} ({report['elapsed_s']:.0f} s)."]
    return "\n".join(lines)
