"""Agents that use the world's user model: greedy, popular, bayes, planner and the oracle.

They share three pieces of math, plain functions over batched arrays:

* :func:`type_log_posterior`: the belief over user types from the choices so far;
* :func:`candidate_utilities`: each type's utility of showing each candidate,
  judged from its prompt embedding against the user's request;
* :func:`best_slates`: the slate of distinct candidates that maximises the
  belief-expected value of the column the user will choose,
  ``sum_k b_k sum_j softmax(tau * u_k(S))_j * w_k(S_j)``, found by
  enumerating the subsets of a pool of promising candidates.

The agents differ in the belief ``b`` (the prior, the posterior, or the true
type), in the value ``w`` of a chosen column (its utility now, or now plus a
one-step lookahead through the simulator), and in whether a slate may hold
two candidates of one category.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from agents.base import Agent, top_diverse
from simulators.contract import Prompts
from simulators.users.user_model import choice_probabilities


def type_log_posterior(obs: dict[str, np.ndarray], user_model) -> np.ndarray:
    """Log posterior over user types from the choices seen so far.

    Each past turn contributes ``log softmax(tau * U_k)[choice]``, where
    ``U_k`` are the utilities type ``k`` gives the shown columns, computed
    from the columns' images' mean embeddings against the user's request
    (exact for the mean aggregation of a model linear in the image, an
    approximation otherwise).

    Args:
        obs: Batched observation with ``initial_prompt`` and the ``history_*`` keys.
        user_model: A :class:`simulators.user_model.UserModel`.

    Returns:
        ``(N, K)`` normalised log posterior.
    """
    images = obs["history_slate_images"][..., None, :]  # (N, H, L, 1, d)
    requests = np.broadcast_to(obs["initial_prompt"][:, None, None, :], images.shape[:-2] + images.shape[-1:])
    util = user_model.utilities(requests, images)  # (N, H, L, K)
    loglik = user_model.log_likelihood(np.moveaxis(util, -1, -2), obs["history_choices"])  # (N, H, K)
    loglik = (loglik * obs["history_mask"][..., None]).sum(axis=1)
    logpost = np.log(np.maximum(user_model.prior, 1e-300)) + loglik
    return logpost - np.logaddexp.reduce(logpost, axis=1, keepdims=True)


def candidate_utilities(obs: dict[str, np.ndarray], user_model) -> np.ndarray:
    """``(N, K, C)``: each type's utility of each candidate's images, estimated from its prompt."""
    util = user_model.prompt_utilities(obs["initial_prompt"][:, None, :], obs["candidates"])  # (N, C, K)
    return np.ascontiguousarray(np.moveaxis(util, -1, 1))


_COMBOS: dict[tuple[int, int], np.ndarray] = {}


def _combos(m: int, size: int) -> np.ndarray:
    if (m, size) not in _COMBOS:
        _COMBOS[(m, size)] = np.array(list(combinations(range(m), size)), np.intp)
    return _COMBOS[(m, size)]


def best_slates(util: np.ndarray, value: np.ndarray, belief: np.ndarray, temperature: float,
                categories: np.ndarray, slate_size: int, one_per_category: bool,
                pool: int = 8) -> np.ndarray:
    """The slates of distinct candidates with the highest belief-expected chosen value.

    The objective of slate ``S`` is ``sum_k b_k sum_j softmax(tau * util_k[S])_j * value_k[S_j]``:
    the user of type ``k`` picks column ``j`` with the choice model's
    probability and the agent earns the value of what was picked. The search
    enumerates every ``slate_size``-subset of a pool: the ``pool`` candidates
    with the highest expected value, or, with ``one_per_category``, the best
    two of each category, keeping subsets with distinct categories.

    Args:
        util: ``(N, K, C)`` utility of each candidate for each type (drives the choice).
        value: ``(N, K, C)`` value of each candidate if chosen (``util`` for a myopic agent).
        belief: ``(N, K)`` probability of each type.
        temperature: ``tau`` of the user's choice softmax.
        categories: ``(N, C)`` category of each candidate.
        slate_size: ``L``.
        one_per_category: At most one candidate of each category per slate.
        pool: Pool size without the category rule.

    Returns:
        ``(N, L)`` candidate indices.
    """
    N, K, C = util.shape
    score = np.einsum("nkc,nk->nc", value, belief)
    num_cat = int(categories.max()) + 1
    constrained = one_per_category and num_cat >= slate_size
    if constrained:
        masked = np.where(categories[:, None, :] == np.arange(num_cat)[None, :, None], score[:, None, :], -np.inf)
        cand = np.argsort(-masked, axis=2, kind="stable")[:, :, :2].reshape(N, -1)
    else:
        cand = np.argsort(-score, axis=1, kind="stable")[:, :min(pool, C)]
    combos = _combos(cand.shape[1], slate_size)  # (S, L)
    slates = cand[:, combos]  # (N, S, L)
    rows = np.arange(N)[:, None, None, None]
    ks = np.arange(K)[None, None, :, None]
    u = util[rows, ks, slates[:, :, None, :]]  # (N, S, K, L)
    w = value[rows, ks, slates[:, :, None, :]]
    p = choice_probabilities(u, temperature)
    objective = np.einsum("nskl,nk->ns", p * w, belief)
    if constrained:
        cats = np.take_along_axis(categories, slates.reshape(N, -1), axis=1).reshape(slates.shape)
        cats = np.sort(cats, axis=2)
        clash = (cats[:, :, 1:] == cats[:, :, :-1]).any(axis=2)
        objective[clash] = -np.inf
    best = objective.argmax(axis=1)
    return slates[np.arange(N), best]


def myopic_slate_value(util: np.ndarray, categories: np.ndarray, slate_size: int,
                       temperature: float, one_per_category: bool) -> np.ndarray:
    """Expected chosen utility of the top-``L`` slate of a known type, ``(...,)`` from ``(..., C)``.

    The top ``L`` candidates by utility (with ``one_per_category``, the best
    of each category first), scored by ``sum_j softmax(tau * u)_j u_j``: the
    value of the next turn for a user whose type is known.

    Args:
        util: ``(..., C)`` utilities.
        categories: ``(C,)`` category of each candidate.
        slate_size: ``L``.
        temperature: ``tau``.
        one_per_category: Take the best of each category before ranking.
    """
    if one_per_category:
        num_cat = int(categories.max()) + 1
        if num_cat >= slate_size:
            util = np.stack([util[..., categories == c].max(axis=-1) for c in range(num_cat)], axis=-1)
    top = -np.partition(-util, slate_size - 1, axis=-1)[..., :slate_size]
    p = choice_probabilities(top, temperature)
    return (p * top).sum(axis=-1)


class _SlateAgent(Agent):
    """Shared slate rule: :func:`best_slates` under a belief, on myopic or lookahead values."""

    one_per_category = True
    lookahead = False
    #: Expansions drawn per candidate for the lookahead.
    samples = 4
    #: Candidates looked ahead from: the best ``focus`` by expected utility
    #: (with the category rule, the best ``focus // num_categories`` of each).
    focus = 15
    #: Users expanded at once (bounds the lookahead's memory).
    chunk = 128

    def belief(self, obs, info) -> np.ndarray:
        """``(N, K)`` probability of each type."""
        raise NotImplementedError

    def act_batch(self, obs, info):
        users = self.world.user_model
        util = candidate_utilities(obs, users)
        belief = self.belief(obs, info)
        value = util
        if self.lookahead:
            value = util + self.future_values(obs, info, belief, util)
        return best_slates(util, value, belief, users.temperature, obs["candidate_categories"],
                           self.config.slate_size, self.one_per_category)

    def future_values(self, obs, info, belief, util) -> np.ndarray:
        """``(N, K, C)``: each type's value of the next turn if the user picks candidate ``c``.

        Uses the simulator: the world's candidate generator expands a
        candidate (with the agent's own random draws, ``samples`` times), and
        the next turn's value for type ``k`` is the expected chosen utility
        of type ``k``'s best slate among those expansions. Only the
        ``focus`` most promising candidates (by belief-expected utility) are
        looked ahead from; the others get zero, as does every candidate on
        the last turn, so they are judged by their utility alone.
        """
        N, C = obs["candidates"].shape[:2]
        K = self.world.user_model.num_types
        out = np.zeros((N, K, C), np.float32)
        live = np.flatnonzero(np.asarray(obs["turn"]).reshape(-1) < self.config.horizon - 1)
        if live.size == 0:
            return out
        focus = self._focus(np.einsum("nkc,nk->nc", util, belief), obs["candidate_categories"])
        prompts = _candidate_prompts(info)[np.arange(N)[:, None], focus]  # (N, m) Prompts
        types = np.arange(K)[None, :, None]
        for a in range(0, live.size, self.chunk):
            rows = live[a:a + self.chunk]
            values = self._expand_values(obs["initial_prompt"][rows], prompts[rows])  # (n, K, focus)
            out[rows[:, None, None], types, focus[rows][:, None, :]] = values
        return out

    def _focus(self, score: np.ndarray, categories: np.ndarray) -> np.ndarray:
        """``(N, m)`` indices of the candidates to look ahead from."""
        num_cat = int(categories.max()) + 1
        if self.one_per_category and num_cat >= self.config.slate_size:
            per = max(1, self.focus // num_cat)
            masked = np.where(categories[:, None, :] == np.arange(num_cat)[None, :, None], score[:, None, :],
                              -np.inf)
            picks = np.argsort(-masked, axis=2, kind="stable")[:, :, :per].reshape(len(score), -1)
            return np.sort(picks, axis=1)
        return np.sort(np.argsort(-score, axis=1, kind="stable")[:, :self.focus], axis=1)

    def _expand_values(self, request, prompts) -> np.ndarray:
        world, users = self.world, self.world.user_model
        gen = world.candidates
        n, C = prompts.shape
        rows = np.broadcast_to(np.arange(n)[:, None, None], (n, self.samples, C))
        flat = prompts[rows, np.arange(C)].reshape(-1)  # (n*s*C,) Prompts
        u = self.rng.random((len(flat), gen.uniforms_per_turn), dtype=np.float32)
        emb = gen.generate(flat, u).embeddings  # (n*s*C, C', d)
        req = np.repeat(request, self.samples * C, axis=0)[:, None, :]
        util = users.prompt_utilities(req, emb)  # (n*s*C, C', K)
        util = np.moveaxis(util, -1, 1)  # (n*s*C, K, C')
        values = myopic_slate_value(util, gen.category_of, self.config.slate_size, users.temperature,
                                    self.one_per_category)  # (n*s*C, K)
        values = values.reshape(n, self.samples, C, -1).mean(axis=1)  # (n, C, K)
        return np.moveaxis(values, -1, 1)


def _candidate_prompts(info) -> Prompts:
    """``(N, C)`` candidate prompts in the world's form, from ``info["candidate_texts"]``."""
    if "candidate_texts" not in info:
        raise ValueError("planning agents need info['candidate_texts'] from the env's last reset or step")
    prompts = info["candidate_texts"].prompts
    return prompts if len(prompts.shape) == 2 else prompts[None]


class GreedyAgent(Agent):
    """Myopic Bayesian agent, candidate by candidate.

    Keeps the posterior over user types given the choices so far (see
    :func:`type_log_posterior`) and shows the ``L`` candidates with the
    highest posterior-expected utility, at most one per category. Each
    candidate is judged on its own (:func:`candidate_utilities`); how the
    user chooses within the slate is ignored.
    """

    name = "greedy"

    def posterior(self, obs) -> np.ndarray:
        """``(N, K)`` posterior over user types."""
        return np.exp(type_log_posterior(obs, self.world.user_model))

    def act_batch(self, obs, info):
        values = np.einsum("nkc,nk->nc", candidate_utilities(obs, self.world.user_model), self.posterior(obs))
        return top_diverse(values, obs["candidate_categories"], self.config.slate_size,
                           len(self.world.candidates.categories))


class PopularAgent(_SlateAgent):
    """The best user-agnostic policy the user model allows: bayes with the belief frozen at the prior.

    Shows what pleases users in general (the prior-weighted expected chosen
    utility, at most one per category) and never adapts to the choices.
    """

    name = "popular"

    def belief(self, obs, info):
        prior = self.world.user_model.prior
        return np.broadcast_to(prior, (obs["candidates"].shape[0], prior.size))


class BayesAgent(_SlateAgent):
    """The myopic Bayes-optimal slate: posterior-expected chosen utility, at most one per category.

    The belief is the posterior over types given the choices so far; the
    slate maximises ``sum_k P(k | history) E_k[utility of the chosen column]``
    (see :func:`best_slates`). It reasons about the whole slate (the user
    picks one column), not candidate by candidate as ``greedy`` does.
    """

    name = "bayes"

    def belief(self, obs, info):
        return np.exp(type_log_posterior(obs, self.world.user_model))


class PlannerAgent(BayesAgent):
    """Non-myopic model-based reference: bayes's slate rule on one-step-lookahead values.

    The value of a column if chosen is its utility plus the next turn's
    value of the prompt it leads to (:meth:`future_values`: the simulator's
    candidate generator expands it, and the best next slate is valued for
    each type), averaged over the posterior (the QMDP approximation: types
    are weighted by today's belief). Uses the simulator and the posterior,
    never the true type. Each step expands ``samples * focus`` (60)
    candidates per user, so it is several times slower than ``bayes``.
    """

    name = "planner"
    lookahead = True


class OracleAgent(_SlateAgent):
    """Knows the user type and plans like ``planner`` does, over every legal slate.

    The belief is the true type; values include the same one-step lookahead
    as ``planner``'s; the slate is searched over all sets of ``L`` distinct
    candidates (no category rule). It is the ceiling of every agent in this
    package and of the exploits the world-validity report tries; it is not
    the exact optimum of the known-type MDP (that would need a search over
    all ``H`` turns). Needs ``info["user_type"]``: it declares
    ``privileged = True``, so the evaluation harness makes its env with
    ``expose_user_type=True``.
    """

    name = "oracle"
    privileged = True
    one_per_category = False
    lookahead = True

    def belief(self, obs, info):
        if "user_type" not in info:
            raise ValueError("the oracle needs info['user_type']: make the env with expose_user_type=True")
        types = np.asarray(info["user_type"]).reshape(-1)
        return np.eye(self.world.user_model.num_types)[types]
