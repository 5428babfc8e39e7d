"""The networks of PASTA's agent as d3rlpy encoder factories: a history encoder and the slate critic.

The observation d3rlpy sees is the flat vector of :data:`OBSERVATION_KEYS`
(:func:`pasta_env.datasets.offline.flat_observation_layout` places them);
the action is the slate's prompt embeddings, ``L * d`` values.

* :class:`HistoryEncoder` reads the history: for each played turn the
  chosen prompt, the chosen image, how the chosen image differs from the
  other shown columns (the user's revealed preference) and the turn's
  reward (the user's rating, standardised by the training data's mean and
  spread; zero with its flag off where a turn was not rated), pooled over
  the played turns (``history_mask``: unplayed turns count for nothing),
  with the request, the current prompt and the turn; optionally a
  :class:`TypeBelief`, a user model's Bayes filter over latent types that
  reads the same choices and ratings (started from a user model fitted to
  the data, or at random), whose belief joins the features.
* :class:`SlateCriticEncoder`, PASTA's ``mean`` critic, is
  ``mean_{p in slate} g(h, p)``; d3rlpy's mean Q-function head is linear,
  so ``Q(h, P) = w . mean_p g(h, p) + b = mean_p f(h, p)`` with
  ``f(h, p) = w . g(h, p) + b``: the decomposed slate value, exactly, and
  :meth:`SlateCriticEncoder.per_prompt` gives ``g`` for any candidates.
  The ``mixture`` critic is instead ``sum_k b_k IV_k(slate)``, the belief-
  weighted inclusive value of the slate (the default reward's structure),
  which a per-prompt sum cannot express: under it showing one prompt for
  each likely type pays, and the best slate is found by bayes's search.

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


#: The slate critics: PASTA's decomposed mean, and the belief-weighted inclusive value.
CRITICS: tuple[str, ...] = ("mean", "mixture")


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class TypeBelief(nn.Module):
    """A belief over ``K`` latent user types read from the history: a user model's Bayes filter, in torch.

    Holds a trunk-and-heads user model (:class:`simulators.users.em.TorchUserModel`:
    each type's utility of an image for a request). A played turn counts
    ``log softmax(tau * u_k(shown columns))[chosen]`` and, for a rated turn,
    the experienced reward's log density under type ``k`` (Gumbel with
    location the columns' inclusive value less ``gamma / tau``, scale
    ``1 / tau``; :mod:`pasta_env.rewards`); the belief is the softmax of the
    prior plus the sums. Its weights start from a user model fitted to the
    training data (``pasta train-user-model --data``; see
    :func:`init_belief`) or at random, and are trained with the critic.
    """

    def __init__(self, dim: int, num_types: int, hidden: int):
        super().__init__()
        from simulators.users.em import TorchUserModel

        self.users = TorchUserModel(dim, num_types, hidden)

    def utilities(self, request: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``(B, ..., K)`` each type's utility of ``(B, ..., d)`` prompt or image embeddings for ``(B, d)`` requests."""
        shape = (request.shape[0],) + (1,) * (items.dim() - 2) + (request.shape[1],)
        return self.users.scores(request.reshape(shape), items)

    def forward(self, request, slate_images, choices, rewards, rated, mask) -> torch.Tensor:
        """``(B, K)`` belief from ``(B, H, L, d)`` shown columns, ``(B, H)`` choices, rewards and masks."""
        return torch.softmax(self.log_joint(request, slate_images, choices, rewards, rated, mask), dim=1)

    def log_joint(self, request, slate_images, choices, rewards, rated, mask) -> torch.Tensor:
        """``(B, K)``: ``log P(type k) + log P(the history's choices and rewards | type k)``."""
        from simulators.users.em import slate_log_likelihoods

        util = self.utilities(request, slate_images)  # (B, H, L, K)
        chosen = choices.long().clamp(0, util.shape[2] - 1)  # unplayed turns hold -1; the mask drops them
        choice, reward = slate_log_likelihoods(self.users.log_tau, util, chosen, rewards)
        loglik = choice + rated[..., None] * reward  # (B, H, K)
        return self.users.log_prior + (loglik * mask[..., None]).sum(dim=1)


class HistoryEncoder(Encoder):
    """``h = phi(history)``: ``(B, D)`` flat observations to ``(B, hidden)`` features.

    With ``belief_types > 0`` a :class:`TypeBelief` reads the choices and
    ratings too, and its belief joins the features.
    """

    def __init__(self, horizon: int, slate_size: int, dim: int, hidden: int, reward_shift: float = 0.0,
                 reward_scale: float = 1.0, belief_types: int = 0, belief_hidden: int = 32):
        super().__init__()
        self.slots = observation_slots(horizon, slate_size, dim)
        self.horizon, self.slate_size, self.dim = horizon, slate_size, dim
        self.reward_shift, self.reward_scale = reward_shift, reward_scale
        self.turn_net = _mlp([3 * dim + 2, hidden, hidden])
        self.belief = TypeBelief(dim, belief_types, belief_hidden) if belief_types else None
        self.head = _mlp([hidden + 2 * dim + horizon + 1 + belief_types, hidden, hidden])

    def part(self, x: torch.Tensor, key: str) -> torch.Tensor:
        a, b, shape = self.slots[key]
        return x[:, a:b].reshape(len(x), *shape)

    def _history(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.part(x, k) for k in ("initial_prompt", "history_slate_images", "history_choices",
                                               "history_rewards", "history_rated", "history_mask"))

    def type_belief(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` the belief over latent types (needs ``belief_types > 0``)."""
        assert self.belief is not None
        return self.belief(*self._history(x))

    def history_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """``(B,)`` log marginal likelihood of each history's choices and rewards under the belief's user model
        (what the ``belief_loss`` maximises: EM's objective, by gradient, on the training batches)."""
        assert self.belief is not None
        return torch.logsumexp(self.belief.log_joint(*self._history(x)), dim=1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(h, belief)``: the features and the belief over latent types (``None`` without one)."""
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
        parts = [pooled, self.part(x, "initial_prompt"), self.part(x, "current_prompt"), onehot]
        belief = self.type_belief(x) if self.belief is not None else None
        if belief is not None:
            parts.append(belief)
        return self.head(torch.cat(parts, dim=-1)), belief

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]


class SlateCriticEncoder(EncoderWithAction):
    """The slate critic's features: ``(B, D)`` flat observations and ``(B, L * d)`` slates.

    ``critic="mean"`` (PASTA's): ``mean_{p in slate} g(h, p)``, ``(B, hidden)``;
    with a belief, ``g`` also reads each prompt's belief-expected utility.
    ``critic="mixture"``: one feature, ``sum_k b_k IV_k(slate)`` with
    ``IV_k = (1/tau) log sum_{p in slate} exp(tau v_k(h, p))`` and
    ``v_k(h, p) = u_k(p) + r_k(h, p)`` (the belief's user model's utility
    plus a learned correction for what follows): the value of a slate to a
    user who picks the best column for their type, averaged over the belief
    (the default reward's structure, so hedging between likely types can be
    learned). Needs a belief.
    """

    def __init__(self, horizon: int, slate_size: int, dim: int, hidden: int, reward_shift: float = 0.0,
                 reward_scale: float = 1.0, belief_types: int = 0, belief_hidden: int = 32, critic: str = "mean"):
        super().__init__()
        self.history = HistoryEncoder(horizon, slate_size, dim, hidden, reward_shift, reward_scale, belief_types,
                                      belief_hidden)
        self.slate_size, self.dim, self.critic = slate_size, dim, critic
        if critic == "mixture":
            last = nn.Linear(hidden, belief_types)
            nn.init.zeros_(last.weight)  # the correction starts at zero: v_k = u_k
            nn.init.zeros_(last.bias)
            self.prompt_net = nn.Sequential(_mlp([hidden + 2 * dim, hidden]), last)
        else:
            self.prompt_net = _mlp([hidden + 2 * dim + (1 if belief_types else 0), hidden, hidden])

    def per_prompt(self, x: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """``g(h, p)`` for ``(B, n, d)`` prompts: ``(B, n, hidden)`` (mean critic)."""
        h, belief = self.history.encode(x)
        request = self.history.part(x, "initial_prompt")
        n = prompts.shape[1]
        parts = [h[:, None].expand(-1, n, -1), prompts, prompts * request[:, None]]
        if belief is not None:
            assert self.history.belief is not None
            parts.append((self.history.belief.utilities(request, prompts) * belief[:, None]).sum(-1, keepdim=True))
        return self.prompt_net(torch.cat(parts, dim=-1))

    def type_values(self, x: torch.Tensor, prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixture critic: ``(v, belief)``, ``v`` ``(B, n, K)`` each type's value of ``(B, n, d)`` prompts."""
        h, belief = self.history.encode(x)
        assert belief is not None and self.history.belief is not None
        request = self.history.part(x, "initial_prompt")
        n = prompts.shape[1]
        correction = self.prompt_net(torch.cat([h[:, None].expand(-1, n, -1), prompts, prompts * request[:, None]],
                                               dim=-1))
        return self.history.belief.utilities(request, prompts) + correction, belief

    def temperature(self) -> torch.Tensor:
        """The mixture critic's ``tau`` (its user model's)."""
        assert self.history.belief is not None
        return self.history.belief.users.log_tau.exp()

    def forward(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        slate = action.reshape(len(action), self.slate_size, self.dim)
        if self.critic == "mixture":
            v, belief = self.type_values(x, slate)  # (B, L, K), (B, K)
            tau = self.temperature()
            inclusive = torch.logsumexp(tau * v, dim=1) / tau  # (B, K)
            return (belief * inclusive).sum(dim=1, keepdim=True)
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
        belief_types: Latent types of the history's :class:`TypeBelief` (0: none).
        belief_hidden: Hidden units of the belief's user model.
        critic: ``"mean"`` (PASTA's decomposed slate value) or ``"mixture"``
            (the belief-weighted inclusive value; see :class:`SlateCriticEncoder`).
    """

    horizon: int = 5
    slate_size: int = 4
    dim: int = 64
    hidden: int = 256
    reward_shift: float = 0.0
    reward_scale: float = 1.0
    belief_types: int = 0
    belief_hidden: int = 32
    critic: str = "mean"

    def __post_init__(self):
        if self.critic not in CRITICS:
            raise ValueError(f"critic must be one of {', '.join(CRITICS)}, got {self.critic!r}")
        if self.critic == "mixture" and self.belief_types < 1:
            raise ValueError("the mixture critic needs a belief over types (belief_types >= 1)")

    def create(self, observation_shape: Any) -> HistoryEncoder:
        self._check(observation_shape)
        return HistoryEncoder(self.horizon, self.slate_size, self.dim, self.hidden, self.reward_shift,
                              self.reward_scale, self.belief_types, self.belief_hidden)

    def create_with_action(self, observation_shape: Any, action_size: int,
                           discrete_action: bool = False) -> SlateCriticEncoder:
        self._check(observation_shape)
        if discrete_action or action_size != self.slate_size * self.dim:
            raise ValueError(f"the slate critic takes {self.slate_size} prompt embeddings of {self.dim} values "
                             f"({self.slate_size * self.dim} continuous values), got action size {action_size}")
        return SlateCriticEncoder(self.horizon, self.slate_size, self.dim, self.hidden, self.reward_shift,
                                  self.reward_scale, self.belief_types, self.belief_hidden, self.critic)

    def _check(self, observation_shape: Any) -> None:
        want = observation_size(self.horizon, self.slate_size, self.dim)
        got = tuple(observation_shape)
        if got != (want,):
            raise ValueError(f"the history encoder reads flat observations of {want} values "
                             f"({', '.join(OBSERVATION_KEYS)}), got shape {got}")

    @staticmethod
    def get_type() -> str:
        return "pasta_t2i_v3"  # v2: the history holds the past rewards; v3: a belief over types, two critics


def observation_slots(horizon: int, slate_size: int, dim: int) -> dict[str, tuple[int, int, tuple[int, ...]]]:
    """Where each of :data:`OBSERVATION_KEYS` sits in the flat observation the networks read."""
    # The candidates are not among the keys, so their count is any valid one.
    return flat_observation_layout(Layout(horizon, slate_size, slate_size, dim), OBSERVATION_KEYS)


def observation_size(horizon: int, slate_size: int, dim: int) -> int:
    """Length of the flat observation the networks read."""
    return max(b for _, b, _ in observation_slots(horizon, slate_size, dim).values())


register_encoder_factory(PastaEncoderFactory)
