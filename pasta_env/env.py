"""PastaT2I-v0: personalized multi-turn text-to-image generation as a Gymnasium env."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import gymnasium as gym
import numpy as np

from pasta_env.config import EnvConfig
from pasta_env.core import BatchCore, forced_types
from pasta_env.render import render_frame, render_turn
from pasta_env.spaces import action_space, observation_space, validate_actions
from pasta_env.text import LazyTexts
from pasta_env.worlds import PromptsArg, World, build_world, world_takes
from simulators.errors import PastaError

#: ``info`` keys that belong to the hidden user; present only with ``expose_user_type=True``.
PRIVILEGED_INFO_KEYS: tuple[str, ...] = ("user_type", "user_type_name", "utilities", "choice_probs")


class EpisodeEndedError(PastaError, RuntimeError):
    """``step()`` was called after the episode ended."""


class PastaT2IEnv(gym.Env):
    """Personalized, multi-turn text-to-image generation (after PASTA, ICML 2025).

    ## Description

    A user with a hidden *type* (one of ``K`` preference clusters of the user
    model) arrives with an initial prompt, their request ``p0``, which leaves
    much of the picture open. Each turn a candidate generator proposes
    ``L_C`` expansions of the current prompt in the world's categories (in
    the synthetic world five each of rephrase, add detail, change style,
    change subject and creative leap). The agent shows a slate of ``L`` distinct ones; ``M`` images are
    rendered for each; the user scores every image against their request
    and their taste, ``s(k, p0, I)``, a column's utility is the mean of its
    image scores, and the user picks a column with probability
    ``softmax(tau * utility)`` (a random-utility user: each column's
    utility plus a Gumbel taste shock, the best one taken). The reward is
    what the user experiences from the column they took. The chosen prompt
    becomes the current prompt, so drifting away from the request is hard
    to undo. The agent never sees the user type: it must infer it from the
    choices and the rewards (ratings), both in the observation.

    ## Action Space

    ``MultiDiscrete([L_C] * L)``: the candidate index shown in each column.
    Every element is legal, and a slate is a set: a column that repeats an
    earlier column's index shows instead the lowest candidate index that
    appears nowhere in the slate (several such columns take the lowest free
    indices in column order); ``info["slate"]`` holds what was shown.
    Anything else (wrong shape, floats, NaN, an index out of ``0..L_C-1``)
    raises ``ValueError``.

    ## Observation Space

    A ``Dict`` of fixed-shape arrays; embeddings are ``float32`` unit vectors
    of dimension ``d`` (64 in the synthetic world). History entries of turns
    not yet played are zero.

    ========================= ============================== ===========================================
    key                       space                          meaning
    ========================= ============================== ===========================================
    ``candidates``            Box(-1, 1, (L_C, d))           this turn's candidate prompts
    ``candidate_categories``  MultiDiscrete([n_cat] * L_C)   category of each candidate (the world's)
    ``action_mask``           MultiBinary(L_C)               1 where a candidate exists (always here)
    ``turn``                  Discrete(H + 1)                turns played so far
    ``initial_prompt``        Box(-1, 1, (d,))               the user's initial prompt
    ``current_prompt``        Box(-1, 1, (d,))               the prompt being expanded now
    ``history_prompts``       Box(-1, 1, (H, d))             chosen prompt of each past turn
    ``history_images``        Box(-1, 1, (H, d))             mean embedding of the chosen column's images
    ``history_choices``       MultiDiscrete([L] * H)         chosen column of each past turn
    ``history_mask``          MultiBinary(H)                 1 for turns played
    ``history_rewards``       Box(float32, (H,))             reward of each past turn (0 where unrated)
    ``history_rated``         MultiBinary(H)                 1 where the user's reward was observed
    ``history_slate_prompts`` Box(-1, 1, (H, L, d))          every shown prompt of each past turn
    ``history_slate_images``  Box(-1, 1, (H, L, d))          mean image embedding of every shown column
    ========================= ============================== ===========================================

    ## Rewards

    ``reward="experienced"`` (default): the chosen column's utility
    including the Gumbel taste shock the user acted on, less the shock's
    mean: ``IV(u) + (g - gamma) / tau`` with ``g`` standard Gumbel, where
    ``IV(u) = (1/tau) log sum_j exp(tau * u_j)`` is the slate's inclusive
    value. Its expectation is ``IV(u)``: every good option shown raises it,
    replacing a shown option by one the user values more never lowers it,
    and junk beside a good option earns nothing (a known-type "best plus
    three junk" slate is worth less than the best four). Its value does
    not depend on which column won, and its noise (standard deviation
    ``pi / (tau sqrt 6)``, about 1.26 for the shipped user model) leaves one
    turn's feedback well short of naming the user type, as a person's rating
    would. Past rewards are in the observation (``history_rewards``), so an
    agent never needs the training loop's reward to act on it.

    ``reward="chosen-utility"``: the chosen column's exact utility, and
    ``reward="expected-utility"``: its expectation under the choice
    probabilities. Both are deterministic functions of the hidden type and
    of images already shown: matching them against each type's prediction
    identifies the type after one turn, and under them one good option
    beside three junk ones pays. They reproduce earlier figures and show
    what ``pasta validate-world`` catches; the reference agents do not read
    them. See :mod:`pasta_env.rewards`.

    ## Starting State

    ``reset(seed=s)`` draws the user type from the user model's prior, an
    initial prompt uniformly from the prompt pool, and the first candidates.
    The seed fixes the whole episode given the actions: types, prompts,
    candidates, images and choices. ``reset(options={"user_type": k})``
    plays a user of type ``k`` instead (for data generation and analysis);
    everything else is drawn as without the option.

    ## Episode End

    After ``H`` turns, with ``terminated=True`` (``truncated`` is always
    ``False``; there is no time-limit wrapper). Stepping again before
    ``reset()`` raises :class:`EpisodeEndedError`.

    ## Info

    What a real system sees: ``candidate_texts`` (the ``L_C`` prompts,
    rendered on access; ``.prompts`` gives them in the world's own form),
    ``categories`` (category name of each candidate), ``candidate_notes``
    (only when a language model's candidates were repaired: what was filled
    and why); after ``reset()``
    ``prompt`` (the initial prompt's text); after a step ``slate`` (the
    shown candidate indices), ``slate_texts`` (rendered on access; the
    chosen prompt is ``slate_texts[choice]``) and ``choice``. What belongs
    to the hidden user (:data:`PRIVILEGED_INFO_KEYS`) is there only with
    ``expose_user_type=True``: ``user_type``, ``user_type_name`` and, after
    a step, ``choice_probs`` and ``utilities`` (per column).

    ## Arguments

    ======================== =============== =======================================================
    argument                 default         meaning
    ======================== =============== =======================================================
    ``num_candidates``       25              candidates per turn ``L_C`` (synthetic world: 5, 10, 15,
                                             20 or 25)
    ``slate_size``           4               prompts shown per turn ``L``
    ``images_per_prompt``    4               images per shown prompt ``M``
    ``horizon``              5               turns per episode ``H``
    ``reward``               ``"experienced"`` ``"experienced"``, ``"chosen-utility"`` or
                                             ``"expected-utility"``
    ``world``                ``"synthetic"`` a registered world name or a :class:`World`
    ``prompts``              ``None``        initial prompts: list of strings or a file (one per
                                             line, or a CSV/TSV with a ``Prompt`` column)
    ``expose_user_type``     ``False``       put the hidden user type in ``info``
    ``render_mode``          ``None``        ``"ansi"`` returns the turn as text; ``"rgb_array"`` the
                                             ``L x M`` image grid, chosen column framed
    ``world_kwargs``         ``None``        extra arguments of the world factory
    ``**world_options``                      the same, as keywords: e.g. ``world="clip",
                                             clip_model="ViT-H-14", t2i_model=..., lmm_model=...``
    ``config``               ``None``        an :class:`EnvConfig` instead of the size, reward
                                             and ``expose_user_type`` arguments
    ======================== =============== =======================================================

    ``K`` (8 by default) is the number of types of the world's user model.

    ## Version History

    * v0: initial version. Before the first release it was revised (the id
      kept, nothing having been published): users score images against
      their own request ``s(k, p0, I)`` rather than the shown prompt; slates
      are sets (repeated indices filled by the rule above); the hidden
      user's utilities and choice probabilities left ``info`` unless
      ``expose_user_type=True``; the default user model was retrained.
      Then the feedback channel (dynamics version 3): the default reward is
      ``"experienced"`` (it was the chosen column's exact utility, which
      identified the user type in one turn; now ``"chosen-utility"``, and
      ``"expected"`` is ``"expected-utility"``), and the observation gained
      ``history_rewards`` and ``history_rated``. Types, prompts, candidates,
      images and choices are unchanged for the same seeds and slates.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 1}

    def __init__(self, num_candidates: int = 25, slate_size: int = 4, images_per_prompt: int = 4,
                 horizon: int = 5, reward: str = "experienced", world: str | World = "synthetic",
                 prompts: PromptsArg = None, expose_user_type: bool = False,
                 render_mode: str | None = None, world_kwargs: dict | None = None,
                 config: EnvConfig | None = None, **world_options: Any):
        self.config, self.world = setup(config, locals(), self.metadata["render_modes"])
        self.render_mode = render_mode
        self._core = BatchCore(self.world, self.config, 1)
        self.observation_space = observation_space(self.config, self.world.dim,
                                                   len(self.world.candidates.categories))
        self.action_space = action_space(self.config)
        cats = self.world.candidates.categories
        self._category_names = tuple(cats[c] for c in self._core.categories)
        self._started = self._showing = False

    @property
    def core(self) -> BatchCore:
        """The batched simulation state (a batch of one)."""
        return self._core

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        core = self._core
        types = forced_types(options, 1, self.world.user_model.num_types)
        core.reset(core.draw_uniforms([self.np_random]), types)
        self._started = True
        self._showing = False
        return self._obs(), self._info(stepped=False)

    def step(self, action):
        slate = self._check_step(action)
        reward = self._core.step(slate[None, :])
        self._showing = False
        return self._obs(), float(reward[0]), self._core.done, False, self._info(stepped=True)

    def _check_step(self, action) -> np.ndarray:
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._core.done:
            raise EpisodeEndedError(
                f"the episode ended after {self.config.horizon} turns; call reset() to start a new one")
        return validate_actions(action, None, self.config)

    def show(self, action) -> dict[str, Any]:
        """Show a slate without letting the simulated user choose: its images are rendered, nothing is recorded.

        The first half of a step for people in the loop (``pasta serve``):
        show the slate, let a person look at its images
        (``env.core.pixels`` in worlds with pixels, or :meth:`render`), then
        :meth:`choose` their column. Showing again replaces the slate.

        Returns:
            ``slate`` (the shown indices, repeats filled) and ``slate_texts``.
        """
        slate = self._check_step(action)
        self._core.show(slate[None, :])
        self._showing = True
        return {"slate": self._core.slate[0].copy(), "slate_texts": LazyTexts(self._core.slate_prompts, row=0)}

    def choose(self, column: int):
        """The second half: ``column`` of the shown slate is chosen; returns what :meth:`step` returns.

        The simulated user's draws are consumed and ignored; the returned
        reward is the simulated user's (which means little when a person
        chose), and the turn is recorded unrated: its ``history_rewards``
        entry is 0 and ``history_rated`` 0, so agents that read ratings
        ignore it. ``info["chosen_by"]`` is ``"given"``.

        Raises:
            ValueError: No slate is shown, or ``column`` is not one of its columns.
        """
        if not self._showing:
            raise ValueError("show(action) a slate before choose(column)")
        self._check_column(column)
        reward = self._core.choose(np.array([column], np.int64))
        self._showing = False
        info = self._info(stepped=True)
        info["chosen_by"] = "given"
        return self._obs(), float(reward[0]), self._core.done, False, info

    def step_with_choice(self, action, column: int):
        """:meth:`step` with the column chosen from outside: :meth:`show`, then :meth:`choose`.

        For replaying recorded choices, and people in the loop.

        Raises:
            ValueError: ``column`` is not a column of the slate.
        """
        self._check_column(column)  # before showing: a bad column leaves nothing shown
        self.show(action)
        return self.choose(column)

    def _check_column(self, column) -> None:
        if not isinstance(column, (int, np.integer)) or isinstance(column, bool) \
                or not 0 <= column < self.config.slate_size:
            raise ValueError(f"column must be an integer in 0..{self.config.slate_size - 1}, got {column!r}")

    def render(self) -> str | np.ndarray | None:  # type: ignore[override]  # ansi text or an RGB frame
        if self.render_mode == "ansi":
            return render_turn(self._core)
        if self.render_mode == "rgb_array":
            return render_frame(self._core)
        return None

    def _obs(self) -> dict[str, np.ndarray]:
        obs = self._core.observation(squeeze=True)
        obs["turn"] = obs["turn"][()]
        return obs

    def _info(self, stepped: bool) -> dict[str, Any]:
        core = self._core
        info: dict[str, Any] = {
            "candidate_texts": LazyTexts(core.cands, row=0),
            "categories": self._category_names,
        }
        if core.cands.notes is not None and core.cands.notes[0] is not None:  # a language model's repairs
            info["candidate_notes"] = core.cands.notes[0]
        if stepped:
            info.update(
                slate=core.slate[0].copy(),
                slate_texts=LazyTexts(core.slate_prompts, row=0),
                choice=int(core.choice[0]),
            )
        else:
            info["prompt"] = core.cur[0].text()
        if self.config.expose_user_type:
            k = int(core.types[0])
            info["user_type"] = k
            info["user_type_name"] = self.world.user_model.type_names[k]
            if stepped:
                info["choice_probs"] = core.choice_probs[0].copy()
                info["utilities"] = core.utilities[0].copy()
        return info


def setup(config: EnvConfig | None, args: dict[str, Any], render_modes: list[str]) -> tuple[EnvConfig, World]:
    """The config and world of an env, from its constructor's arguments (single and vector env alike).

    Args:
        config: A ready :class:`EnvConfig`, or ``None`` to build one from the
            loose size and reward arguments in ``args``.
        args: The constructor's arguments (``locals()``).
        render_modes: The env's render modes.

    Raises:
        ValueError: A bad render mode, or ``config`` given together with
            loose size or reward arguments.
    """
    if args["render_mode"] is not None and args["render_mode"] not in render_modes:
        raise ValueError(f"render_mode must be None or {', '.join(map(repr, render_modes))}, "
                         f"got {args['render_mode']!r}")
    loose = {f.name: args[f.name] for f in fields(EnvConfig)}
    if config is None:
        config = EnvConfig(**loose)
    elif not isinstance(config, EnvConfig):
        raise ValueError(f"config must be an EnvConfig, got {type(config).__name__}")
    else:
        changed = [k for k, v in loose.items() if v != getattr(EnvConfig, k)]
        if changed:
            raise ValueError(f"pass either config= or {', '.join(changed)}, not both")
    options = {**(args["world_kwargs"] or {}), **args.get("world_options", {})}
    if "device" in options and isinstance(args["world"], str) and not world_takes(args["world"], "device"):
        raise ValueError("device= belongs to the vector env: gym.make_vec('PastaT2I-v0', num_envs=N, "
                         "vectorization_mode='vector_entry_point', device='cuda') runs the synthetic world on that "
                         "device; a single env runs on the CPU")
    return config, build_world(args["world"], args["prompts"], config.num_candidates, options)
