"""Candidate generators: turn the current prompt into ``L_C`` prompt expansions.

:class:`SyntheticCandidateGenerator` is the synthetic world's stand-in for
PASTA's language model: it proposes ``k`` (5) expansions in each of PASTA's
five categories, batch-first and deterministic given the episode's uniforms:

============== ===========================================================
category       what changes
============== ===========================================================
rephrase       one setting/lighting/mood/palette/composition/framing phrase
               is swapped for one of its five nearest neighbours (embedding
               cosine); a prompt without framing may gain one
add detail     an empty setting/lighting/mood/palette/composition/detail
               slot is filled (when all are full, a detail is replaced)
change style   the style is replaced by another style
change subject the subject (or the free-text base) is replaced by another
               subject; everything else is kept
creative leap  a new subject, setting and style; other modifiers are dropped
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
# The base slot is never empty, and never holds a setting: option masks use it
# as "a slot that is always filled" and "a slot no setting equals".
_ALWAYS_FILLED = _NEVER_EQUAL = P.BASE


def _neighbour_table(space: P.PromptSpace) -> np.ndarray:
    """``(ids + 1, NEIGHBOURS)``: nearest phrases of the same kind for each id.

    The last row (the empty id) lists framings, so that a prompt without
    framing can be rephrased by adding one.
    """
    vocab = space.vocab
    table = np.zeros((len(space.table), NEIGHBOURS), np.int32)
    for start, stop in vocab.ranges.values():
        emb = space.table[start:stop]
        sim = emb @ emb.T
        np.fill_diagonal(sim, -np.inf)
        table[start:stop] = np.argsort(-sim, axis=1)[:, :NEIGHBOURS] + start
    f0, f1 = vocab.ranges["framing"]
    if f1 - f0 < NEIGHBOURS + 1:
        raise ValueError(f"the vocabulary needs at least {NEIGHBOURS + 1} framings, got {f1 - f0}")
    table[-1] = np.arange(f0, f0 + NEIGHBOURS)
    return table


class SyntheticCandidateGenerator:
    """``k`` expansions in each of five categories, from the phrase vocabulary.

    Args:
        space: The prompt space (vocabulary, embeddings, free texts).
        seed: Seed of the world's fixed bank of rankings.
        per_category: Candidates per category ``k`` (1 to 5).
        bank_rows: Rows of the ranking bank.
    """

    categories = CATEGORIES

    def __init__(self, space: P.PromptSpace, seed: int = 0, per_category: int = PER_CATEGORY,
                 bank_rows: int = 8192):
        if not 1 <= per_category <= NEIGHBOURS:
            raise ValueError(f"candidates per category must be in 1..{NEIGHBOURS}, got {per_category}")
        self.space = space
        self.per_category = k = per_category
        self.num_candidates = k * len(CATEGORIES)
        self.category_of = np.repeat(np.arange(len(CATEGORIES)), k).astype(np.int64)
        self.neighbours = _neighbour_table(space)
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
        # Option kind for the kernel: 0 rephrase a filled slot, 1 rephrase always (framing), 2 add detail.
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
        """Style, subject and leap draws: ``k`` distinct values but one excluded value."""
        k = self.per_category
        # (slot compared against, phrase range) of: change style, change subject,
        # leap subject, leap style, leap setting (nothing excluded).
        blocks = [(P.STYLE, P.STYLE), (P.BASE, P.BASE), (P.BASE, P.BASE), (P.STYLE, P.STYLE),
                  (_NEVER_EQUAL, P.SETTING)]
        self.excl_slot = np.array([b[0] for b in blocks], np.intp)
        orders = []
        for _, s in blocks:
            a, b = vocab.slot_range(s)
            if b - a < k + 1:
                raise ValueError(f"slot {P.SLOTS[s]} has {b - a} phrases; need at least {k + 1}")
            orders.append(a + np.argsort(rng.random((self._bank_rows, b - a)), 1)[:, : k + 1])
        self.excl_bank: np.ndarray = np.stack(orders, axis=1).astype(_id_dtype(vocab))  # (rows, 5, k + 1)

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
            self.excl_bank, self.excl_slot, self.neighbours, self.space.weighted, P.STYLE, P.BASE, P.SETTING,
            P.DETAIL_A, P.DETAIL_B, cands, emb)
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
