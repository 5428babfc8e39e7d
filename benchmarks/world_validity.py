"""The world-validity report: does a world reward what PASTA is about, and nothing else?

Runs every reference agent and two exploit probes on the same users (common
random numbers) and checks:

* **bracketing**: oracle > bayes > greedy > lmm > random and bayes > popular,
  each paired gap beyond its 95% CI; planner not below bayes beyond its CI;
* **the gaps** that say what the world rewards: adaptation (bayes - popular),
  knowing the user (oracle - bayes), planning ahead (planner - bayes);
* **exploits** that must not beat the oracle: showing one prompt in every
  column (with the true type), and reading the hidden type from ``info``
  (an agent that matches ``info``'s utilities or choice probabilities
  against each type's predictions, when they are there);
* **identifiability**: posterior mass on the true type after the last turn,
  against the prior's;
* **intent retention**: how often the last chosen prompt still holds the
  user's request, and its cosine to the request, per agent.

``python -m benchmarks.world_validity --episodes 2000 --seed 0`` or
``pasta validate-world``; writes JSON with ``--json``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from agents.base import Agent
from agents.evaluation import EvaluationResult, ci95, evaluate
from agents.model_based import BayesAgent, OracleAgent, candidate_utilities
from pasta_env.config import EnvConfig
from pasta_env.env import PRIVILEGED_INFO_KEYS, build_world

AGENTS = ("random", "lmm", "popular", "greedy", "bayes", "planner", "oracle")
#: (better, worse): each must win beyond its paired 95% CI.
ORDER = (("oracle", "bayes"), ("bayes", "greedy"), ("greedy", "lmm"), ("lmm", "random"), ("bayes", "popular"))
GAPS = {"adaptation": ("bayes", "popular"), "knowing the user": ("oracle", "bayes"),
        "planning ahead": ("planner", "bayes")}


class DuplicateExploit(Agent):
    """Probe: the true type's best candidate in every column (what a repeated index would buy)."""

    name = "exploit-duplicates"
    privileged = True

    def act_batch(self, obs, info):
        types = np.asarray(info["user_type"]).reshape(-1)
        util = candidate_utilities(obs, self.world.user_model)  # (N, K, C)
        best = util[np.arange(len(types)), types].argmax(axis=1)
        return np.repeat(best[:, None], self.config.slate_size, axis=1)


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
        num_envs: int = 1024, progress: bool = True, world_kwargs: dict | None = None) -> dict[str, Any]:
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
    """
    start = time.perf_counter()
    config = EnvConfig()
    probe_world = build_world(world, prompts, config.num_candidates, world_kwargs)
    info_probe = InfoExploit(probe_world, config, seed=seed)
    probes = [DuplicateExploit(probe_world, config, seed=seed), info_probe]
    result = evaluate([*AGENTS, *probes], episodes=episodes, seed=seed, num_envs=num_envs,
                      progress=progress, world=probe_world)
    checks = []
    for a, b in ORDER:
        d = _diff(result, a, b)
        checks.append({"check": f"{a} > {b}", **d, "passed": d["mean"] > d["ci95"]})
    d = _diff(result, "planner", "bayes")
    checks.append({"check": "planner >= bayes (within CI)", **d, "passed": d["mean"] + d["ci95"] >= 0})
    for probe in probes:
        d = _diff(result, probe.name, "oracle")
        checks.append({"check": f"{probe.name} does not beat oracle", **d, "passed": not d["mean"] > d["ci95"]})
    checks.append({"check": "no privileged info reaches a non-privileged agent",
                   "mean": float(info_probe.leaky_steps), "ci95": 0.0, "passed": info_probe.leaky_steps == 0})
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
        "elapsed_s": round(time.perf_counter() - start, 2),
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown tables."""
    s = report["settings"]
    lines = [f"World `{s['world']}`, prompts {s['prompts'] or 'built-in'}, {s['episodes']} episodes per agent, "
             f"seed {s['seed']}.", "",
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
    lines += ["", "| check | paired difference (95% CI) | result |", "|---|---|---|"]
    for c in report["checks"]:
        value = f"{c['mean']:+.2f} ± {c['ci95']:.2f}" if "beat" in c["check"] or ">" in c["check"] \
            else f"{c['mean']:.0f} leaky steps"
        lines.append(f"| {c['check']} | {value} | {'pass' if c['passed'] else 'FAIL'} |")
    ident = report["identifiability"]
    lines += ["", f"Identifiability: posterior mass on the true type after the last turn, bayes "
              f"{ident['bayes']:.2f}, planner {ident['planner']:.2f} (prior {ident['prior_true_type_mass']:.2f}).",
              f"Overall: {'valid' if report['passed'] else 'NOT valid'} ({report['elapsed_s']:.0f} s)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.world_validity ARGS`` is ``pasta validate-world ARGS``."""
    import sys

    from pasta_cli.main import main as pasta

    return pasta(["validate-world", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
