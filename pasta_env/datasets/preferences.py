"""A trajectory dataset as preference data: every episode's choices (and ratings) for fitting a user model.

``pasta train-user-model --data DATASET`` reads a folder made by
``pasta generate`` through :func:`trajectory_preferences`: each episode is
one user (its hidden type is never read for fitting; it is kept as the
``true_types`` label for evaluation, as the synthetic preference data keeps
it), each turn one choice record whose slate holds the columns' mean image
embeddings (one image per column, what the dataset stores) and whose
``reward`` is the turn's reward, when the env's reward is one a person's
rating would be (:data:`pasta_env.rewards.STOCHASTIC_REWARDS`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pasta_env.rewards import STOCHASTIC_REWARDS
from simulators.preferences.data import PreferenceData, empty_records


def is_trajectory_dataset(folder: str | Path) -> bool:
    """Whether ``folder`` holds a trajectory dataset (``manifest.json``) rather than preference ``.jsonl`` files."""
    from pasta_env.datasets.manifest import MANIFEST

    return (Path(folder) / MANIFEST).is_file()


def read_preferences(folder: str | Path, episodes: int | None = None) -> PreferenceData:
    """Preference data (``.jsonl`` files) or a trajectory dataset (``manifest.json``: one user per episode).

    ``episodes`` reads only a trajectory dataset's first episodes (an error for ``.jsonl`` data).
    """
    from simulators.preferences.data import read_dataset

    if is_trajectory_dataset(folder):
        return trajectory_preferences(folder, episodes)
    if episodes is not None:
        raise ValueError(f"--episodes reads the first episodes of a trajectory dataset; {folder} holds preference "
                         "records (.jsonl): leave --episodes out")
    return read_dataset(folder)


def trajectory_preferences(folder: str | Path | list[str | Path], episodes: int | None = None,
                           rewards: bool = True) -> PreferenceData:
    """The choices and ratings of a trajectory dataset, one user per episode.

    Args:
        folder: A dataset folder made by ``pasta generate``, or a list of
            them (of one world; their users are put together).
        episodes: Read only the first this many episodes (``None``: all).
        rewards: Attach each turn's reward to its choice record when the
            dataset's reward is stochastic (``experienced``); a deterministic
            reward names the type and is never read.

    Returns:
        :class:`PreferenceData` with ``choices`` records (``reward`` among
        them when read) and the episodes' hidden types as ``true_types``.
    """
    from pasta_env.datasets import load

    if isinstance(folder, (list, tuple)):
        parts = [trajectory_preferences(f, episodes, rewards) for f in folder]
        if len({p.dim for p in parts}) > 1 or len({"reward" in p.choices for p in parts}) > 1:
            raise ValueError("the datasets differ in embedding size or reward; fit a user model to one world's data")
        return _concatenate(parts)
    ds = load(folder)
    a = ds.arrays(("last_images", "last_choice", "actions", "rewards", "request", "user_type", "candidates"))
    E = len(a["request"]) if episodes is None else min(int(episodes), len(a["request"]))
    if E < 1:
        raise ValueError(f"{folder}: no episode to read")
    H, L, d = ds.layout.horizon, ds.layout.slate_size, ds.layout.dim
    request = np.asarray(a["request"][:E], np.float32)  # (E, d)
    images = np.asarray(a["last_images"][:E, 1:], np.float32).reshape(-1, d)  # (E*H*L, d): turn t's columns
    rows = np.arange(E)[:, None, None]
    turns = np.arange(H)[None, :, None]
    shown = np.asarray(a["candidates"][:E, :H][rows, turns, a["actions"][:E]], np.float32)  # (E, H, L, d)
    n = E * H
    choices: dict[str, np.ndarray] = {
        "user": np.repeat(np.arange(E), H),
        "request": np.repeat(np.arange(E), H),
        "prompt": (E + np.arange(n * L)).reshape(n, L),
        "image": np.arange(n * L).reshape(n, L, 1),
        "chosen": np.asarray(a["last_choice"][:E, 1:], np.int64).reshape(-1),
    }
    reward_kind = ds.manifest["env_kwargs"].get("reward", "experienced")
    if rewards and reward_kind in STOCHASTIC_REWARDS:
        choices["reward"] = np.asarray(a["rewards"][:E], np.float32).reshape(-1)
    return PreferenceData(
        prompt_emb=np.concatenate([request, shown.reshape(-1, d)]), image_emb=images,
        users=tuple(f"episode-{int(s)}" for s in np.arange(E)), pairs=empty_records("pairs"),
        ratings=empty_records("ratings"),
        choices=choices, true_types=np.asarray(a["user_type"][:E], np.int64),
        type_names=tuple(ds.manifest["world"].get("user_types", ())))


def _concatenate(parts: list[PreferenceData]) -> PreferenceData:
    """The users and records of several :func:`trajectory_preferences` results (choices only), renumbered."""
    users, prompts, images = 0, 0, 0
    choices: dict[str, list[np.ndarray]] = {k: [] for k in parts[0].choices}
    for p in parts:
        shift = {"user": users, "request": prompts, "prompt": prompts, "image": images}
        for k, v in p.choices.items():
            choices[k].append(v + shift[k] if k in shift else v)
        users, prompts, images = users + p.num_users, prompts + len(p.prompt_emb), images + len(p.image_emb)
    types = [p.true_types for p in parts]
    known = [t for t in types if t is not None]
    return PreferenceData(
        prompt_emb=np.concatenate([p.prompt_emb for p in parts]),
        image_emb=np.concatenate([p.image_emb for p in parts]),
        users=tuple(f"{i}:{u}" for i, p in enumerate(parts) for u in p.users), pairs=parts[0].pairs,
        ratings=parts[0].ratings, choices={k: np.concatenate(v) for k, v in choices.items()},
        true_types=np.concatenate(known) if len(known) == len(types) else None, type_names=parts[0].type_names)
