"""Agents that use the world's user model: greedy, popular, bayes, planner and the oracle.

They share a few pieces of math, plain functions over batched arrays:

* :func:`type_log_posterior`: the belief over user types from the feedback
  so far, the choices and (under a reward a person's rating would be) the
  rewards;
* :func:`candidate_utilities`: each type's utility of showing each candidate,
  judged from its prompt embedding against the user's request;
* :func:`best_slates`: the slate of distinct candidates that maximises the
  belief-expected reward plus what the chosen column leads to,
  ``sum_k b_k [ER_k(S) + sum_j softmax(tau * u_k(S))_j F_k(S_j)]``, where
  ``ER`` is the env's expected reward (:func:`pasta_env.rewards.expected_reward`:
  the slate's inclusive value under the default reward) and ``F`` a value
  of the future, found by enumerating the subsets of a pool of promising
  candidates;
* :func:`best_known_type_slates`: the same objective for a known type over
  every slate of distinct candidates.

The agents differ in the belief ``b`` (the prior, the posterior, or the true
type), in ``F`` (none, or a one-step lookahead through the simulator), and in
the slates searched.
"""

from __future__ import annotations

import numpy as np

from agents.base import Agent, top_diverse
from pasta_env.rewards import STOCHASTIC_REWARDS, check_reward, expected_reward, reward_log_likelihood
from simulators.contract import Prompts
from simulators.jit import lazy_module
from simulators.users.user_model import choice_probabilities

#: :mod:`agents.kernels` (numba), imported on the first search.
kernels = lazy_module("agents.kernels")


def history_utilities(obs: dict[str, np.ndarray], user_model) -> np.ndarray:
    """``(N, H, K, L)``: each type's utility of every column shown so far, from the columns' mean image embeddings.

    Exact for the mean aggregation of a model linear in the image, an
    approximation otherwise (for the shipped model its error has a standard
    deviation of about 0.05, against the reward's 1.26).
    """
    images = obs["history_slate_images"][..., None, :]  # (N, H, L, 1, d)
    requests = np.broadcast_to(obs["initial_prompt"][:, None, None, :], images.shape[:-2] + images.shape[-1:])
    return np.moveaxis(user_model.utilities(requests, images), -1, -2)


def type_log_posterior(obs: dict[str, np.ndarray], user_model, reward: str = "experienced",
                       reward_spread: float | None = None) -> np.ndarray:
    """Log posterior over user types from the feedback seen so far.

    Each past turn contributes ``log softmax(tau * U_k)[choice]``, where
    ``U_k`` are the utilities type ``k`` gives the shown columns
    (:func:`history_utilities`), and, for a rated turn under a stochastic
    reward (:data:`pasta_env.rewards.STOCHASTIC_REWARDS`), the reward's log
    density under type ``k`` (:func:`pasta_env.rewards.reward_log_likelihood`).
    The deterministic rewards are not read unless ``reward_spread`` is given
    (they name the type; matching them is what the validity report's
    reward reader does).

    Args:
        obs: Batched observation with ``initial_prompt`` and the ``history_*`` keys.
        user_model: A :class:`simulators.users.user_model.UserModel`.
        reward: The env's reward (``config.reward``).
        reward_spread: Read a deterministic reward too, matched with this
            standard deviation.

    Returns:
        ``(N, K)`` normalised log posterior.
    """
    util = history_utilities(obs, user_model)  # (N, H, K, L)
    loglik = user_model.log_likelihood(util, obs["history_choices"])  # (N, H, K)
    if (reward in STOCHASTIC_REWARDS or reward_spread is not None) and "history_rewards" in obs:
        rated = obs["history_rated"] if "history_rated" in obs else obs["history_mask"]
        rl = reward_log_likelihood(obs["history_rewards"], util, obs["history_choices"], user_model.temperature,
                                   reward, spread=reward_spread or 1e-3)
        loglik = loglik + np.where(rated[..., None] > 0, rl, 0.0)
    loglik = (loglik * obs["history_mask"][..., None]).sum(axis=1)
    logpost = np.log(np.maximum(user_model.prior, 1e-300)) + loglik
    return logpost - np.logaddexp.reduce(logpost, axis=1, keepdims=True)


def candidate_utilities(obs: dict[str, np.ndarray], user_model) -> np.ndarray:
    """``(N, K, C)``: each type's utility of each candidate's images, estimated from its prompt."""
    util = user_model.prompt_utilities(obs["initial_prompt"][:, None, :], obs["candidates"])  # (N, C, K)
    return np.ascontiguousarray(np.moveaxis(util, -1, 1))


def slate_objective(util: np.ndarray, future: np.ndarray | None, temperature: float, reward: str) -> np.ndarray:
    """``ER(u) + sum_j softmax(tau * u)_j f_j`` over the last axis (the slate's columns).

    Args:
        util: ``(..., L)`` the columns' utilities.
        future: ``(..., L)`` the value of what each column leads to, or ``None``.
        temperature: ``tau``.
        reward: The env's reward (what ``ER`` is).
    """
    value = expected_reward(util, temperature, reward)
    if future is not None:
        value = value + (choice_probabilities(util, temperature) * future).sum(axis=-1)
    return value


def best_slates(util: np.ndarray, future: np.ndarray | None, belief: np.ndarray, temperature: float,
                categories: np.ndarray, slate_size: int, one_per_category: bool,
                reward: str = "experienced") -> np.ndarray:
    """The slates of distinct candidates with the highest belief-expected objective, searched over all of them.

    The objective of slate ``S`` is ``sum_k b_k slate_objective(util_k[S], future_k[S])``:
    the user of type ``k`` gives the reward the env defines and picks column
    ``j`` with the choice model's probability, which leads to
    ``future_k[S_j]``. Every ``slate_size``-subset of the candidates is
    tried (``C choose L``; 12,650 at 25 and 4) by a compiled kernel
    (:func:`agents.kernels.search_slates`): with
    ``e_j = exp(tau * (u_j - max u))`` the inclusive value of ``S`` is
    ``max u + log(sum_S e_j) / tau`` and the choice-weighted future
    ``sum_S e_j f_j / sum_S e_j``, so a slate costs a few sums per type.
    Types the belief gives at most 1e-12 are skipped; for the inclusive
    value alone (myopic, no category rule) candidates that ``L`` others
    dominate for every weighed type are left out first, which changes no
    result (the kernel's docstring says why).

    Args:
        util: ``(N, K, C)`` utility of each candidate for each type.
        future: ``(N, K, C)`` value of what each candidate leads to if chosen, or ``None`` (myopic).
        belief: ``(N, K)`` probability of each type.
        temperature: ``tau`` of the user's choice softmax.
        categories: ``(N, C)`` category of each candidate.
        slate_size: ``L``.
        one_per_category: At most one candidate of each category per slate
            (ignored when there are fewer categories than columns).
        reward: The env's reward (:data:`pasta_env.rewards.REWARDS`).

    Returns:
        ``(N, L)`` candidate indices, ascending within a slate.
    """
    N, K, C = util.shape
    u = np.asarray(util, np.float64)
    f = np.zeros_like(u) if future is None else np.asarray(future, np.float64)
    e = np.exp(temperature * (u - u.max(axis=2, keepdims=True)))
    inclusive = check_reward(reward) == "experienced"
    g = e * f if inclusive else e * (u + f)
    categories = np.ascontiguousarray(categories, np.int64)
    constrained = one_per_category and int(categories.max()) + 1 >= slate_size
    prune = inclusive and future is None and not constrained
    out = np.empty((N, slate_size), np.intp)
    kernels().search_slates(e, g, np.ascontiguousarray(belief, np.float64), categories, constrained,
                            float(temperature), inclusive, prune, 1e-12, out)
    return out


def best_known_type_slates(util: np.ndarray, future: np.ndarray | None, temperature: float, slate_size: int,
                           reward: str = "experienced") -> np.ndarray:
    """For a known type, the best of every slate of distinct candidates (:func:`best_slates` with one type).

    Args:
        util: ``(N, C)`` the known type's utility of each candidate.
        future: ``(N, C)`` value of what each candidate leads to, or ``None``.
        temperature: ``tau``.
        slate_size: ``L``.
        reward: The env's reward.

    Returns:
        ``(N, L)`` candidate indices, ascending within a slate.
    """
    N, C = util.shape
    return best_slates(util[:, None], None if future is None else future[:, None], np.ones((N, 1)), temperature,
                       np.zeros((N, C), np.int64), slate_size, False, reward)


def myopic_slate_value(util: np.ndarray, categories: np.ndarray, slate_size: int,
                       temperature: float, one_per_category: bool, reward: str = "experienced") -> np.ndarray:
    """Expected reward of the top-``L`` slate of a known type, ``(...,)`` from ``(..., C)``.

    The top ``L`` candidates by utility (with ``one_per_category``, the best
    of each category first), scored by the env's expected reward: the value
    of the next turn for a user whose type is known. Under the default
    reward (the inclusive value, increasing in every column's utility) the
    top ``L`` is the known type's best slate exactly.

    Args:
        util: ``(..., C)`` utilities.
        categories: ``(C,)`` category of each candidate.
        slate_size: ``L``.
        temperature: ``tau``.
        one_per_category: Take the best of each category before ranking.
        reward: The env's reward.
    """
    if one_per_category:
        num_cat = int(categories.max()) + 1
        if num_cat >= slate_size:
            util = np.stack([util[..., categories == c].max(axis=-1) for c in range(num_cat)], axis=-1)
    top = -np.partition(-util, slate_size - 1, axis=-1)[..., :slate_size]
    return expected_reward(top, temperature, reward)


class _ModelAgent(Agent):
    """An agent that acts on a user model: the world's, or one fitted to data (``NAME:USER_MODEL``).

    With a user-model checkpoint (``pasta train-user-model --data DATASET``
    fits one to a trajectory dataset's choices and rewards) the agent reads
    the feedback and values the candidates with that model instead of the
    simulator's: the same rule on what data alone can learn, so comparing
    ``bayes`` with ``bayes:MODEL`` tells the model's share of its lead from
    the rule's.
    """

    #: Whether ``NAME:USER_MODEL`` builds this agent on a fitted user model (not for agents that also use
    #: the simulator's candidate generator or the true type: they would not be data-only).
    takes_user_model = False

    def __init__(self, world, config, seed: int | None = None, user_model=None):
        super().__init__(world, config, seed)
        #: The user model the agent reasons with (the world's unless one is given).
        self.user_model = world.user_model if user_model is None else user_model

    @classmethod
    def load(cls, path, world, config, seed: int | None = None):
        """The agent on the user-model checkpoint ``path`` (it must read the world's embeddings)."""
        from simulators.users.checkpoint import load_user_model

        agent = cls(world, config, seed, user_model=load_user_model(path, dim=world.dim))
        agent.name = f"{cls.name}:{path}"
        return agent


class _SlateAgent(_ModelAgent):
    """Shared slate rule: :func:`best_slates` under a belief, myopic or with a lookahead, over every slate."""

    #: At most one candidate of each category per slate (PASTA's acting rule; off for the references:
    #: under the default reward two prompts of one category the user likes beat one they like less).
    one_per_category = False
    lookahead = False
    #: Expansions drawn per candidate for the lookahead.
    samples = 4
    #: Candidates looked ahead from: the best ``focus`` by expected utility
    #: (with the category rule, the best ``focus // num_categories`` of each). 25 is every candidate of
    #: the default world: one left out is judged by its utility alone against the others' utility plus
    #: their next turn, a bias against it (with 15, the planner fell below bayes once creative leaps
    #: kept the request's subject and so had next turns worth looking at).
    focus = 25
    #: Users expanded at once (bounds the lookahead's memory).
    chunk = 128

    def belief(self, obs, info) -> np.ndarray:
        """``(N, K)`` probability of each type."""
        raise NotImplementedError

    def act_batch(self, obs, info):
        users = self.user_model
        util = candidate_utilities(obs, users)
        belief = self.belief(obs, info)
        future = self.future_values(obs, info, belief, util) if self.lookahead else None
        return best_slates(util, future, belief, users.temperature, obs["candidate_categories"],
                           self.config.slate_size, self.one_per_category, self.config.reward)

    def future_values(self, obs, info, belief, util) -> np.ndarray:
        """``(N, K, C)``: each type's value of the next turn if the user picks candidate ``c``.

        Uses the simulator: the world's candidate generator expands a
        candidate (with the agent's own random draws, ``samples`` times), and
        the next turn's value for type ``k`` is the expected reward of type
        ``k``'s best slate among those expansions. Only the ``focus`` most
        promising candidates (by belief-expected utility) are looked ahead
        from; the others get zero, as does every candidate on the last turn,
        so they are judged by their utility alone.
        """
        N, C = obs["candidates"].shape[:2]
        K = self.user_model.num_types
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
        world, users = self.world, self.user_model
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
                                    self.one_per_category, self.config.reward)  # (n*s*C, K)
        values = values.reshape(n, self.samples, C, -1).mean(axis=1)  # (n, C, K)
        return np.moveaxis(values, -1, 1)


def _candidate_prompts(info) -> Prompts:
    """``(N, C)`` candidate prompts in the world's form, from ``info["candidate_texts"]``."""
    if "candidate_texts" not in info:
        raise ValueError("planning agents need info['candidate_texts'] from the env's last reset or step")
    prompts = info["candidate_texts"].prompts
    return prompts if len(prompts.shape) == 2 else prompts[None]


def true_types(info, who: str) -> np.ndarray:
    """``(N,)`` the hidden user types from ``info``, or a ``ValueError`` saying how to expose them."""
    if "user_type" not in info:
        raise ValueError(f"{who} needs info['user_type']: make the env with expose_user_type=True (evaluate() "
                         "does for agents with privileged = True)")
    return np.asarray(info["user_type"]).reshape(-1)


class GreedyAgent(_ModelAgent):
    """Myopic Bayesian agent, candidate by candidate.

    Keeps the posterior over user types given the feedback so far (see
    :func:`type_log_posterior`) and shows the ``L`` candidates with the
    highest posterior-expected utility, at most one per category. Each
    candidate is judged on its own (:func:`candidate_utilities`); how the
    user chooses within the slate is ignored.
    """

    name = "greedy"
    takes_user_model = True

    def posterior(self, obs) -> np.ndarray:
        """``(N, K)`` posterior over user types."""
        return np.exp(type_log_posterior(obs, self.user_model, self.config.reward))

    def act_batch(self, obs, info):
        values = np.einsum("nkc,nk->nc", candidate_utilities(obs, self.user_model), self.posterior(obs))
        return top_diverse(values, obs["candidate_categories"], self.config.slate_size,
                           len(self.world.candidates.categories))


class PopularAgent(_SlateAgent):
    """The best user-agnostic policy the user model allows: bayes with the belief frozen at the prior.

    Shows what pleases users in general (the slate with the highest
    prior-weighted expected reward) and never adapts to the feedback.
    """

    name = "popular"
    takes_user_model = True

    def belief(self, obs, info):
        prior = self.user_model.prior
        return np.broadcast_to(prior, (obs["candidates"].shape[0], prior.size))


class BayesAgent(_SlateAgent):
    """The myopic Bayes-optimal slate: the posterior-expected reward, maximised over every slate.

    The belief is the posterior over types given the choices and ratings so
    far (:func:`type_log_posterior`); the slate maximises
    ``sum_k P(k | history) E_k[reward]`` over all ``C choose L`` slates (see
    :func:`best_slates`; under the default reward ``E_k[reward]`` is the
    slate's inclusive value for type ``k``, so hedging between likely types
    pays). It reasons about the whole slate (the user picks one column), not
    candidate by candidate as ``greedy`` does.
    """

    name = "bayes"
    takes_user_model = True

    def belief(self, obs, info):
        return np.exp(type_log_posterior(obs, self.user_model, self.config.reward))


class BayesDiverseAgent(BayesAgent):
    """bayes under PASTA's acting rule: the best slate with at most one prompt per category.

    The value-based agent's rule (``iql`` shows one prompt per category), so
    ``bayes-diverse`` against ``bayes`` is what the rule costs, and
    ``bayes-diverse:USER_MODEL`` against ``iql`` compares the two ways of
    learning from the same data under the same rule.
    """

    name = "bayes-diverse"
    one_per_category = True


class PlannerAgent(BayesAgent):
    """Non-myopic model-based reference: bayes's slate rule with a one-step lookahead.

    A chosen column leads to the next turn's value of the prompt it holds
    (:meth:`future_values`: the simulator's candidate generator expands it,
    and the best next slate is valued for each type), averaged over the
    posterior (the QMDP approximation: types are weighted by today's
    belief). Uses the simulator and the posterior, never the true type.
    Each step expands ``samples * focus`` (100) candidates per user, so it
    is several times slower than ``bayes``.
    """

    name = "planner"
    lookahead = True
    takes_user_model = False  # its lookahead expands candidates with the simulator's generator


class OracleAgent(_SlateAgent):
    """Knows the user type and maximises the env's expected reward over every slate, with a lookahead.

    The ceiling of the expected return of this world's agents: with the
    true type it maximises ``ER_k(S) + sum_j P_k(j | S) F_k(S_j)``, the
    env's expected reward of the slate (the inclusive value under the
    default reward) plus the choice-weighted value of the next turn
    (``planner``'s one-step lookahead), over all ``C choose L`` slates of
    distinct candidates (:func:`best_known_type_slates`; 12,650 at the
    default sizes). With its lookahead it is at
    least as good, in expectation, as any myopic rule that knows the type
    (the known-type myopic optimum is the same search without the
    lookahead), and as every agent and exploit the validity report tries.
    It is not the exact optimum of the known-type MDP (that would need a
    search over all ``H`` turns). Needs ``info["user_type"]``: it declares
    ``privileged = True``, so the evaluation harness makes its env with
    ``expose_user_type=True``.
    """

    name = "oracle"
    privileged = True
    lookahead = True

    def act_batch(self, obs, info):
        return self.known_type_slates(obs, info, true_types(info, "the oracle"))

    def known_type_slates(self, obs, info, types: np.ndarray) -> np.ndarray:
        """The oracle's slates for users of ``types`` (``(N,)``; the true ones, or a guess)."""
        users = self.world.user_model
        util = candidate_utilities(obs, users)  # (N, K, C)
        rows = np.arange(len(types))
        future = None
        if self.lookahead:
            future = self.future_values(obs, info, np.eye(users.num_types)[types], util)[rows, types]
        return best_known_type_slates(util[rows, types], future, users.temperature, self.config.slate_size,
                                      self.config.reward)
