"""The networks of PASTA's agent as d3rlpy encoder factories: a history encoder and the per-prompt critic.

The observation d3rlpy sees is the flat vector of :data:`OBSERVATION_KEYS`
(:func:`pasta_env.datasets.offline.flat_observation_layout` places them);
the action is the slate's prompt embeddings, ``L * d`` values.

* :class:`HistoryEncoder` reads the history: for each played turn the
  chosen prompt, the chosen image, how the chosen image differs from the
  other shown columns (the user's revealed preference) and the turn's
  reward (the user's rating, standardised by the training data's mean and
  spread; zero with its flag off where a turn was not rated), pooled over
  the played turns (``history_mask``: unplayed turns count for nothing),
  with the request, the current prompt and the turn.
* :class:`SlateCriticEncoder` is ``mean_{p in slate} g(h, p)``; d3rlpy's
  mean Q-function head is linear, so ``Q(h, P) = w . mean_p g(h, p) + b =
  mean_p f(h, p)`` with ``f(h, p) = w . g(h, p) + b``: the decomposed slate
  value, exactly, and :meth:`SlateCriticEncoder.per_prompt` gives ``g`` for
  any candidates.

Both factories register with d3rlpy, so a saved model loads with
``d3rlpy.load_learnable`` once this module is imported.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from pasta_env.datasets.layout import Layout
from pasta_env.datasets.offline import flat_observation_layout
from simulators.backends import require

require("d3rlpy", "PASTA's IQL agent")  # quietly, before the imports below
from d3rlpy.models.encoders import EncoderFactory, register_encoder_factory  # noqa: E402
from d3rlpy.models.torch import Encoder, EncoderWithAction  # noqa: E402

#: What the agent's networks read of an observation (the candidates come with the action instead).
OBSERVATION_KEYS: tuple[str, ...] = ("turn", "initial_prompt", "current_prompt", "history_prompts", "history_images",
                                     "history_choices", "history_mask", "history_rewards", "history_rated",
                                     "history_slate_images")


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class HistoryEncoder(Encoder):
    """``h = phi(history)``: ``(B, D)`` flat observations to ``(B, hidden)`` features."""

    def __init__(self, horizon: int, slate_size: int, dim: int, hidden: int, reward_shift: float = 0.0,
                 reward_scale: float = 1.0):
        super().__init__()
        self.slots = observation_slots(horizon, slate_size, dim)
        self.horizon, self.slate_size, self.dim = horizon, slate_size, dim
        self.reward_shift, self.reward_scale = reward_shift, reward_scale
        self.turn_net = _mlp([3 * dim + 2, hidden, hidden])
        self.head = _mlp([hidden + 2 * dim + horizon + 1, hidden, hidden])

    def part(self, x: torch.Tensor, key: str) -> torch.Tensor:
        a, b, shape = self.slots[key]
        return x[:, a:b].reshape(len(x), *shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.part(x, "history_mask")  # (B, H)
        chosen_prompt = self.part(x, "history_prompts")  # (B, H, d)
        chosen_image = self.part(x, "history_images")
        shown = self.part(x, "history_slate_images")  # (B, H, L, d)
        others = (shown.sum(dim=2) - chosen_image) / max(self.slate_size - 1, 1)
        rated = self.part(x, "history_rated")  # (B, H)
        rating = rated * (self.part(x, "history_rewards") - self.reward_shift) / self.reward_scale
        turns = self.turn_net(torch.cat([chosen_prompt, chosen_image, chosen_image - others, rating[..., None],
                                         rated[..., None]], dim=-1))
        pooled = (turns * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        turn = self.part(x, "turn").long().clamp(0, self.horizon)
        onehot = nn.functional.one_hot(turn, self.horizon + 1).to(x.dtype)
        return self.head(torch.cat([pooled, self.part(x, "initial_prompt"), self.part(x, "current_prompt"), onehot],
                                   dim=-1))


class SlateCriticEncoder(EncoderWithAction):
    """``mean_{p in slate} g(h, p)``: flat observations and ``(B, L * d)`` slates to ``(B, hidden)``."""

    def __init__(self, horizon: int, slate_size: int, dim: int, hidden: int, reward_shift: float = 0.0,
                 reward_scale: float = 1.0):
        super().__init__()
        self.history = HistoryEncoder(horizon, slate_size, dim, hidden, reward_shift, reward_scale)
        self.slate_size, self.dim = slate_size, dim
        self.prompt_net = _mlp([hidden + 2 * dim, hidden, hidden])

    def per_prompt(self, x: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """``g(h, p)`` for ``(B, n, d)`` prompts: ``(B, n, hidden)``."""
        h = self.history(x)
        request = self.history.part(x, "initial_prompt")
        n = prompts.shape[1]
        return self.prompt_net(torch.cat([h[:, None].expand(-1, n, -1), prompts,
                                          prompts * request[:, None]], dim=-1))

    def forward(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        slate = action.reshape(len(action), self.slate_size, self.dim)
        return self.per_prompt(x, slate).mean(dim=1)


@dataclasses.dataclass()
class PastaEncoderFactory(EncoderFactory):
    """d3rlpy factory of the history encoder (``create``) and the slate critic (``create_with_action``).

    Attributes:
        horizon, slate_size, dim: The env's ``H``, ``L`` and ``d``.
        hidden: Width of every hidden layer.
        reward_shift, reward_scale: The past rewards the history encoder
            reads are standardised as ``(r - shift) / scale`` (the trainer
            sets the training data's mean and standard deviation).
    """

    horizon: int = 5
    slate_size: int = 4
    dim: int = 64
    hidden: int = 256
    reward_shift: float = 0.0
    reward_scale: float = 1.0

    def create(self, observation_shape: Any) -> HistoryEncoder:
        self._check(observation_shape)
        return HistoryEncoder(self.horizon, self.slate_size, self.dim, self.hidden, self.reward_shift,
                              self.reward_scale)

    def create_with_action(self, observation_shape: Any, action_size: int,
                           discrete_action: bool = False) -> SlateCriticEncoder:
        self._check(observation_shape)
        if discrete_action or action_size != self.slate_size * self.dim:
            raise ValueError(f"the slate critic takes {self.slate_size} prompt embeddings of {self.dim} values "
                             f"({self.slate_size * self.dim} continuous values), got action size {action_size}")
        return SlateCriticEncoder(self.horizon, self.slate_size, self.dim, self.hidden, self.reward_shift,
                                  self.reward_scale)

    def _check(self, observation_shape: Any) -> None:
        want = observation_size(self.horizon, self.slate_size, self.dim)
        got = tuple(observation_shape)
        if got != (want,):
            raise ValueError(f"the history encoder reads flat observations of {want} values "
                             f"({', '.join(OBSERVATION_KEYS)}), got shape {got}")

    @staticmethod
    def get_type() -> str:
        return "pasta_t2i_v2"  # v2: the history holds the past rewards


def observation_slots(horizon: int, slate_size: int, dim: int) -> dict[str, tuple[int, int, tuple[int, ...]]]:
    """Where each of :data:`OBSERVATION_KEYS` sits in the flat observation the networks read."""
    # The candidates are not among the keys, so their count is any valid one.
    return flat_observation_layout(Layout(horizon, slate_size, slate_size, dim), OBSERVATION_KEYS)


def observation_size(horizon: int, slate_size: int, dim: int) -> int:
    """Length of the flat observation the networks read."""
    return max(b for _, b, _ in observation_slots(horizon, slate_size, dim).values())


register_encoder_factory(PastaEncoderFactory)
