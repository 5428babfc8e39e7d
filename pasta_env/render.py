"""Text rendering of a PastaT2I turn (the ``"ansi"`` render mode)."""

from __future__ import annotations

from pasta_env.core import BatchCore, ShardedCore


def render_turn(core: BatchCore | ShardedCore, row: int = 0) -> str:
    """Describe the current state of episode ``row`` as text.

    Shows the current prompt and, after a step, the slate that was shown
    with each column's category and the user's pick; each column's utility
    and choice probability only when the env exposes the user type (they
    belong to the hidden user).
    """
    core, row = core.locate(row)
    world, cfg = core.world, core.config
    space, cats = world.space, world.candidates.categories
    lines = [f"turn {core.turn}/{cfg.horizon}  prompt: {space.text(core.cur[row])}"]
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
                     f"{space.text(core.slate_prompts[row, col])}")
    lines.append(f"user picked column {int(core.choice[row])}")
    return "\n".join(lines) + "\n"
