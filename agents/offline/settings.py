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
        critic: ``"mean"``: PASTA's decomposed slate value ``mean_p f(h, p)``;
            ``"mixture"``: the belief-weighted inclusive value of the slate
            (:class:`agents.offline.encoders.SlateCriticEncoder`; needs a belief).
        belief_types: Latent user types of the history encoder's belief (0: no
            belief; taken from ``user_model`` when one is given).
        belief_hidden: Hidden units of the belief's user model (taken from ``user_model`` when given).
        user_model: A user-model checkpoint the belief starts from (``pasta
            train-user-model --data`` on the training data), or ``None``
            (a belief, if any, starts at random).
        one_per_category: Act with at most one prompt per category (PASTA's
            rule); off: the best slate by the critic over all of them.
        belief_loss: Weight of an auxiliary loss on the belief's user model:
            minus the log-likelihood of each batch history's choices and
            rewards (the user model's own objective), added to the critic's
            loss so the belief learns to explain the feedback while the
            critic learns values (0: the belief learns from the TD loss alone).
        belief_lr: Learning rate of the belief's parameters (a user model
            trains at a far higher rate than the critic; EM's is 3e-2).
        train_actor: Also train IQL's actor every step, as d3rlpy's
            ``update`` does. The agent never uses it (it acts with the
            critic), so by default only the critic and value function are
            stepped: the same critic update, a third less work.
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
    critic: str = "mean"
    belief_types: int = 0
    belief_hidden: int = 32
    user_model: str | None = None
    one_per_category: bool = True
    belief_loss: float = 0.0
    belief_lr: float = 3e-4
    train_actor: bool = False

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
        if self.critic not in ("mean", "mixture"):
            raise ValueError(f"critic must be mean or mixture, got {self.critic!r}")
        if self.belief_types < 0 or self.belief_hidden < 1:
            raise ValueError(f"belief_types must be >= 0 and belief_hidden >= 1, got {self.belief_types} and "
                             f"{self.belief_hidden}")
        if not (self.belief_loss >= 0 and self.belief_lr > 0):
            raise ValueError(f"belief_loss must be >= 0 and belief_lr > 0, got {self.belief_loss} and {self.belief_lr}")
        if self.critic == "mixture" and not (self.belief_types or self.user_model):
            raise ValueError("the mixture critic needs a belief over user types: give belief_types (e.g. 8) or a "
                             "user_model to start it from")
