"""Rendering of a PastaT2I turn: text (``"ansi"``) and the image grid (``"rgb_array"``)."""

from __future__ import annotations

import functools

import numpy as np

from pasta_env.core import BatchCore, ShardedCore
from simulators.images.pixels import slate_grid

#: Side of a tile in the synthetic world's frame (it has no pixels: tiles are coloured by embedding).
TILE = 48


def render_turn(core: BatchCore | ShardedCore, row: int = 0) -> str:
    """Describe the current state of episode ``row`` as text.

    Shows the current prompt and, after a step, the slate that was shown
    with each column's category and the user's pick; each column's utility
    and choice probability only when the env exposes the user type (they
    belong to the hidden user).
    """
    core, row = core.locate(row)
    world, cfg = core.world, core.config
    cats = world.candidates.categories
    lines = [f"turn {core.turn}/{cfg.horizon}  prompt: {core.cur[row].text()}"]
    if core.turn == 0:
        lines.append(f"initial prompt; {cfg.num_candidates} candidates proposed")
        return "\n".join(lines) + "\n"
    lines.append("slate shown last turn:")
    for col in range(cfg.slate_size):
        idx = int(core.slate[row, col])
        mark = "->" if col == core.choice[row] else "  "
        private = (f"utility {core.utilities[row, col]:6.2f}  p={core.choice_probs[row, col]:.2f}  "
                   if cfg.expose_user_type else "")
        lines.append(f" {mark} [{col}] #{idx:<2d} {cats[core.categories[idx]]:<14s} {private}"
                     f"{core.slate_prompts[row, col].text()}")
    lines.append(f"user picked column {int(core.choice[row])}")
    return "\n".join(lines) + "\n"


def render_frame(core: BatchCore | ShardedCore, row: int = 0) -> np.ndarray:
    """The ``L x M`` grid of the last slate of episode ``row``, the chosen column framed.

    A world with pixels shows its images; the synthetic world, which has
    none, shows each image as a tile coloured by a fixed projection of its
    embedding (similar images, similar colours). Before the first step the
    grid is blank.

    Returns:
        An ``(H, W, 3)`` uint8 RGB frame.
    """
    core, row = core.locate(row)
    cfg = core.config
    L, M = cfg.slate_size, cfg.images_per_prompt
    if core.turn == 0:
        return slate_grid(np.full((L, M, TILE, TILE, 3), 230, np.uint8))
    if core.pixels is not None:
        return slate_grid(core.pixels[row], chosen=int(core.choice[row]))
    rgb = 0.5 + 0.5 * np.tanh(core.images[row] @ _projection(core.world.dim))  # (L, M, 3)
    tiles = np.broadcast_to((rgb * 255).astype(np.uint8)[:, :, None, None, :], (L, M, TILE, TILE, 3))
    return slate_grid(tiles, chosen=int(core.choice[row]))


@functools.cache
def _projection(dim: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((dim, 3)).astype(np.float32) * 2.0
