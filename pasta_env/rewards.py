"""The feedback channel: what a turn's reward is, what it is worth in expectation, and its likelihood per type.

The simulated user chooses by a random-utility rule: each shown column ``j``
has the utility ``u_j`` the user model gives its images, plus a taste shock
``e_j / tau`` with ``e_j`` standard Gumbel, and the user takes the best
column. That is the same as choosing with ``softmax(tau * u)``. Three
rewards are defined on it (:data:`REWARDS`):

``"experienced"`` (the default)
    What the user experiences from the column they took: its utility
    including the shock they acted on, less the shock's mean ``gamma / tau``
    (``gamma`` is Euler's constant), so that its expectation is the slate's
    inclusive value ``IV(u) = (1/tau) log sum_j exp(tau * u_j)``. For Gumbel
    shocks the best column's value is Gumbel with location
    ``IV(u) - gamma / tau`` and scale ``1 / tau`` whichever column won, and
    independent of which one did; the env draws it that way (the choice from
    the softmax, the reward from its own uniform). ``IV`` grows with every
    good option shown and shrinks when a good option is replaced by a worse
    one, so showing junk never pays, and the reward's noise (standard
    deviation ``pi / (tau sqrt 6)``) keeps one turn's feedback from naming
    the user type.
``"chosen-utility"``
    The chosen column's exact utility (the reward before this channel was
    defined). A deterministic function of the hidden type and of images the
    agent has seen: reading it identifies the type after one turn, and under
    it one good option beside three junk ones beats four good ones. Kept to
    reproduce earlier figures and to show what the validity report catches.
``"expected-utility"``
    The chosen column's utility expected under the choice probabilities,
    ``sum_j softmax(tau u)_j u_j``: as deterministic as ``"chosen-utility"``.

Everything here is plain math over arrays with the slate's columns on the
last axis (the choice's own likelihood is the user model's
``log_likelihood``); the env computes the same reward in its compiled turn kernel
(:func:`pasta_env.kernels.record_turn`).
"""

from __future__ import annotations

import numpy as np

from simulators.users.user_model import choice_probabilities

#: The reward kinds, the default first.
REWARDS: tuple[str, ...] = ("experienced", "chosen-utility", "expected-utility")
#: Rewards that carry noise a person's feedback would (agents read them; the others are deterministic).
STOCHASTIC_REWARDS: tuple[str, ...] = ("experienced",)
#: Names used before the channel was defined, and what they are called now.
RENAMED: dict[str, str] = {"chosen": "chosen-utility", "expected": "expected-utility"}
#: Euler's constant, the mean of a standard Gumbel variable.
EULER_GAMMA = 0.5772156649015329


def check_reward(kind: object) -> str:
    """Return ``kind`` if it names a reward, else raise a ``ValueError`` that lists them (and any rename)."""
    if isinstance(kind, str) and kind in REWARDS:
        return kind
    hint = f" (it was renamed {RENAMED[kind]!r})" if isinstance(kind, str) and kind in RENAMED else ""
    raise ValueError(f"reward must be one of {', '.join(REWARDS)}, got {kind!r}{hint}")


def reward_code(kind: str) -> int:
    """The reward's index in :data:`REWARDS` (what the compiled turn kernel takes)."""
    return REWARDS.index(check_reward(kind))


def inclusive_value(util: np.ndarray, temperature: float) -> np.ndarray:
    """``(1/tau) log sum_j exp(tau * u_j)`` over the last axis (the expected best value of a Gumbel user)."""
    z = temperature * np.asarray(util, np.float64)
    top = z.max(axis=-1, keepdims=True)
    return (top[..., 0] + np.log(np.exp(z - top).sum(axis=-1))) / temperature


def expected_reward(util: np.ndarray, temperature: float, kind: str) -> np.ndarray:
    """The expected reward of showing columns of utilities ``util`` (columns on the last axis).

    ``"experienced"``: the inclusive value; the other two: the expected
    utility of the chosen column, ``sum_j softmax(tau u)_j u_j``.
    """
    if check_reward(kind) == "experienced":
        return inclusive_value(util, temperature)
    return (choice_probabilities(util, temperature) * util).sum(axis=-1)


def reward_log_likelihood(reward: np.ndarray, util: np.ndarray, choice: np.ndarray, temperature: float,
                          kind: str, spread: float = 1e-3) -> np.ndarray:
    """Log density of an observed reward under each type: ``(..., K)``.

    Args:
        reward: ``(...)`` observed rewards.
        util: ``(..., K, L)`` each type's utility of the shown columns.
        choice: ``(...)`` the chosen columns.
        temperature: ``tau``.
        kind: The reward (:data:`REWARDS`).
        spread: For the deterministic rewards, the standard deviation of the
            Gaussian that matches the reward against each type's prediction
            (the prediction's error: exact utilities need little, utilities
            estimated from mean image embeddings about 0.1).

    The ``"experienced"`` reward given type ``k`` is Gumbel with location
    ``IV_k - gamma / tau`` and scale ``1 / tau``, independent of the choice.
    """
    reward = np.asarray(reward, np.float64)[..., None]
    if check_reward(kind) == "experienced":
        z = temperature * (reward - inclusive_value(util, temperature)) + EULER_GAMMA
        return np.log(temperature) - z - np.exp(-np.minimum(z, 700.0))
    if kind == "chosen-utility":
        idx = np.broadcast_to(np.asarray(choice)[..., None, None], (*util.shape[:-1], 1))
        mean = np.take_along_axis(np.asarray(util, np.float64), idx, axis=-1)[..., 0]
    else:
        mean = expected_reward(np.asarray(util, np.float64), temperature, kind)
    return -0.5 * ((reward - mean) / spread) ** 2 - np.log(spread * np.sqrt(2 * np.pi))


def draw_experienced(util: np.ndarray, temperature: float, uniforms: np.ndarray) -> np.ndarray:
    """The ``"experienced"`` reward drawn from ``uniforms`` (one per slate), as the env's kernel draws it.

    ``IV(u) + (g - gamma) / tau`` with ``g = -log(-log(v))``, ``v`` the
    uniform moved half a float32 step inside ``(0, 1)``. Returned as float32.
    """
    v = np.asarray(uniforms, np.float64) + 2.0 ** -25
    g = -np.log(-np.log(v))
    return (inclusive_value(util, temperature) + (g - EULER_GAMMA) / temperature).astype(np.float32)
