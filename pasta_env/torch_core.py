"""The synthetic world on any torch device: the batched core as tensor code, and a counter-based random stream.

:class:`TorchCore` advances ``B`` users of the synthetic world in lockstep
with torch operations over the whole batch, so the simulation stays on the
device beside the policy (a GPU: no data crosses per step). It computes what
:class:`pasta_env.core.BatchCore` computes with the compiled kernels, part
by part:

* the candidate generator (:func:`simulators.kernels.expand_candidates`:
  the option masks, each bank row's first allowed options, the excluded
  styles and settings, the related subjects, the first-turn bank);
* the image model (:func:`simulators.kernels.render_images`: the keep
  draws, the composed and normalised phrases, the noise bank);
* the user model's scores (the trunk-and-heads model, or the taste model),
  their aggregation, the choice and the reward (:func:`pasta_env.kernels.record_turn`);
* the observation and its history.

What equals the numba path. Given the same uniforms (:meth:`TorchCore.reset`
takes them), the candidates' phrase ids, the image-bank rows and every
integer draw are the same, and the embeddings, images, utilities and
rewards agree to float32 rounding (sums in another order: about ``1e-6``).
A choice is the same unless its uniform falls within rounding of a
cumulative probability (about one in a million). The device's own draws
(:class:`CounterUniforms`, what the torch vector env uses) are other
numbers than numpy's generators give for the same seed, so episodes differ
value by value but follow the same distributions; the tests compare both
(utilities, choices, rewards and the agents' ranking).
"""

from __future__ import annotations

from typing import Any, NoReturn

import numpy as np

from pasta_env.config import EnvConfig
from pasta_env.core import HISTORY_KEYS, BatchCore, UniformLayout
from pasta_env.rewards import EULER_GAMMA, reward_code
from pasta_env.worlds import World
from simulators.backends import require
from simulators.candidates.synthetic import SyntheticCandidateGenerator
from simulators.images.synthetic import SyntheticImageModel
from simulators.text import prompts as P
from simulators.users.neural import TrunkHeadsUserModel
from simulators.users.user_model import TasteUserModel

_M32 = 0xFFFFFFFF


def _mul32(x, c: int):
    """``(x * c) mod 2**32`` for int64 tensors of 32-bit values: split so no product leaves int64's range."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def _mix32(h):
    """A bijective 32-bit mixer (the avalanche step of MurmurHash3) on int64 tensors of 32-bit values."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


class CounterUniforms:
    """Uniforms computed from ``(seed, episode, draw)`` on the device: no generator state to carry.

    Each sub-environment has a 64-bit seed and counts its episodes; draw
    ``j`` of episode ``e`` is a hash of the three, so a batch of users draws
    its episode in a few elementwise operations on any device, and CPU and
    GPU give the same bits. The seed and episode are mixed into two 32-bit
    lanes (a 64-bit stream key: two of a million streams share one with
    probability about ``3e-8``); each draw mixes the draw index into the
    lanes and keeps 24 bits, so uniforms are multiples of ``2**-24`` in
    ``[0, 1)``, as float32 draws are.
    """

    def __init__(self, torch_module):
        self.torch = torch_module

    def keys(self, seeds, episodes):
        """``(a, b)``: the two 32-bit lanes of each stream, from int64 ``seeds`` and ``episodes`` ``(B,)``."""
        s0, s1 = seeds & _M32, (seeds >> 32) & _M32
        e0, e1 = episodes & _M32, (episodes >> 32) & _M32
        a = _mix32(s0 ^ 0x9E3779B9)
        b = _mix32(s1 ^ _mul32(a, 0x27D4EB2F) ^ 0x165667B1)
        a = _mix32(a ^ _mul32(e0, 0xC2B2AE3D) ^ b)
        b = _mix32(b ^ _mul32(e1 ^ 0x61C88647, 0x85EBCA77) ^ a)
        return a, b

    def draw(self, seeds, episodes, n: int):
        """``(B, n)`` float32 uniforms of episode ``episodes`` of streams ``seeds`` (int64 tensors ``(B,)``)."""
        torch = self.torch
        a, b = self.keys(seeds, episodes)
        j = torch.arange(n, device=seeds.device, dtype=torch.int64)[None, :]
        x = _mix32(a[:, None] ^ _mul32(j + 1, 0x9E3779B1))
        y = _mix32(b[:, None] ^ _mul32(x, 0x7FEB352D) ^ j)
        out = _mix32(x ^ _mul32(y, 0x846CA68B))
        return (out >> 8).to(torch.float32) * (2.0 ** -24)


def _unit(torch, x):
    """Rows of ``x`` (last axis) scaled to unit length; a zero row stays zero (the kernels' floor on the norm)."""
    return torch.nn.functional.normalize(x, dim=-1, eps=1e-8)


def _below_threshold(q: float) -> float:
    """The float32 ``t`` with ``x < t`` exactly when ``x < q`` for every float32 ``x`` (``q`` a float64)."""
    t = np.float32(q)
    return float(t if float(t) >= q else np.nextafter(t, np.float32(np.inf)))


def _refuse(world: World, part: object, what: str) -> NoReturn:
    raise ValueError(f"the torch backend runs the synthetic world's parts; world {world.name!r} has a "
                     f"{type(part).__name__} {what}. Leave device unset for the numpy path, which runs every world")


class DeviceWorld:
    """The synthetic world's tables as tensors on one device (the candidate, image and user models).

    Args:
        world: A world of the synthetic parts (:class:`SyntheticCandidateGenerator`,
            :class:`SyntheticImageModel`, a :class:`TrunkHeadsUserModel` or
            :class:`TasteUserModel`, phrase-id initial prompts).
        device: A ``torch.device``.

    Raises:
        ValueError: The world has other parts (the torch backend runs the synthetic world only).
    """

    def __init__(self, world: World, device):
        torch = self.torch = require("torch", "the torch backend of the synthetic world")
        gen, images, users, initial = world.candidates, world.images, world.user_model, world.initial_prompts
        # The very classes, not subclasses: a subclass may compute otherwise than the port does.
        if not isinstance(gen, SyntheticCandidateGenerator) or type(gen) is not SyntheticCandidateGenerator:
            _refuse(world, gen, "candidate generator")
        if not isinstance(images, SyntheticImageModel) or type(images) is not SyntheticImageModel:
            _refuse(world, images, "image model")
        if not isinstance(users, (TrunkHeadsUserModel, TasteUserModel)) \
                or type(users) not in (TrunkHeadsUserModel, TasteUserModel):
            _refuse(world, users, "user model")
        if not isinstance(initial, P.PhrasePrompts):
            _refuse(world, initial, "initial prompts")
        self.device = device
        space = gen.space
        long, f32 = torch.int64, torch.float32

        def t(a, dtype):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

        self.S, self.d = P.NUM_SLOTS, space.dim
        self.k, self.n_reph = gen.per_category, gen.n_reph
        self.C = gen.num_candidates
        self.weighted = t(space.weighted, f32)  # (S, ids + 1, d); the last row (the empty id) is zero
        self.empty_row = space.weighted.shape[1] - 1
        # The same rows flat, (S * (ids + 1), d): slot s's row of id i at s * (ids + 1) + i (one gather for all slots).
        self.weighted_flat = self.weighted.reshape(-1, space.dim)
        self.slot_offset = torch.arange(P.NUM_SLOTS, device=device) * space.weighted.shape[1]
        self.bank_rows = gen.order_bank.shape[0]
        self.neighbours, self.related, self.canonical = (t(gen.neighbours, long), t(gen.related, long),
                                                         t(gen.canonical, long))
        self.order_bank, self.detail_bank = t(gen.order_bank, long), t(gen.detail_bank, long)
        self.excl_bank, self.related_bank = t(gen.excl_bank, long), t(gen.related_bank, long)
        self.excl_slot = t(gen.excl_slot, long)
        self.opt_slot, self.opt_rank = t(gen.opt_slot, long), t(gen.opt_rank, long)
        self.opt_gate = t(gen.opt_gate, long)
        # The neighbour rank of each option (an add-detail option's draw index is no rank: clipped, never read).
        self.reword_rank = self.opt_rank.clamp(max=gen.neighbours.shape[1] - 1)
        kind = t(gen.opt_kind, long)
        self.is_reword, self.is_framing, self.is_add = kind == 0, kind == 1, kind == 2
        self.replaceable = t(gen.replaceable[gen.n_reph:], torch.bool)
        self.categories = t(gen.category_of, long)
        self._first_turn(gen)
        # The image model: keep draws and noise rows by bank row, the keep threshold by phrase count.
        cfg = images.config
        self.keep_bank, self.noise_bank = t(images.keep_bank, f32), t(images.noise_bank, f32)
        self.image_bank = images.keep_bank.shape[0]
        q = [min(max(1.0 - cfg.drop_per_phrase * (n - cfg.free_phrases), cfg.min_keep), 1.0)
             for n in range(P.FRAMING + 1)]
        self.keep_threshold = t([_below_threshold(x) for x in q], f32)
        # The user model.
        self.temperature = float(users.temperature)
        self.aggregation = users.aggregation
        self.prior_cdf = t(np.cumsum(users.prior), torch.float64)
        self.num_types = users.num_types
        if isinstance(users, TrunkHeadsUserModel):
            self.trunk = True
            self.w_img, self.w_agree = t(users._w_img, f32), t(users._w_agree, f32)
            self.trunk_b, self.a, self.c = t(users.trunk_b, f32), t(users._a, f32), t(users._c, f32)
            self.h, self.head_b = t(users._h, f32), t(users.head_b, f32)
        else:
            self.trunk = False
            self.tastes = t(users.scale * users.tastes, f32)
            self.intent, self.bias = float(users.intent), t(users.bias, f32)
        self.initial_ids = t(initial.ids, long)
        self.initial_emb = t(initial.embeddings, f32)
        self.space = space

    def _first_turn(self, gen: SyntheticCandidateGenerator) -> None:
        """The candidate bank's requests, found by a hash of their ids (sorted, for a binary search)."""
        torch = self.torch
        self.first = bool(gen.first_turn)
        if not self.first:
            return
        reqs = np.stack([np.frombuffer(key, np.int32) for key in gen.first_turn]).astype(np.int64)
        given = np.stack(list(gen.first_turn.values()))
        keys = self._hash(torch.as_tensor(reqs, device=self.device))
        order = torch.argsort(keys)
        self.first_keys = keys[order]
        self.first_reqs = torch.as_tensor(reqs, device=self.device)[order]
        self.first_ids = torch.as_tensor(given.astype(np.int64), device=self.device)[order]
        self.first_emb = torch.as_tensor(gen.space.embed(given).astype(np.float32), device=self.device)[order]

    def _hash(self, ids):
        """An int64 key of each ``(..., S)`` prompt row: two polynomial hashes modulo ``2**31 - 1``."""
        torch, p = self.torch, 2 ** 31 - 1
        h1 = torch.full_like(ids[..., 0], 17)
        h2 = torch.full_like(ids[..., 0], 29)
        for s in range(ids.shape[-1]):
            v = ids[..., s] + 2
            h1 = (h1 * 1_000_003 + v) % p
            h2 = (h2 * 999_983 + v * 7) % p
        return h1 * (2 ** 31) + h2

    # --- the candidate generator -------------------------------------------------------------------------
    def compose(self, ids):
        """Unnormalised embeddings ``(..., d)`` of ``(..., S)`` prompts (slots summed in order, as the kernels do)."""
        w = self.weighted
        safe = ids.clamp(min=-1) % w.shape[1]  # -1 (empty) indexes the zero row
        out = w[0][safe[..., 0]]
        for s in range(1, ids.shape[-1]):
            out = out + w[s][safe[..., s]]
        return out

    def expand(self, cur, u):
        """Candidates ``(B, C, S)`` int64 and their unit embeddings ``(B, C, d)`` of ``(B, S)`` prompts."""
        torch = self.torch
        B, k, nr = cur.shape[0], self.k, self.n_reph
        rows = (u * self.bank_rows).long()
        empty = self.empty_row
        base = self.compose(cur)
        # Which options apply to each prompt.
        at = cur[:, self.opt_slot]
        at_safe = torch.where(at >= 0, at, empty)
        ok_reword = self.is_reword & (at >= 0) & (self.neighbours[at_safe, self.reword_rank] >= 0)
        ok_add = self.is_add & (at < 0) & (cur[:, self.opt_gate] >= 0)
        n_reword = ok_reword.sum(1, keepdim=True)
        n_add = ok_add.sum(1, keepdim=True)
        allowed = ok_reword | ok_add | (self.is_framing & (n_reword < k))
        details = self.detail_bank[rows]  # (B, options of the add-detail block)
        fallback = self.replaceable & (details != cur[:, P.DETAIL_A:P.DETAIL_A + 1]) \
            & (details != cur[:, P.DETAIL_B:P.DETAIL_B + 1])
        allowed = torch.cat([allowed[:, :nr], torch.where(n_add < k, fallback, allowed[:, nr:])], 1)
        # Each block's first k options in the row's ranking: the allowed ones first.
        order = self.order_bank[rows]
        ranked = allowed.gather(1, order)
        picks = []
        for lo, hi in ((0, nr), (nr, order.shape[1])):
            n = hi - lo
            key = (~ranked[:, lo:hi]).long() * n + torch.arange(n, device=cur.device)
            first = torch.topk(key, k, dim=1, largest=False, sorted=True).indices
            picks.append(order[:, lo:hi].gather(1, first))
        reword, add = picks
        # Style and leap draws: the first k of each ranking, skipping the current (canonical) value.
        current = cur[:, self.excl_slot]
        current = torch.where(current >= 0, self.canonical[current.clamp(min=0)], -1)
        bank = self.excl_bank[rows]  # (B, 3, k + 1)
        skip = (bank[..., :k] == current[..., None]).long().cummax(-1).values.bool()
        vals = torch.where(skip, bank[..., 1:], bank[..., :k])
        # Single-slot edits: reword, add detail, change style, change subject.
        s_reword, s_add = self.opt_slot[reword], self.opt_slot[add]
        old_reword = cur.gather(1, s_reword)
        new_reword = self.neighbours[torch.where(old_reword >= 0, old_reword, empty), self.opt_rank[reword]]
        new_add = details.gather(1, add - nr)
        subject = cur[:, P.BASE:P.BASE + 1]
        new_subject = self.related[subject, self.related_bank[rows]]
        slots = torch.cat([s_reword, s_add, torch.full_like(s_add, P.STYLE), torch.full_like(s_add, P.BASE)], 1)
        new = torch.cat([new_reword, new_add, vals[:, 0], new_subject], 1)
        old = cur.gather(1, slots)
        single = cur[:, None, :].expand(B, 4 * k, self.S).clone()
        single.scatter_(2, slots[..., None], new[..., None])
        w = self.weighted
        raw = (w[slots, new] - w[slots, torch.where(old >= 0, old, empty)]) + base[:, None, :]
        # Creative leap: the subject in a new setting and a new style; nothing else.
        leap = torch.full((B, k, self.S), -1, dtype=cur.dtype, device=cur.device)
        leap[..., P.BASE] = subject
        leap[..., P.SETTING] = vals[:, 2]
        leap[..., P.STYLE] = vals[:, 1]
        cands = torch.cat([single, leap], 1)
        emb = _unit(torch, torch.cat([raw, self.compose(leap)], 1))
        if self.first:
            cands, emb = self._first_candidates(cur, cands, emb)
        return cands, emb

    def _first_candidates(self, cur, cands, emb):
        """Where the prompt is one of the bank's requests: that request's candidates."""
        torch = self.torch
        keys = self._hash(cur)
        at = torch.searchsorted(self.first_keys, keys).clamp(max=len(self.first_keys) - 1)
        hit = (self.first_reqs[at] == cur).all(-1)
        return (torch.where(hit[:, None, None], self.first_ids[at], cands),
                torch.where(hit[:, None, None], self.first_emb[at], emb))

    # --- the image model ----------------------------------------------------------------------------------
    def render(self, prompts, u):
        """Unit image embeddings ``(B, L, M, d)`` of ``(B, L, S)`` prompts from ``(B, L, M)`` uniforms."""
        torch = self.torch
        filled = prompts >= 0
        n = filled[..., :P.FRAMING].sum(-1)  # (B, L) phrases that may drop
        threshold = self.keep_threshold[n]
        rows = (u.double() * self.image_bank).long()  # (B, L, M)
        keep = filled[:, :, None, :] & (self.keep_bank[rows] < threshold[..., None, None])
        # Each image's kept phrases summed: (B, L, M, S) keep flags times the prompt's (B, L, S, d) rows.
        phrases = self.weighted_flat[torch.where(filled, prompts, self.empty_row) + self.slot_offset]
        clean = torch.matmul(keep.to(torch.float32), phrases)
        return _unit(torch, _unit(torch, clean) + self.noise_bank[rows])

    # --- the user model -----------------------------------------------------------------------------------
    def scores(self, requests, images, types):
        """Scores ``(B, L, M)`` of ``(B, L, M, d)`` images for one type per user, against ``(B, d)`` requests."""
        torch = self.torch
        B, L, M, d = images.shape
        flat = images.reshape(B, L * M, d)
        if self.trunk:
            # (B, L*M, d) @ (d, h): torch folds the users into the rows of one matrix product.
            hidden = torch.relu(flat @ self.w_img + (flat * requests[:, None, :]) @ self.w_agree + self.trunk_b)
            v = self.a[types] + requests * self.c[types]
            s = torch.bmm(flat, v[:, :, None]) + torch.bmm(hidden, self.h[types][:, :, None])
            return (s[..., 0] + self.head_b[types][:, None]).reshape(B, L, M)
        w = self.tastes[types] + self.intent * requests
        return (torch.bmm(flat, w[:, :, None])[..., 0] + self.bias[types][:, None]).reshape(B, L, M)

    def aggregate(self, scores):
        """Column utilities ``(B, L)`` from image scores ``(B, L, M)``."""
        torch = self.torch
        if self.aggregation == "mean":
            return scores.sum(-1) * (1.0 / scores.shape[-1])
        if self.aggregation == "max":
            return scores.max(-1).values
        w = torch.exp(scores - scores.max(-1, keepdim=True).values)
        return (w * scores).sum(-1) / w.sum(-1)


class TorchCore:
    """``B`` users of the synthetic world advanced in lockstep on a torch device.

    The state and the observation are tensors on ``device``; the observation
    has the numpy core's keys, shapes and dtypes
    (:meth:`BatchCore.layout_of`). Randomness comes as one ``(B, n)`` tensor
    of uniforms per episode laid out as :class:`UniformLayout` says (the
    numpy core's layout), so the same uniforms give the same episode as the
    numba path within rounding (see the module's notes).

    Args:
        world: A synthetic world (see :class:`DeviceWorld`).
        config: MDP sizes and reward.
        batch_size: Number of users ``B``.
        device: A torch device (``torch.device`` or its name).
        tables: A :class:`DeviceWorld` of ``world`` on ``device`` to share (built when ``None``).
        chunk: Users computed together: a step runs over the batch in slices
            of this many (the numbers do not depend on it). ``None``: 2,048 on
            a CPU (the slice's tensors stay in cache) and 262,144 on a GPU
            (temporaries stay within a few GB at a million users).
    """

    def __init__(self, world: World, config: EnvConfig, batch_size: int, device: Any,
                 tables: DeviceWorld | None = None, chunk: int | None = None):
        torch = self.torch = require("torch", "the torch backend of the synthetic world")
        self.device = torch.device(device)
        if chunk is None:
            chunk = 2048 if self.device.type == "cpu" else 262_144
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        self.chunk = chunk
        self.tables = tables or DeviceWorld(world, self.device)
        if self.tables.C != config.num_candidates:
            raise ValueError(f"the world proposes {self.tables.C} candidates per turn but the config asks for "
                             f"{config.num_candidates}")
        self.world, self.config, self.B = world, config, batch_size
        H, L, M = config.horizon, config.slate_size, config.images_per_prompt
        self.layout = UniformLayout(H, world.candidates.uniforms_per_turn, L * M)
        self._reward_code = reward_code(config.reward)
        dev = self.device
        self.state = {key: torch.zeros(shape, dtype=getattr(torch, str(dtype)), device=dev)
                      for key, (shape, dtype) in BatchCore.layout_of(config, world, batch_size).items()}
        self.state["candidate_categories"][:] = self.tables.categories
        self.state["action_mask"].fill_(1)
        self.turn = 0
        self.u = torch.zeros((batch_size, self.layout.size), dtype=torch.float32, device=dev)
        self.types = torch.zeros(batch_size, dtype=torch.int64, device=dev)
        self.prompt_index = torch.zeros(batch_size, dtype=torch.int64, device=dev)
        # Phrase ids of the current prompts (B, S) and the candidates (B, C, S); set by reset.
        self.cur_ids: Any = None
        self.cand_ids: Any = None
        self.slate = torch.zeros((batch_size, L), dtype=torch.int64, device=dev)
        self.choice = torch.zeros(batch_size, dtype=torch.int64, device=dev)
        self.utilities = torch.zeros((batch_size, L), dtype=torch.float32, device=dev)
        self.choice_probs = torch.zeros((batch_size, L), dtype=torch.float32, device=dev)
        self.reward = torch.zeros(batch_size, dtype=torch.float32, device=dev)

    @property
    def done(self) -> bool:
        """Whether the episodes have reached the horizon."""
        return self.turn >= self.config.horizon

    def reset(self, uniforms, types=None) -> None:
        """Start new episodes for all users from ``(B, layout.size)`` uniforms (a tensor, or an array).

        Args:
            uniforms: The episode's uniforms, laid out as :class:`UniformLayout` says.
            types: Optional ``(B,)`` user types to play instead of drawing them.
        """
        torch, tab = self.torch, self.tables
        u = torch.as_tensor(uniforms, dtype=torch.float32, device=self.device)
        if u.shape != self.u.shape:
            raise ValueError(f"uniforms must have shape {tuple(self.u.shape)}, got {tuple(u.shape)}")
        self.u = u
        drawn = torch.searchsorted(tab.prior_cdf, u[:, 0].double(), right=True).clamp(max=tab.num_types - 1)
        self.types = drawn if types is None else torch.as_tensor(types, dtype=torch.int64, device=self.device)
        n = len(tab.initial_ids)
        self.prompt_index = (u[:, 1] * n).long().clamp(max=n - 1)  # a float32 product, as numpy's
        self.cur_ids = tab.initial_ids[self.prompt_index]
        st = self.state
        for key in HISTORY_KEYS:
            st[key].zero_()
        st["initial_prompt"].copy_(tab.initial_emb[self.prompt_index])
        st["current_prompt"].copy_(st["initial_prompt"])
        self.turn = 0
        st["turn"].fill_(0)
        self._propose()

    def _chunks(self):
        """Row slices of at most :attr:`chunk` users (each computed alone: bounded temporaries, warm caches)."""
        return [slice(a, min(a + self.chunk, self.B)) for a in range(0, self.B, self.chunk)]

    def _propose(self) -> None:
        torch, tab = self.torch, self.tables
        col = self.layout.candidates(self.turn).start
        ids = torch.empty((self.B, tab.C, tab.S), dtype=torch.int64, device=self.device)
        emb = torch.empty((self.B, tab.C, tab.d), dtype=torch.float32, device=self.device)
        for rows in self._chunks():
            ids[rows], emb[rows] = tab.expand(self.cur_ids[rows], self.u[rows, col])
        self.cand_ids = ids
        self.state["candidates"] = emb

    def step(self, slate) -> Any:
        """Advance every user by one turn with ``(B, L)`` int64 slates of valid indices (repeats filled).

        Returns:
            ``(B,)`` float32 rewards.
        """
        torch, cfg, t = self.torch, self.config, self.turn
        B, L = self.B, cfg.slate_size
        self.slate = distinct_slates(torch, slate, cfg.num_candidates)
        self.utilities = torch.empty((B, L), dtype=torch.float32, device=self.device)
        self.choice_probs = torch.empty_like(self.utilities)
        self.choice = torch.empty(B, dtype=torch.int64, device=self.device)
        self.reward = torch.empty(B, dtype=torch.float32, device=self.device)
        cur = torch.empty_like(self.cur_ids)
        for rows in self._chunks():
            cur[rows] = self._turn_rows(rows, t)
        self.cur_ids = cur
        self.turn = t + 1
        self.state["turn"].fill_(t + 1)
        self._propose()
        return self.reward

    def _turn_rows(self, rows: slice, t: int):
        """Turn ``t`` of users ``rows``: images, scores, choice, reward and the record; returns their new prompts."""
        torch, tab, cfg, lay, st = self.torch, self.tables, self.config, self.layout, self.state
        L, M = cfg.slate_size, cfg.images_per_prompt
        slate = self.slate[rows]
        B = slate.shape[0]
        u = self.u[rows]
        ids = self.cand_ids[rows].gather(1, slate[..., None].expand(B, L, tab.S))
        emb = st["candidates"][rows].gather(1, slate[..., None].expand(B, L, tab.d))
        images = tab.render(ids, u[:, lay.images(t)].reshape(B, L, M))
        util = tab.aggregate(tab.scores(st["initial_prompt"][rows], images, self.types[rows]))
        probs = torch.softmax(tab.temperature * util, -1)
        choice = (torch.cumsum(probs, -1) < u[:, lay.choice(t), None]).sum(-1).clamp(max=L - 1)
        reward = self._reward(util, probs, choice, u[:, lay.reward(t)])
        self.utilities[rows], self.choice_probs[rows] = util, probs
        self.choice[rows], self.reward[rows] = choice, reward
        # The turn's record.
        means = images.sum(2) * (1.0 / M)
        pick = choice[:, None, None].expand(B, 1, tab.d)
        chosen = emb.gather(1, pick)[:, 0]
        st["history_slate_images"][rows, t] = means
        st["history_slate_prompts"][rows, t] = emb
        st["history_prompts"][rows, t] = chosen
        st["history_images"][rows, t] = means.gather(1, pick)[:, 0]
        st["history_choices"][rows, t] = choice
        st["history_mask"][rows, t] = 1
        st["history_rewards"][rows, t] = reward
        st["history_rated"][rows, t] = 1
        st["current_prompt"][rows] = chosen
        return ids.gather(1, choice[:, None, None].expand(B, 1, tab.S))[:, 0]

    def _reward(self, util, probs, choice, u):
        """The turn's reward (float32), as :func:`pasta_env.kernels.record_turn` computes it."""
        torch, tau = self.torch, self.tables.temperature
        if self._reward_code == 0:  # experienced: IV(u) + (g - gamma) / tau, in float64
            z = tau * util.double()
            iv = torch.logsumexp(z, -1)
            shock = -torch.log(-torch.log(u.double() + 2.0 ** -25))
            return (iv / tau + (shock - EULER_GAMMA) / tau).float()
        if self._reward_code == 1:
            return util.gather(1, choice[:, None])[:, 0]
        return (probs * util).sum(-1)

    def observation(self, copy: bool = True) -> dict[str, Any]:
        """The observation tensors (fresh copies, or the state itself with ``copy=False``).

        The candidates are new tensors every turn either way; with
        ``copy=False`` the other tensors are overwritten by the next step.
        """
        if not copy:
            return dict(self.state)
        return {key: (v if key == "candidates" else v.clone()) for key, v in self.state.items()}


def distinct_slates(torch, slates, num_candidates: int):
    """Slates with each repeated index replaced by the lowest candidate index the slate lacks (column order).

    The rule of :func:`pasta_env.spaces.distinct_slates`, as tensor code.
    """
    B, L = slates.shape
    cols = torch.arange(L, device=slates.device)
    below = cols[:, None] > cols[None, :]  # [j, i]: column i is left of column j
    earlier = ((slates[:, :, None] == slates[:, None, :]) & below).any(-1)  # (B, L): repeats an earlier column
    used = torch.zeros((B, num_candidates), dtype=torch.bool, device=slates.device)
    used.scatter_(1, slates, True)
    key = used.long() * num_candidates + torch.arange(num_candidates, device=slates.device)
    free = torch.topk(key, min(L, num_candidates), dim=1, largest=False, sorted=True).indices
    rank = (earlier.long().cumsum(1) - 1).clamp(min=0)
    return torch.where(earlier, free.gather(1, rank), slates)
