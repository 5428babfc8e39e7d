"""Candidate generators: turn the current prompt into ``L_C`` prompt expansions.

:class:`SyntheticCandidateGenerator` is the synthetic world's stand-in for
PASTA's language model: it proposes ``k`` (5) expansions in each of PASTA's
five categories, batch-first and deterministic given the episode's uniforms:

============== ===========================================================
category       what changes
============== ===========================================================
rephrase       one part is reworded: the subject, setting, style, lighting,
               mood, palette or composition is swapped for a paraphrase
               (:mod:`simulators.text.requests`; for lighting, mood, palette
               and composition, then one of their nearest neighbours); only
               when fewer than ``k`` such
               rewordings exist does a framing ("a view of") change or
               appear
add detail     an empty setting/lighting/mood/palette/composition/detail
               slot is filled: nothing the prompt already fixes (when all
               are full, a detail is replaced)
change style   the style is replaced by another style (a request's own
               style too: it is one part, not stacked under another)
change subject the subject is replaced by one of its twelve nearest
               subjects (embedding cosine: a related one); everything else
               (setting, style, ...) is kept
creative leap  the subject in a new setting and a new style (neither the
               current one); other modifiers are dropped
============== ===========================================================

The candidates of a turn are distinct: the categories change disjoint parts
of the prompt and the draws within a category are distinct.

How the draws work: every possible edit of a category is an *option*. A
turn takes one row of a fixed bank of random orderings of every category's
options (part of the world, drawn once from its seed) and keeps, per
category, the first ``k`` options that are allowed (e.g. not the current
style). One compiled kernel (:func:`simulators.kernels.expand_candidates`)
does a turn for any batch size.
"""

from __future__ import annotations

import numpy as np

from simulators.contract import Prompts
from simulators.jit import kernels
from simulators.text import prompts as P

CATEGORIES: tuple[str, ...] = ("rephrase", "add detail", "change style", "change subject", "creative leap")
PER_CATEGORY = 5
NEIGHBOURS = 5
#: Related subjects a change of subject draws from.
RELATED = 12
# The base slot is never empty: option masks use it as "a slot that is always filled".
_ALWAYS_FILLED = P.BASE
# Kinds whose rewordings are paraphrases only (their nearest phrases are another subject or style:
# the change-subject and change-style categories' business).
_PARAPHRASE_ONLY = ("subject", "setting", "style")


def _neighbour_table(space: P.PromptSpace) -> np.ndarray:
    """``(ids + 1, NEIGHBOURS)``: each id's rewordings, ``-1`` where it has no more.

    An id's paraphrases come first (``space.groups``); the modifiers' rows
    are then filled with their nearest phrases of the same kind (embedding
    cosine); subjects, settings, styles and free text get paraphrases only. The last
    row (the empty id) lists framings, so that a prompt without framing can
    be rephrased by adding one.
    """
    vocab = space.vocab
    table = np.full((len(space.table), NEIGHBOURS), -1, np.int32)
    fill = np.zeros(len(space.table), np.intp)
    for group in space.groups:
        for i in group:
            for j in group:
                if j != i and fill[i] < NEIGHBOURS and j not in table[i, :fill[i]]:
                    table[i, fill[i]] = j
                    fill[i] += 1
    for kind, (start, stop) in vocab.ranges.items():
        if kind in _PARAPHRASE_ONLY:
            continue
        emb = space.table[start:stop]
        sim = emb @ emb.T
        np.fill_diagonal(sim, -np.inf)
        near = np.argsort(-sim, axis=1) + start
        for i in range(start, stop):
            for j in near[i - start]:
                if fill[i] == NEIGHBOURS:
                    break
                if j not in table[i, :fill[i]]:
                    table[i, fill[i]] = j
                    fill[i] += 1
    f0, f1 = vocab.ranges["framing"]
    if f1 - f0 < NEIGHBOURS + 1:
        raise ValueError(f"the vocabulary needs at least {NEIGHBOURS + 1} framings, got {f1 - f0}")
    table[-1] = np.arange(f0, f0 + NEIGHBOURS)
    return table


def _related_table(space: P.PromptSpace) -> np.ndarray:
    """``(ids + 1, RELATED)``: the vocabulary subjects related to each id (itself and its rewordings left out).

    Related: the subjects of a vocabulary subject's own group (animal, food...) first, then the
    nearest by cosine (of ``space.relate``: one encoder for every text) after removing the subjects'
    mean direction (what all subjects share says nothing about which are alike); free text by that
    cosine alone.
    """
    a, b = space.vocab.ranges["subject"]
    table = space.table if space.relate is None else space.relate
    mean = table[a:b].mean(axis=0)
    centred = table - mean
    centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-8)
    sim = centred @ centred[a:b].T  # (ids + 1, subjects)
    groups = np.array(space.vocab.subject_groups)
    sim[a:b] += 2.0 * (groups[:, None] == groups[None, :])
    for group in space.groups:  # a subject's paraphrase is not another subject
        for i in group:
            for j in group:
                if a <= j < b:
                    sim[i, j - a] = -np.inf
    for i in range(a, b):
        sim[i, i - a] = -np.inf
    return (np.argsort(-sim, axis=1)[:, :RELATED] + a).astype(np.int32)


class SyntheticCandidateGenerator:
    """``k`` expansions in each of five categories, from the phrase vocabulary.

    Args:
        space: The prompt space (vocabulary, embeddings, free texts).
        seed: Seed of the world's fixed bank of rankings.
        per_category: Candidates per category ``k`` (1 to 5).
        bank_rows: Rows of the ranking bank.
        first_turn: ``(requests, candidates)``: ``(N, S)`` requests and their ``(N, C, S)`` candidates
            (a language model's, from a candidate bank), proposed whenever the prompt to expand is
            one of those requests; other prompts are expanded by the rules.
    """

    categories = CATEGORIES

    def __init__(self, space: P.PromptSpace, seed: int = 0, per_category: int = PER_CATEGORY,
                 bank_rows: int = 8192, first_turn: tuple[np.ndarray, np.ndarray] | None = None):
        if not 1 <= per_category <= NEIGHBOURS:
            raise ValueError(f"candidates per category must be in 1..{NEIGHBOURS}, got {per_category}")
        self.space = space
        self.per_category = k = per_category
        self.num_candidates = k * len(CATEGORIES)
        self.category_of = np.repeat(np.arange(len(CATEGORIES)), k).astype(np.int64)
        self.neighbours = _neighbour_table(space)
        self.related = _related_table(space)
        # The vocabulary phrase a paraphrase rewords (itself for any other id): a new style or setting
        # must differ from the current one however it is worded.
        self.canonical = np.arange(len(space.table), dtype=np.int32)
        for group in space.groups:
            own = [i for i in group if i < space.num_phrases]
            for i in group:
                if own:
                    self.canonical[i] = own[0]
        self.first_turn: dict[bytes, np.ndarray] = {}
        if first_turn is not None:
            requests, cands = first_turn
            if cands.shape[1] != self.num_candidates:
                raise ValueError(f"the first-turn candidates hold {cands.shape[1]} per request; the generator "
                                 f"proposes {self.num_candidates}")
            self.first_turn = {np.ascontiguousarray(r, np.int32).tobytes(): c.astype(np.int32)
                               for r, c in zip(requests, cands)}
        vocab = space.vocab
        rng = np.random.default_rng(seed)
        #: Uniforms consumed per turn and user.
        self.uniforms_per_turn = 1
        self._bank_rows = bank_rows
        self._build_masked_options(vocab, rng)
        self._build_excluding_options(vocab, rng)

    def _build_masked_options(self, vocab: P.Vocabulary, rng: np.random.Generator) -> None:
        """Rephrase options (slot, neighbour rank) and add-detail options (slot, draw j).

        Add-detail option ``(s, j)`` puts the ``j``-th phrase of a random
        ordering of slot ``s``'s phrases (a row of ``detail_bank``) into slot
        ``s``; ``j < k + 2`` leaves room for the two excluded phrases of the
        replace-a-detail fallback.
        """
        k = self.per_category
        draws = k + 2
        slot, value, gate, orders = [], [], [], []
        for s in P.REPHRASE_SLOTS:
            slot += [s] * NEIGHBOURS
            value += list(range(NEIGHBOURS))
            gate += [_ALWAYS_FILLED] * NEIGHBOURS
        n_reph = len(slot)
        for s in P.DETAIL_SLOTS:
            a, b = vocab.slot_range(s)
            if b - a < draws:
                raise ValueError(f"slot {P.SLOTS[s]} has {b - a} phrases; need at least {draws}")
            slot += [s] * draws
            value += list(range(draws))
            gate += [P.DETAIL_A if s == P.DETAIL_B else _ALWAYS_FILLED] * draws
            orders.append(a + np.argsort(rng.random((self._bank_rows, b - a)), axis=1)[:, :draws])
        self.detail_bank: np.ndarray = np.concatenate(orders, axis=1).astype(_id_dtype(vocab))  # (rows, 7 * draws)
        self.opt_slot = np.array(slot, np.intp)
        self.opt_rank = np.array(value, np.intp)
        self.opt_gate = np.array(gate, np.intp)
        n = len(slot)
        self.n_reph = n_reph
        is_reph = np.arange(n) < n_reph
        # Option kind for the kernel: 0 reword a filled slot, 1 the framing (when fewer than k others), 2 add detail.
        self.opt_kind = np.where(is_reph, np.where(self.opt_slot == P.FRAMING, 1, 0), 2).astype(np.int8)
        self.replaceable = ~is_reph & np.isin(self.opt_slot, (P.DETAIL_A, P.DETAIL_B))
        # Each bank row ranks the rephrase options and the add-detail options; a turn takes, per block,
        # the first k allowed options in that order (then disallowed ones, should fewer than k apply).
        ranks = np.concatenate([np.argsort(rng.random((self._bank_rows, n_reph)), 1),
                                np.argsort(rng.random((self._bank_rows, n - n_reph)), 1)], axis=1)
        # (Small integer types keep the banks in cache: a turn reads one random row of each.)
        self.order_bank = np.concatenate([np.argsort(ranks[:, :n_reph], 1), n_reph + np.argsort(ranks[:, n_reph:], 1)],
                                         axis=1).astype(np.int8 if n < 128 else np.int16)

    def _build_excluding_options(self, vocab: P.Vocabulary, rng: np.random.Generator) -> None:
        """Style, related-subject and leap draws: ``k`` distinct values but one excluded value."""
        k = self.per_category
        # (slot compared against, phrase range) of: change style, leap style, leap setting.
        blocks = [(P.STYLE, P.STYLE), (P.STYLE, P.STYLE), (P.SETTING, P.SETTING)]
        self.excl_slot = np.array([b[0] for b in blocks], np.intp)
        orders = []
        for _, s in blocks:
            a, b = vocab.slot_range(s)
            if b - a < k + 1:
                raise ValueError(f"slot {P.SLOTS[s]} has {b - a} phrases; need at least {k + 1}")
            orders.append(a + np.argsort(rng.random((self._bank_rows, b - a)), 1)[:, : k + 1])
        self.excl_bank: np.ndarray = np.stack(orders, axis=1).astype(_id_dtype(vocab))  # (rows, 3, k + 1)
        # Change subject: the first k of a random order of the current subject's related subjects.
        self.related_bank = np.argsort(rng.random((self._bank_rows, RELATED)), 1)[:, :k].astype(np.int8)

    @staticmethod
    def ranking_scores(candidates: np.ndarray, request: np.ndarray, current: np.ndarray) -> np.ndarray:
        """The generator's own ranking of its candidates, higher first (user-agnostic).

        The synthetic generator plays a language model that keeps the
        conversation in view: it ranks a candidate by its fidelity to the
        user's request (cosine of the embeddings) and, as a tie-break, to the
        current prompt. This is the order an LMM-only system shows.

        Args:
            candidates: ``(N, C, d)`` unit candidate embeddings.
            request: ``(N, d)`` the user's initial prompt.
            current: ``(N, d)`` the prompt being expanded.

        Returns:
            ``(N, C)`` scores.
        """
        return np.einsum("ncd,nd->nc", candidates, request + 0.1 * current)

    def generate(self, current: Prompts, uniforms: np.ndarray) -> P.PhrasePrompts:
        """Propose the candidates of one turn (the world contract's call).

        Args:
            current: ``(B,)`` :class:`~simulators.text.prompts.PhrasePrompts`, the prompts to expand.
            uniforms: ``(B, uniforms_per_turn)`` uniforms in ``[0, 1)``.

        Returns:
            ``(B, C)`` candidate prompts, categories in blocks of ``k``.

        Raises:
            TypeError: ``current`` is not the synthetic world's prompts.
        """
        phrases = _phrases(current)
        return P.PhrasePrompts(self.space, *self.expand(phrases.ids, uniforms))

    def keeps_request(self, current: Prompts, request: Prompts) -> np.ndarray:
        """``(B,)`` whether each prompt still has the request's base (its subject or free text)."""
        return _phrases(current).ids[..., P.BASE] == _phrases(request).ids[..., P.BASE]

    def expand(self, cur: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Propose the candidates of one turn, on phrase ids.

        Args:
            cur: ``(B, S)`` current prompts.
            u: ``(B, uniforms_per_turn)`` uniforms in ``[0, 1)``.

        Returns:
            ``(cands, emb)``: ``(B, C, S)`` candidate prompts and ``(B, C, d)``
            their unit embeddings, categories in blocks of ``k``.
        """
        B, C, d = cur.shape[0], self.num_candidates, self.space.dim
        rows = (u[:, 0] * self._bank_rows).astype(np.intp)
        cands = np.empty((B, C, P.NUM_SLOTS), np.int32)
        emb = np.empty((B, C, d), np.float32)
        kernels().expand_candidates(
            np.ascontiguousarray(cur, np.int32), rows, self.per_category, self.n_reph, self.opt_slot,
            self.opt_rank, self.opt_gate, self.opt_kind, self.replaceable, self.order_bank, self.detail_bank,
            self.excl_bank, self.excl_slot, self.canonical, self.neighbours, self.related, self.related_bank,
            self.space.weighted,
            P.STYLE, P.BASE, P.SETTING, P.DETAIL_A, P.DETAIL_B, cands, emb)
        if self.first_turn:  # a request with a language model's candidates: those
            for b, row in enumerate(np.ascontiguousarray(cur, np.int32)):
                given = self.first_turn.get(row.tobytes())
                if given is not None:
                    cands[b] = given
                    emb[b] = self.space.embed(given)
        return cands, emb


def _id_dtype(vocab: P.Vocabulary) -> type:
    """The smallest integer type that holds every vocabulary phrase id."""
    return np.int16 if len(vocab) < 2 ** 15 else np.int32


def _phrases(prompts: Prompts) -> P.PhrasePrompts:
    if not isinstance(prompts, P.PhrasePrompts):
        raise TypeError(f"the synthetic candidate generator expands the synthetic world's PhrasePrompts, got "
                        f"{type(prompts).__name__}; free-text prompts need a text generator "
                        "(simulators.candidates.templates.TemplateCandidateGenerator)")
    return prompts
