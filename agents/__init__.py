"""Slate policies for PastaT2I and their registry.

``make_agent(name, world, config, seed)`` builds a registered agent; names:
``random``, ``random-diverse``, ``lmm``, ``popular``, ``greedy``, ``bayes``,
``planner``, ``oracle``.
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


def make_agent(name: str, world, config, seed: int | None = None) -> Agent:
    """Build a registered agent.

    Raises:
        ValueError: Unknown name; the message lists the known agents.
    """
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; known agents: {', '.join(sorted(AGENTS))}")
    return AGENTS[name](world, config, seed)


__all__ = ["AGENTS", "Agent", "BayesAgent", "GreedyAgent", "LMMAgent", "OracleAgent", "PlannerAgent",
           "PopularAgent", "RandomAgent", "RandomDiverseAgent", "best_per_category", "best_slates",
           "candidate_utilities", "make_agent", "register_agent", "top_diverse", "type_log_posterior"]
