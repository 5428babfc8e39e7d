"""Agents that use the world's user model: Bayesian greedy and the oracle."""

from __future__ import annotations

import numpy as np

from agents.base import Agent, top_diverse


def type_log_posterior(obs: dict[str, np.ndarray], user_model) -> np.ndarray:
    """Log posterior over user types from the choices seen so far.

    Each past turn contributes ``log softmax(tau * U_k)[choice]``, where
    ``U_k`` are the utilities type ``k`` gives the shown columns, computed
    from the shown prompts and their images' mean embeddings (exact for the
    mean aggregation of a model linear in the image, an approximation
    otherwise).

    Args:
        obs: Batched observation with the ``history_*`` keys.
        user_model: A :class:`simulators.user_model.UserModel`.

    Returns:
        ``(N, K)`` normalised log posterior.
    """
    prompts = obs["history_slate_prompts"]  # (N, H, L, d)
    images = obs["history_slate_images"][..., None, :]  # (N, H, L, 1, d)
    util = user_model.utilities(prompts, images)  # (N, H, L, K)
    loglik = user_model.log_likelihood(np.moveaxis(util, -1, -2), obs["history_choices"])  # (N, H, K)
    loglik = (loglik * obs["history_mask"][..., None]).sum(axis=1)
    logpost = np.log(np.maximum(user_model.prior, 1e-300)) + loglik
    return logpost - np.logaddexp.reduce(logpost, axis=1, keepdims=True)


class GreedyAgent(Agent):
    """Myopic Bayesian agent.

    Keeps the posterior over user types given the choices so far (see
    :func:`type_log_posterior`) and shows the ``L`` candidates with the
    highest expected utility under it, at most one per category. A
    candidate's utility for a type is judged from its prompt embedding
    (:meth:`UserModel.prompt_utilities`).
    """

    name = "greedy"

    def posterior(self, obs) -> np.ndarray:
        """``(N, K)`` posterior over user types."""
        return np.exp(type_log_posterior(obs, self.world.user_model))

    def act_batch(self, obs, info):
        users = self.world.user_model
        values = np.einsum("nck,nk->nc", users.prompt_utilities(obs["candidates"]), self.posterior(obs))
        return top_diverse(values, obs["candidate_categories"], self.config.slate_size,
                           len(self.world.candidates.categories))


class OracleAgent(Agent):
    """Knows the user type and shows its top candidates, at most one per category.

    The upper reference for myopic play. Needs ``info["user_type"]``, so the
    env must be made with ``expose_user_type=True``.
    """

    name = "oracle"

    def act_batch(self, obs, info):
        if "user_type" not in info:
            raise ValueError("the oracle needs info['user_type']: make the env with expose_user_type=True")
        types = np.asarray(info["user_type"]).reshape(-1)
        util = self.world.user_model.prompt_utilities(obs["candidates"])  # (N, C, K)
        values = np.take_along_axis(util, types[:, None, None], axis=2)[..., 0]
        return top_diverse(values, obs["candidate_categories"], self.config.slate_size,
                           len(self.world.candidates.categories))
