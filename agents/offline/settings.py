"""How PASTA's IQL agent is trained: a plain dataclass, importable without torch or d3rlpy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IQLSettings:
    """How to train.

    Attributes:
        steps: Gradient steps.
        batch_size: Transitions per step (drawn from the datasets in ``mix`` shares).
        expectile: IQL's expectile ``tau`` of the value function (0.5: the mean; higher: optimistic).
        weight_temp: IQL's advantage temperature (actor only).
        gamma: Discount (1.0: the episode return, as the env's horizon is fixed).
        hidden: Width of the networks' hidden layers.
        critic_lr, actor_lr: Adam learning rates.
        n_critics: Critics in the ensemble (acting takes their minimum).
        eval_every: Evaluate the agent in the env every this many steps (0: only at the end).
        eval_episodes: Episodes per evaluation (the same users every time).
        log_every: Record the losses every this many steps.
        seed: Seed of initialisation and batch sampling.
        compile_graph: d3rlpy's ``compile_graph`` (``torch.compile`` and CUDA graphs; GPU).
    """

    steps: int = 3000
    batch_size: int = 256
    expectile: float = 0.7
    weight_temp: float = 3.0
    gamma: float = 1.0
    hidden: int = 128
    critic_lr: float = 3e-4
    actor_lr: float = 3e-4
    n_critics: int = 2
    eval_every: int = 500
    eval_episodes: int = 500
    log_every: int = 100
    seed: int = 0
    compile_graph: bool = False

    def __post_init__(self):
        for name in ("steps", "batch_size", "hidden", "n_critics", "eval_episodes", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {self.eval_every}")
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {self.expectile}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
