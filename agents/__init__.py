"""Slate policies for PastaT2I and their registry.

``make_agent(name, world, config, seed)`` builds a registered agent; names:
``random``, ``random-diverse``, ``lmm``, ``popular``, ``greedy``, ``bayes``,
``planner``, ``oracle``. Agents with weights are named with their model:
``iql:PATH`` (PASTA's agent, :mod:`agents.offline.iql`, imported only then).
"""

from __future__ import annotations

from agents.base import Agent, best_per_category, top_diverse
from agents.baselines import LMMAgent, RandomAgent, RandomDiverseAgent
from agents.model_based import (
    BayesAgent,
    GreedyAgent,
    OracleAgent,
    PlannerAgent,
    PopularAgent,
    best_slates,
    candidate_utilities,
    type_log_posterior,
)

AGENTS: dict[str, type[Agent]] = {}


def register_agent(cls: type[Agent]) -> type[Agent]:
    """Register an agent class under its ``name`` (usable as a decorator).

    Raises:
        ValueError: Another class is already registered under that name.
    """
    if AGENTS.get(cls.name, cls) is not cls:
        raise ValueError(f"an agent named {cls.name!r} is already registered ({AGENTS[cls.name].__name__}); "
                         "give yours another name")
    AGENTS[cls.name] = cls
    return cls


for _cls in (RandomAgent, RandomDiverseAgent, LMMAgent, PopularAgent, GreedyAgent, BayesAgent,
             PlannerAgent, OracleAgent):
    register_agent(_cls)


#: Agents with weights: name -> "module:Class", imported when first asked for (they need torch and d3rlpy).
#: The class has ``load(path, world, config, seed)``.
AGENTS_WITH_WEIGHTS: dict[str, str] = {"iql": "agents.offline.iql:IQLAgent"}


def agent_names() -> list[str]:
    """Every agent name, those with weights written ``NAME:MODEL``."""
    return sorted([*AGENTS, *(f"{n}:MODEL" for n in AGENTS_WITH_WEIGHTS)])


def check_agent_spec(spec: str) -> None:
    """Raise ``ValueError`` if ``spec`` names no agent (before any work starts)."""
    name, sep, model = spec.partition(":")
    if name in AGENTS_WITH_WEIGHTS:
        if not model:
            raise ValueError(f"agent {name!r} needs a model: write {name}:PATH")
    elif name not in AGENTS or sep:
        what = f"agent {name!r} takes no model" if name in AGENTS else f"unknown agent {spec!r}"
        raise ValueError(f"{what}; known agents: {', '.join(agent_names())}")


def make_agent(name: str, world, config, seed: int | None = None) -> Agent:
    """Build a registered agent; ``NAME:MODEL`` loads an agent with weights (e.g. ``iql:models/iql``).

    Raises:
        ValueError: Unknown name (the message lists the known agents), or a
            model given to an agent without weights, or none to one with.
    """
    check_agent_spec(name)
    base, _, model = name.partition(":")
    if base in AGENTS_WITH_WEIGHTS:
        import importlib

        module, cls = AGENTS_WITH_WEIGHTS[base].split(":")
        return getattr(importlib.import_module(module), cls).load(model, world, config, seed)
    return AGENTS[name](world, config, seed)


__all__ = ["AGENTS", "AGENTS_WITH_WEIGHTS", "Agent", "BayesAgent", "GreedyAgent", "LMMAgent", "OracleAgent",
           "PlannerAgent", "PopularAgent", "RandomAgent", "RandomDiverseAgent", "agent_names", "best_per_category",
           "best_slates", "candidate_utilities", "check_agent_spec", "make_agent", "register_agent", "top_diverse",
           "type_log_posterior"]
