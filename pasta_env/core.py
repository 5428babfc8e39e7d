"""The batched simulation core: B users, one array computation per turn.

The single environment is a batch of one and the vector environment a batch
of N over the same code, so equal seeds give equal trajectories. Every
random number of an episode is drawn at reset as one vector of uniforms per
user from that user's own generator (see :class:`UniformLayout`); nothing
else is random.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pasta_env.config import EnvConfig
from pasta_env.rewards import reward_code
from pasta_env.spaces import distinct_slates
from pasta_env.worlds import World
from simulators.contract import Prompts
from simulators.jit import lazy_module
from simulators.users.user_model import aggregate

#: :mod:`pasta_env.kernels` (numba), imported on the first call.
kernels = lazy_module("pasta_env.kernels")

#: Version of a step's arithmetic: raised when the same seeds and slates give other numbers. 1: numpy
#: array code; 2: the compiled kernels (candidates identical, embeddings and utilities moved in their last
#: bits); 3: the reward channel (the "experienced" reward, from one more uniform per step drawn after all
#: others, so types, prompts, candidates, images and choices are those of version 2) and past rewards in
#: the observation. Datasets record it; a replay needs the version they were made with.
DYNAMICS_VERSION = 3


@dataclass(frozen=True)
class UniformLayout:
    """Where each draw of an episode sits in the user's uniform vector.

    Layout: user type, initial prompt, then per turn ``t = 0..H`` the
    candidate draws, per step ``t = 0..H-1`` one uniform per image and one
    for the choice, and last one uniform per step for the reward (placed
    after everything else, so adding it moved no earlier draw).
    """

    horizon: int
    per_turn_candidates: int
    images_per_step: int

    @property
    def candidates_start(self) -> int:
        return 2

    def candidates(self, t: int) -> slice:
        a = self.candidates_start + t * self.per_turn_candidates
        return slice(a, a + self.per_turn_candidates)

    @property
    def steps_start(self) -> int:
        return self.candidates_start + (self.horizon + 1) * self.per_turn_candidates

    def images(self, t: int) -> slice:
        a = self.steps_start + t * (self.images_per_step + 1)
        return slice(a, a + self.images_per_step)

    def choice(self, t: int) -> int:
        return self.steps_start + t * (self.images_per_step + 1) + self.images_per_step

    @property
    def rewards_start(self) -> int:
        return self.steps_start + self.horizon * (self.images_per_step + 1)

    def reward(self, t: int) -> int:
        return self.rewards_start + t

    @property
    def size(self) -> int:
        return self.rewards_start + self.horizon


#: The observation arrays that hold the history (zeroed at every reset).
HISTORY_KEYS = ("history_prompts", "history_images", "history_choices", "history_mask", "history_rewards",
                "history_rated", "history_slate_prompts", "history_slate_images")


class BatchCore:
    """State and dynamics of ``B`` episodes that advance in lockstep.

    Args:
        world: The simulators.
        config: MDP sizes and reward.
        batch_size: Number of users ``B``.
        state: Every observation array (batch-first, the shapes of
            :meth:`observation_layout`, e.g. row views of a larger buffer)
            to keep the state in and to return as the observation itself,
            candidates included, instead of fresh copies: the arrays a step
            returns are then overwritten by the next step (the vector env's
            ``copy=False``). ``None``: the core keeps its own state and every
            observation is a fresh copy.
    """

    def __init__(self, world: World, config: EnvConfig, batch_size: int,
                 state: dict[str, np.ndarray] | None = None):
        gen = world.candidates
        if gen.num_candidates != config.num_candidates:
            raise ValueError(f"the world proposes {gen.num_candidates} candidates per turn but the "
                             f"config asks for {config.num_candidates}")
        self.world, self.config, self.B = world, config, batch_size
        H, L, M, C, d = (config.horizon, config.slate_size, config.images_per_prompt,
                         config.num_candidates, world.dim)
        self.layout = UniformLayout(H, gen.uniforms_per_turn, L * M)
        self.prior_cdf = np.cumsum(world.user_model.prior)
        self.categories = gen.category_of
        B = batch_size
        self.u = np.zeros((B, self.layout.size), np.float32)
        self.types = np.zeros(B, np.int64)
        self.prompt_index = np.zeros(B, np.int64)
        # Prompts (texts plus embeddings): the request, the prompt being expanded, the candidates and
        # the last slate. Rebound every turn, never written into: readers may keep earlier ones.
        first = world.initial_prompts[0]  # placeholders until reset: views, no memory
        self.request: Prompts = first.broadcast_to((B,))
        self.cur: Prompts = self.request
        self.cands: Prompts = first.broadcast_to((B, C))
        self.slate_prompts: Prompts = first.broadcast_to((B, L))
        # The observation's arrays other than the candidates live in one block laid out as the
        # observation's tail, so an observation is one copy of it plus the candidates.
        self._plan = ObservationBuffers(self.observation_layout())
        self.shared = state is not None
        if state is None:
            self._state_block, state = self._plan.tail()
            lo, hi = self._plan.span("history_prompts", "history_slate_images")
            self._history: list[np.ndarray] = [self._state_block[lo:hi]]  # one fill for the whole history
        else:
            for key, (shape, dtype) in self.observation_layout().items():
                if key not in state or state[key].shape != shape or state[key].dtype != dtype:
                    raise ValueError(f"state[{key!r}] must be a {dtype} array of shape {shape}")
            state = {key: state[key] for key in self.observation_layout()}
            self._history = [state[key] for key in HISTORY_KEYS]
        state["candidate_categories"][...] = self.categories
        state["action_mask"][...] = 1
        self._state = state
        self._turn = state["turn"]
        self.initial_emb = state["initial_prompt"]
        self.cur_emb = state["current_prompt"]
        self.hist_prompts = state["history_prompts"]
        self.hist_images = state["history_images"]
        self.hist_choices = state["history_choices"]
        self.hist_mask = state["history_mask"]
        self.hist_slate_prompts = state["history_slate_prompts"]
        self.hist_slate_images = state["history_slate_images"]
        self.hist_rewards = state["history_rewards"]
        self.hist_rated = state["history_rated"]
        # The request of each column, a read-only view: initial_emb is only ever written in place.
        self.requests = np.broadcast_to(self.initial_emb[:, None, :], (B, L, d))
        self.turn = 0
        self._reward_code = reward_code(config.reward)
        self._temperature = float(world.user_model.temperature)
        self._users = np.arange(B)
        self._no_choice = np.full(B, -1, np.int64)
        # Each turn's uniforms, as views of u (written in place at every reset).
        lay = self.layout
        self._u_cands = [self.u[:, lay.candidates(t)] for t in range(H + 1)]
        self._u_images = [self.u[:, lay.images(t)].reshape(B, L, M) for t in range(H)]
        self._u_choice = [self.u[:, lay.choice(t)] for t in range(H)]
        self._u_reward = [self.u[:, lay.reward(t)] for t in range(H)]
        assert all(np.shares_memory(v, self.u) for v in self._u_images)  # views, not copies
        # Last step, for info and rendering.
        self.slate = np.zeros((B, L), np.int64)
        self.utilities = np.zeros((B, L), np.float32)
        self.choice_probs = np.zeros((B, L), np.float32)
        self.choice = np.zeros(B, np.int64)
        self.images = np.zeros((B, L, M, d), np.float32)
        self._no_images = np.broadcast_to(np.zeros((), np.float32), (B, L, M, d))  # a placeholder, no memory
        #: ``(B, L, M, h, w, 3)`` uint8 images of the last slate, in worlds with pixels (else ``None``).
        self.pixels: np.ndarray | None = None
        self.reward = np.zeros(B, np.float64)

    @property
    def done(self) -> bool:
        """Whether the episodes have reached the horizon."""
        return self.turn >= self.config.horizon

    def locate(self, row: int) -> tuple[BatchCore, int]:
        """The core holding user ``row`` and the user's row in it."""
        return self, row

    def parts(self, name: str) -> list:
        """The value of attribute ``name`` per shard (here one), unjoined."""
        return [getattr(self, name)]

    def draw_uniforms(self, rngs) -> np.ndarray:
        """One episode of uniforms per user, from each user's generator."""
        out = np.empty((len(rngs), self.layout.size), np.float32)
        for rng, row in zip(rngs, out):
            rng.random(dtype=np.float32, out=row)
        return out

    def reset(self, uniforms: np.ndarray, types: np.ndarray | None = None) -> None:
        """Start new episodes for all users.

        Args:
            uniforms: ``(B, n)`` episode uniforms.
            types: Optional ``(B,)`` user types to use instead of drawing them
                (the draw's uniform is consumed either way).
        """
        world = self.world
        self.u[:] = uniforms
        u = self.u
        drawn = np.minimum(np.searchsorted(self.prior_cdf, u[:, 0], side="right"), len(self.prior_cdf) - 1)
        self.types[:] = drawn if types is None else types
        n_prompts = len(world.initial_prompts)
        self.prompt_index[:] = np.minimum((u[:, 1] * n_prompts).astype(np.int64), n_prompts - 1)
        self.request = self.cur = world.initial_prompts[self.prompt_index]
        self.initial_emb[:] = self.request.embeddings
        self.cur_emb[:] = self.initial_emb
        for part in self._history:  # history rows of turns not yet played are zero
            part.fill(0)
        self.turn = 0
        self._turn.fill(0)
        self._propose()

    def _propose(self) -> None:
        cands = self.world.candidates.generate(self.cur, self._u_cands[self.turn])
        if self.shared:  # the candidates live in the observation: the generator's copy is let go
            out = self._state["candidates"]
            out[...] = cands.embeddings.reshape(out.shape)
            cands = cands.with_embeddings(out.reshape(cands.embeddings.shape))
        self.cands = cands

    def step(self, slate: np.ndarray, choice: np.ndarray | None = None) -> np.ndarray:
        """Advance every episode by one turn: :meth:`show` the slate, then :meth:`choose`.

        Args:
            slate: ``(B, L)`` valid candidate indices; a repeated index is
                replaced as :func:`pasta_env.spaces.distinct_slates` says, and
                :attr:`slate` holds what was shown.
            choice: ``(B,)`` columns chosen from outside (people), ``-1`` where
                the simulated user chooses; ``None``: the simulated users
                choose (their draws are consumed either way).

        Returns:
            ``(B,)`` rewards.
        """
        self.show(slate)
        return self.choose(choice)

    def show(self, slate: np.ndarray) -> None:
        """Show a slate: render its images and score them for the users (the first half of :meth:`step`)."""
        world, t = self.world, self.turn
        slate = distinct_slates(slate, self.config.num_candidates)
        self.slate[:] = slate
        self.slate_prompts = self.cands.take_columns(slate)
        self.images = self._no_images  # the last slate's images go before this one's are made (memory)
        self.images = world.images.render(self.slate_prompts, self._u_images[t])
        self.pixels = world.images.last_pixels
        users = world.user_model
        scores = users.type_scores(self.requests, self.images, self.types)
        util = aggregate(scores, users.aggregation, axis=-1)
        probs = users.choice_probs(util)
        self.utilities[:] = util
        self.choice_probs[:] = probs

    def choose(self, choice: np.ndarray | None = None) -> np.ndarray:
        """The users choose among the shown columns (or are given ``choice``); the turn is recorded.

        The second half of :meth:`step`; call :meth:`show` first.

        A column given from outside (a person chose) records no rating: the
        turn's ``history_rewards`` entry is 0 and ``history_rated`` 0; the
        returned reward is still the simulated user's.

        Returns:
            ``(B,)`` rewards (float32 values, so the observation's history holds them exactly).
        """
        t = self.turn
        forced = self._no_choice if choice is None else np.asarray(choice, np.int64)
        kernels().record_turn(
            t, self.choice_probs, self.utilities, self._u_choice[t], self._u_reward[t], forced,
            self.slate_prompts.embeddings, self.images, self._reward_code, self._temperature, self.choice, self.reward,
            self.hist_prompts, self.hist_images, self.hist_choices, self.hist_mask, self.hist_slate_prompts,
            self.hist_slate_images, self.hist_rewards, self.hist_rated, self.cur_emb)
        self.cur = self.cands.take_columns(self.slate[self._users, self.choice])
        self.turn = t + 1
        self._turn.fill(t + 1)
        self._propose()  # the final observation shows the chosen prompt's expansions too
        return self.reward.copy()

    def request_kept(self) -> np.ndarray:
        """``(B,)`` whether the current prompt still holds the user's request (the generator judges)."""
        return np.asarray(self.world.candidates.keeps_request(self.cur, self.request), dtype=bool)

    def observation(self, out: dict[str, np.ndarray] | None = None, squeeze: bool = False) -> dict[str, np.ndarray]:
        """The observation arrays, batch-first: fresh copies, or written into ``out``.

        Args:
            out: Arrays of the observation's shapes (e.g. row slices of a
                larger batch) to fill instead of allocating new ones.
            squeeze: Drop the batch axis (a batch of one: the single env).
        """
        if self.shared:  # the state is the observation: it is returned, not copied
            if out is not None or squeeze:
                raise ValueError("a core that keeps its state in the observation returns that observation")
            return self._state
        if out is None:  # one copy of the state block, then the candidates
            block, out = self._plan.new(squeeze)
            block[self._plan.tail_start:] = self._state_block
        else:
            for key, value in self._state.items():
                out[key][...] = value
        out["candidates"][...] = self.cands.embeddings.reshape(out["candidates"].shape)
        return out

    def step_observe(self, slate: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:meth:`step`, then :meth:`observation`."""
        reward = self.step(slate)
        return reward, self.observation()

    def reset_observe(self, uniforms: np.ndarray, types: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """:meth:`reset`, then :meth:`observation`."""
        self.reset(uniforms, types)
        return self.observation()

    def observation_layout(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shape and dtype of every observation array of this batch."""
        return self.layout_of(self.config, self.world, self.B)

    @staticmethod
    def layout_of(config: EnvConfig, world: World, B: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shape and dtype of every observation array of ``B`` users of ``world`` under ``config``."""
        cfg, d = config, world.dim
        H, L, C = cfg.horizon, cfg.slate_size, cfg.num_candidates
        f32, i64 = np.dtype(np.float32), np.dtype(np.int64)
        return {
            "candidates": ((B, C, d), f32), "candidate_categories": ((B, C), i64),
            "action_mask": ((B, C), np.dtype(np.int8)), "turn": ((B,), i64),
            "initial_prompt": ((B, d), f32), "current_prompt": ((B, d), f32),
            "history_prompts": ((B, H, d), f32), "history_images": ((B, H, d), f32),
            "history_choices": ((B, H), i64), "history_mask": ((B, H), np.dtype(np.int8)),
            "history_rewards": ((B, H), f32), "history_rated": ((B, H), np.dtype(np.int8)),
            "history_slate_prompts": ((B, H, L, d), f32), "history_slate_images": ((B, H, L, d), f32),
        }


class ShardedCore:
    """``B`` users split into contiguous shards, each a :class:`BatchCore`, stepped on threads.

    Every user's computation depends only on its own row, so sharding changes
    nothing in the trajectories; the compiled kernels and numpy's array
    kernels release the interpreter lock, so shards run in parallel on
    several cores. It advances by :meth:`reset_observe` and
    :meth:`step_observe`: each shard resets or steps and writes its rows of
    the observation in one task on its thread. Reading an array attribute
    (``types``, ``cands``, ``choice``...) returns the shards' rows joined in
    order; each read makes a new joined array, so read once and keep the
    result.

    Args:
        world: The simulators.
        config: MDP sizes and reward.
        batch_size: Number of users ``B``.
        num_shards: Number of shards and worker threads.
        state: The observation arrays of all ``B`` users to keep the
            shards' state in and return as the observation (each shard holds
            row views of them; see :class:`BatchCore`); ``None``: fresh copies.
    """

    def __init__(self, world: World, config: EnvConfig, batch_size: int, num_shards: int,
                 state: dict[str, np.ndarray] | None = None):
        from concurrent.futures import ThreadPoolExecutor

        bounds = np.linspace(0, batch_size, num_shards + 1).astype(int)
        self.bounds = list(zip(bounds[:-1], bounds[1:]))
        self.shards = [BatchCore(world, config, b - a, None if state is None else {k: v[a:b] for k, v in
                                                                                   state.items()})
                       for a, b in self.bounds]
        self.B = batch_size
        self.world, self.config = world, config
        first = self.shards[0]
        self.layout, self.categories, self.prior_cdf = first.layout, first.categories, first.prior_cdf
        self._pool = ThreadPoolExecutor(num_shards, thread_name_prefix="pasta-core")
        self._buffers: ObservationBuffers | None = None
        self._shared = state

    @property
    def turn(self) -> int:
        """Turns played (the same in every shard)."""
        return self.shards[0].turn

    @property
    def done(self) -> bool:
        """Whether the episodes have reached the horizon."""
        return self.shards[0].done

    def _joined(self, name: str):
        first, *rest = self.parts(name)
        return first.concat(rest) if isinstance(first, Prompts) else np.concatenate([first, *rest])

    # Per-user arrays, the shards' rows joined in order (a new array on every read).
    types = property(lambda self: self._joined("types"), doc="``(B,)`` user types.")
    prompt_index = property(lambda self: self._joined("prompt_index"), doc="``(B,)`` initial prompt of each user.")
    request = property(lambda self: self._joined("request"), doc="``(B,)`` the users' requests (Prompts).")
    cur = property(lambda self: self._joined("cur"), doc="``(B,)`` current prompts (Prompts).")
    cands = property(lambda self: self._joined("cands"), doc="``(B, C)`` candidate prompts (Prompts).")
    slate = property(lambda self: self._joined("slate"), doc="``(B, L)`` last shown slates.")
    slate_prompts = property(lambda self: self._joined("slate_prompts"), doc="``(B, L)`` last shown prompts.")
    images = property(lambda self: self._joined("images"), doc="``(B, L, M, d)`` last rendered images.")
    pixels = property(lambda self: None if self.shards[0].pixels is None else self._joined("pixels"),
                      doc="``(B, L, M, h, w, 3)`` last images' pixels, or ``None``.")
    utilities = property(lambda self: self._joined("utilities"), doc="``(B, L)`` last column utilities.")
    choice_probs = property(lambda self: self._joined("choice_probs"), doc="``(B, L)`` last choice probabilities.")
    choice = property(lambda self: self._joined("choice"), doc="``(B,)`` last chosen columns.")

    def parts(self, name: str) -> list:
        """The value of attribute ``name`` per shard, unjoined (cheap; join only what you read)."""
        return [getattr(s, name) for s in self.shards]

    def locate(self, row: int) -> tuple[BatchCore, int]:
        """The shard holding user ``row`` and the user's row in it."""
        for shard, (a, b) in zip(self.shards, self.bounds):
            if a <= row < b:
                return shard, row - a
        raise IndexError(f"row {row} is out of range 0..{self.B - 1}")

    def draw_uniforms(self, rngs) -> np.ndarray:
        return self.shards[0].draw_uniforms(rngs)

    def _new_observation(self) -> dict[str, np.ndarray]:
        if self._shared is not None:
            return self._shared
        if self._buffers is None:
            layout = self.shards[0].observation_layout()
            self._buffers = ObservationBuffers({k: ((self.B, *s[1:]), dt) for k, (s, dt) in layout.items()})
        return self._buffers.new()[1]

    def step_observe(self, slate: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Each shard steps and writes its rows of the observation in one task on its thread."""
        out = self._new_observation()

        def task(shard: BatchCore, rows: np.ndarray, a: int, b: int) -> np.ndarray:
            reward = shard.step(rows)
            if not shard.shared:  # a shared shard's state already is its rows of the observation
                shard.observation({k: v[a:b] for k, v in out.items()})
            return reward

        futures = [self._pool.submit(task, shard, slate[a:b], a, b) for shard, (a, b) in zip(self.shards, self.bounds)]
        return np.concatenate([f.result() for f in futures]), out

    def reset_observe(self, uniforms: np.ndarray, types: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each shard resets and writes its rows of the observation in one task on its thread."""
        out = self._new_observation()

        def task(shard: BatchCore, a: int, b: int) -> None:
            shard.reset(uniforms[a:b], None if types is None else types[a:b])
            if not shard.shared:
                shard.observation({k: v[a:b] for k, v in out.items()})

        for f in [self._pool.submit(task, shard, a, b) for shard, (a, b) in zip(self.shards, self.bounds)]:
            f.result()
        return out

    def request_kept(self) -> np.ndarray:
        """``(B,)`` whether each user's current prompt still holds their request."""
        return np.concatenate([s.request_kept() for s in self.shards])

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False)


class ObservationBuffers:
    """Observation arrays carved from one allocation (64-byte aligned views), the plan made once.

    One block per step instead of a dozen keeps the allocator from handing
    memory back to the system and faulting it in again every step. The core
    keeps every array but the first (the candidates) in a block of the same
    layout (:meth:`tail`), so an observation is one copy of that block plus
    the candidates.

    Args:
        layout: Shape and dtype of every observation array, batch-first.
    """

    def __init__(self, layout: dict[str, tuple[tuple[int, ...], np.dtype]]):
        self.plan, total = [], 0
        for key, (shape, dtype) in layout.items():
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            self.plan.append((key, total, total + nbytes, np.dtype(dtype), tuple(shape)))
            total += -(-nbytes // 64) * 64
        self.total = total
        #: Where the arrays after the first start in a block.
        self.tail_start = self.plan[1][1] if len(self.plan) > 1 else total
        self._squeezed = [(k, a, b, dt, shape[1:]) for k, a, b, dt, shape in self.plan]

    def new(self, squeeze: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """A fresh block and its arrays (new memory every call: callers may keep them).

        Args:
            squeeze: Drop the leading (batch) axis of every array (for a batch of one).
        """
        block = np.empty(self.total, np.uint8)
        plan = self._squeezed if squeeze else self.plan
        return block, {key: np.ndarray(shape, dtype, block, a) for key, a, _, dtype, shape in plan}

    def tail(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """A zeroed block holding every array but the first, at the offsets it has in :meth:`new`'s block."""
        base = self.tail_start
        block = np.zeros(self.total - base, np.uint8)
        return block, {key: block[a - base:b - base].view(dtype).reshape(shape)
                       for key, a, b, dtype, shape in self.plan[1:]}

    def span(self, first: str, last: str) -> tuple[int, int]:
        """Byte range in :meth:`tail`'s block from array ``first`` to the end of array ``last`` (for one fill)."""
        offsets = {key: (a, b) for key, a, b, _, _ in self.plan}
        return offsets[first][0] - self.tail_start, offsets[last][1] - self.tail_start


def forced_types(options: dict | None, batch: int, num_types: int) -> np.ndarray | None:
    """The ``user_type`` reset option as a ``(batch,)`` array, checked; ``None`` if absent."""
    if not options or options.get("user_type") is None:
        return None
    types = np.asarray(options["user_type"])
    if types.dtype.kind not in "iu":
        raise ValueError(f"options['user_type'] must be integers 0..{num_types - 1}, got dtype {types.dtype}")
    types = np.broadcast_to(types, (batch,)) if types.ndim == 0 else types
    if types.shape != (batch,):
        raise ValueError(f"options['user_type'] must be one type or {batch} types, got shape {types.shape}")
    if types.min() < 0 or types.max() >= num_types:
        raise ValueError(f"options['user_type'] must be in 0..{num_types - 1}, got {types.tolist()}")
    return types.astype(np.int64)

