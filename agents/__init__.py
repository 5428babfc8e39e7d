"""Slate policies for PastaT2I and their registry.

``make_agent(name, world, config, seed)`` builds a registered agent; names:
``random``, ``random-diverse``, ``lmm``, ``popular``, ``greedy``, ``bayes``,
``bayes-diverse``, ``planner``, ``oracle``. Agents with weights are named with their model:
``iql:PATH`` (PASTA's agent, :mod:`agents.offline.iql`, imported only then).
The model-based agents that read the feedback with a user model
(``popular``, ``greedy``, ``bayes``, ``bayes-diverse``) also take a fitted
one, ``bayes:USER_MODEL`` (a checkpoint from ``pasta train-user-model``,
e.g. fitted to a trajectory dataset), instead of the simulator's.
"""

from __future__ import annotations

from typing import Any

from agents.base import Agent, best_per_category, top_diverse
from agents.baselines import LMMAgent, RandomAgent, RandomDiverseAgent
from agents.model_based import (
    BayesAgent,
    BayesDiverseAgent,
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


for _cls in (RandomAgent, RandomDiverseAgent, LMMAgent, PopularAgent, GreedyAgent, BayesAgent, BayesDiverseAgent,
             PlannerAgent, OracleAgent):
    register_agent(_cls)


#: Agents with weights: name -> "module:Class" (imported when first asked for: they need torch and d3rlpy),
#: or the class itself. The class has ``load(path, world, config, seed)``.
AGENTS_WITH_WEIGHTS: dict[str, str | type] = {"iql": "agents.offline.iql:IQLAgent"}
#: The entry-point group through which other packages register agents: ``name = "module:Class"``. A class
#: with ``needs_model = True`` is named ``NAME:MODEL`` and built by its ``load(path, world, config, seed)``.
ENTRY_POINT_GROUP = "pasta_t2i.agents"


def _declared() -> dict[str, Any]:
    """Agents other packages declare (entry points not yet loaded), by name; registered names win."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)
            if ep.name not in AGENTS and ep.name not in AGENTS_WITH_WEIGHTS}


def _find(name: str) -> None:
    """Register a declared agent ``name`` now (import its class), if a package declares one."""
    ep = _declared().get(name)
    if ep is None:
        return
    cls = ep.load()
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise ValueError(f"entry point {ep.value!r} of agent {name!r} is not an agents.Agent subclass")
    if getattr(cls, "needs_model", False):
        AGENTS_WITH_WEIGHTS[name] = cls
    else:
        AGENTS[name] = cls


def takes_user_model(name: str) -> bool:
    """Whether the registered agent ``name`` can be built on a fitted user model (``NAME:USER_MODEL``)."""
    return bool(getattr(AGENTS.get(name), "takes_user_model", False))


def agent_names() -> list[str]:
    """Every agent name, those with weights written ``NAME:MODEL``, those other packages declare included."""
    return sorted([*AGENTS, *(f"{n}:MODEL" for n in AGENTS_WITH_WEIGHTS), *_declared()])


def check_agent_spec(spec: str) -> None:
    """Raise ``ValueError`` if ``spec`` names no agent (before any work starts)."""
    name, sep, model = spec.partition(":")
    if name not in AGENTS and name not in AGENTS_WITH_WEIGHTS:
        _find(name)
    if name in AGENTS_WITH_WEIGHTS:
        if not model:
            raise ValueError(f"agent {name!r} needs a model: write {name}:PATH")
    elif name in AGENTS and sep and takes_user_model(name):
        if not model:
            raise ValueError(f"{spec!r}: give the user-model checkpoint after the colon ({name}:USER_MODEL), or "
                             f"write {name} alone for the simulator's user model")
    elif name not in AGENTS or sep:
        fitted = ", ".join(n for n in AGENTS if takes_user_model(n))
        what = (f"agent {name!r} takes no model (only {fitted} take a fitted user model, as NAME:USER_MODEL)"
                if name in AGENTS else f"unknown agent {spec!r}")
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
        cls = AGENTS_WITH_WEIGHTS[base]
        if isinstance(cls, str):
            import importlib

            module, attr = cls.split(":")
            cls = getattr(importlib.import_module(module), attr)
        return cls.load(model, world, config, seed)  # type: ignore[union-attr]
    if model:
        return AGENTS[base].load(model, world, config, seed)  # type: ignore[attr-defined]
    return AGENTS[name](world, config, seed)


__all__ = ["AGENTS", "AGENTS_WITH_WEIGHTS", "Agent", "BayesAgent", "BayesDiverseAgent", "GreedyAgent", "LMMAgent",
           "OracleAgent", "PlannerAgent", "PopularAgent", "RandomAgent", "RandomDiverseAgent", "agent_names",
           "best_per_category", "best_slates", "candidate_utilities", "check_agent_spec", "make_agent",
           "register_agent", "takes_user_model", "top_diverse", "type_log_posterior"]
