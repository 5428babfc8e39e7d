"""Typed configuration of the PastaT2I environment; defaults are the paper's numbers."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pasta_env.rewards import REWARDS, check_reward

__all__ = ["REWARDS", "EnvConfig"]


@dataclass(frozen=True)
class EnvConfig:
    """Sizes and reward of the MDP.

    Attributes:
        num_candidates: Candidate prompts per turn, ``L_C``; the world says which
            counts it can propose (the synthetic world: 5, 10, 15, 20 or 25).
        slate_size: Prompts shown per turn, ``L``.
        images_per_prompt: Images rendered per shown prompt, ``M``.
        horizon: Turns per episode, ``H``.
        reward: ``"experienced"`` (the chosen column's utility with the user's
            taste shock; its expectation is the slate's inclusive value),
            ``"chosen-utility"`` or ``"expected-utility"`` (the exact utility of
            the chosen column, or its expectation: both identify the user type;
            see :mod:`pasta_env.rewards`).
        expose_user_type: Put the hidden user type in ``info`` (oracles, analysis).
    """

    num_candidates: int = 25
    slate_size: int = 4
    images_per_prompt: int = 4
    horizon: int = 5
    reward: str = "experienced"
    expose_user_type: bool = False

    def __post_init__(self):
        for name in ("num_candidates", "slate_size", "images_per_prompt", "horizon"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.slate_size > self.num_candidates:
            raise ValueError(f"slate_size ({self.slate_size}) must not exceed num_candidates "
                             f"({self.num_candidates}): a slate shows distinct candidates")
        check_reward(self.reward)

    def to_dict(self) -> dict:
        """The configuration as a JSON-ready dict."""
        return asdict(self)
