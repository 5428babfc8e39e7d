"""The identity of a world: fingerprints of its parts, to tell whether a dataset came from this installation."""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np

from pasta_env.worlds import World

#: The parts of a world that a fingerprint covers, in order.
PARTS = ("encoder", "candidates", "images", "user_model", "initial_prompts")


def _feed(h, value: Any, depth: int = 0) -> None:
    """Hash a value: arrays by dtype, shape and bytes; objects by their attributes; the rest by repr."""
    if isinstance(value, np.ndarray) and value.dtype == object:  # texts: their content, not their pointers
        h.update(f"objects{value.shape}".encode())
        for v in value.reshape(-1):
            _feed(h, v, depth)
    elif isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(value, (list, tuple)):
        h.update(f"seq{len(value)}".encode())
        for v in value:
            _feed(h, v, depth)
    elif isinstance(value, dict):
        for k in sorted(value):
            h.update(str(k).encode())
            _feed(h, value[k], depth)
    elif isinstance(value, (str, int, float, bool, type(None), np.generic)):
        h.update(repr(value).encode())
    elif callable(getattr(value, "identity", None)):  # parts with weights describe themselves
        h.update(type(value).__qualname__.encode())
        _feed(h, value.identity(), depth)
    elif depth < 3:
        h.update(type(value).__qualname__.encode())
        names = [f.name for f in fields(value)] if is_dataclass(value) else sorted(vars(value))
        for name in names:
            if name.startswith("__"):
                continue
            h.update(name.encode())
            _feed(h, getattr(value, name), depth + 1)
    else:  # pragma: no cover - deeper object graphs are not part of a world's state
        h.update(type(value).__qualname__.encode())


def fingerprint_of(value: Any) -> str:
    """A short SHA-256 of a world part's state (its arrays and settings)."""
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()[:16]


def world_identity(world: World) -> dict[str, Any]:
    """Name, sizes and a fingerprint of every part of ``world``, JSON-ready.

    Two worlds with equal identities produce equal episodes from equal seeds
    and actions: the fingerprints cover the text encoder, the candidate
    generator (the synthetic one with its phrase texts and embeddings), the
    image model, the user model (every parameter) and the pool of initial
    prompts. Parts with weights fingerprint what their ``identity()``
    method reports (model names, revisions, settings).
    """
    return {
        "name": world.name,
        "dim": world.dim,
        "categories": list(world.candidates.categories),
        "user_types": list(world.user_model.type_names),
        "initial_prompts": int(len(world.initial_prompts)),
        "fingerprints": {part: fingerprint_of(getattr(world, part)) for part in PARTS},
    }


def identity_differences(recorded: dict[str, Any], current: dict[str, Any],
                         names: tuple[str, str] = ("the dataset", "this installation")) -> list[str]:
    """What differs between a recorded world identity and the current one, in words (empty: the same).

    ``names`` say whose the two identities are, for the messages.
    """
    first, second = names
    problems = []
    for key in ("name", "dim", "categories", "user_types", "initial_prompts"):
        if recorded.get(key) != current.get(key):
            problems.append(f"world {key}: {first} has {json.dumps(recorded.get(key))}, "
                            f"{second} {json.dumps(current.get(key))}")
    words = {"encoder": "text encoder", "candidates": "candidate generator (and its phrase space)",
             "images": "image model", "user_model": "user model", "initial_prompts": "initial-prompt pool"}
    rec, cur = recorded.get("fingerprints", {}), current.get("fingerprints", {})
    for part in PARTS:
        if rec.get(part) != cur.get(part):
            problems.append(f"the {words[part]} differs (fingerprint {rec.get(part)} in {first}, "
                            f"{cur.get(part)} in {second})")
    return problems


def same_world(facts: list[dict[str, Any]]) -> dict[str, Any]:
    """The first of several workers' facts (each with an ``identity``), if all built the same world.

    Raises:
        ValueError: Two workers built different worlds (the message names the first difference).
    """
    for i, other in enumerate(facts[1:], 1):
        problems = identity_differences(facts[0]["identity"], other["identity"], ("worker 0", f"worker {i}"))
        if problems:
            raise ValueError(f"the Ray workers do not build the same world: {problems[0]}; install the same "
                             "pasta-t2i, models and files on every node")
    return facts[0]
