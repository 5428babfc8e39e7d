"""Slate policies for PastaT2I and their registry.

``make_agent(name, world, config, seed)`` builds a registered agent; names:
``random``, ``random-diverse``, ``lmm``, ``greedy``, ``oracle``.
"""

from __future__ import annotations

from agents.base import Agent, best_per_category, top_diverse
from agents.baselines import LMMAgent, RandomAgent, RandomDiverseAgent
from agents.model_based import GreedyAgent, OracleAgent, type_log_posterior

AGENTS: dict[str, type[Agent]] = {
    cls.name: cls for cls in (RandomAgent, RandomDiverseAgent, LMMAgent, GreedyAgent, OracleAgent)
}


def register_agent(cls: type[Agent]) -> type[Agent]:
    """Register an agent class under its ``name`` (usable as a decorator)."""
    AGENTS[cls.name] = cls
    return cls


def make_agent(name: str, world, config, seed: int | None = None) -> Agent:
    """Build a registered agent.

    Raises:
        ValueError: Unknown name; the message lists the known agents.
    """
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; known agents: {', '.join(sorted(AGENTS))}")
    return AGENTS[name](world, config, seed)


__all__ = ["AGENTS", "Agent", "GreedyAgent", "LMMAgent", "OracleAgent", "RandomAgent",
           "RandomDiverseAgent", "best_per_category", "make_agent", "register_agent", "top_diverse",
           "type_log_posterior"]
