"""The dataset's manifest: what was generated, how, from which world, with checksums; written last."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pasta_env.stats import ci95
from simulators.files import FileFormatError

MANIFEST = "manifest.json"
TURNS_FILE = "turns.parquet"
PARTIAL = ".partial"


class IncompleteDatasetError(FileFormatError):
    """The folder holds a dataset whose generation has not finished (no manifest yet)."""


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Read ``<folder>/manifest.json``.

    Raises:
        FileFormatError: ``folder`` is missing, is not a dataset, or its manifest is damaged.
        IncompleteDatasetError: Generation started there but has not finished.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileFormatError(f"dataset folder {str(folder)!r} does not exist" if not folder.exists()
                              else f"{str(folder)!r} is a file, not a dataset folder")
    path = folder / MANIFEST
    if not path.is_file():
        if (folder / PARTIAL).is_dir():
            raise IncompleteDatasetError(
                f"{str(folder)!r} holds an unfinished dataset (no {MANIFEST} yet); rerun the same "
                "`pasta generate` command to finish it")
        raise FileFormatError(f"{str(folder)!r} is not a pasta-t2i dataset (no {MANIFEST}); make one with "
                              "`pasta generate --out DIR`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"{path}: damaged manifest ({exc}); regenerate the dataset") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != "pasta-t2i trajectories":
        raise FileFormatError(f"{path}: not a pasta-t2i dataset manifest")
    if manifest.get("format_version") != 1:
        raise FileFormatError(f"{path}: dataset format version {manifest.get('format_version')!r}; this "
                              "pasta-t2i reads version 1; upgrade pasta-t2i or regenerate the dataset")
    return manifest


def returns_summary(rewards: np.ndarray) -> dict[str, Any]:
    """Mean return with a 95% CI, spread and the mean reward per turn, from ``(E, H)`` rewards."""
    returns = rewards.sum(axis=1)
    sd = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
    return {"mean": float(returns.mean()), "ci95": ci95(returns),
            "std": sd, "min": float(returns.min()), "max": float(returns.max()),
            "per_turn_mean": rewards.mean(axis=0).tolist()}


#: Keys of a manifest's ``env_kwargs`` that are not :class:`~pasta_env.config.EnvConfig` fields.
WORLD_KEYS = ("world", "prompts", "world_kwargs")


def env_config_of(env_kwargs: dict[str, Any], **overrides: Any):
    """The :class:`~pasta_env.config.EnvConfig` a dataset's env ran with (``overrides`` replace fields)."""
    from pasta_env.config import EnvConfig

    return EnvConfig(**{**{k: v for k, v in env_kwargs.items() if k not in WORLD_KEYS}, **overrides})


def world_of(env_kwargs: dict[str, Any]):
    """Rebuild the world a dataset's env ran on, with the world options it recorded.

    Raises:
        ValueError, OSError, DependencyNotInstalled: The world cannot be built here.
    """
    from pasta_env.worlds import build_world

    return build_world(env_kwargs["world"], env_kwargs["prompts"], env_kwargs["num_candidates"],
                       env_kwargs.get("world_kwargs"))
