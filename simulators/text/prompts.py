"""Structured prompts: a prompt is an array of phrase ids, one per slot.

A prompt of the synthetic world is an ``int32`` array of shape ``(S,)`` with
one phrase id per slot, ``-1`` where the slot is empty. Batches of prompts
are arrays of shape ``(..., S)``. Text is rendered only when somebody asks
for it, which keeps the simulation core on integer arrays.

Slot 0, the *base*, holds a subject phrase or a free-text prompt (a
researcher's own initial prompt); the other slots hold modifiers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulators.contract import Prompts
from simulators.text import vocabulary as V
from simulators.text.encoders import normalize

#: Slot names, in rendering order after the framing.
SLOTS: tuple[str, ...] = (
    "base", "setting", "style", "lighting", "mood", "palette",
    "composition", "detail_a", "detail_b", "framing",
)
NUM_SLOTS = len(SLOTS)
BASE, SETTING, STYLE, LIGHTING, MOOD, PALETTE, COMPOSITION, DETAIL_A, DETAIL_B, FRAMING = range(
    NUM_SLOTS
)
#: Slots whose phrases "add detail" to a prompt.
DETAIL_SLOTS: tuple[int, ...] = (SETTING, LIGHTING, MOOD, PALETTE, COMPOSITION, DETAIL_A, DETAIL_B)
#: Slots a rephrase may reword (the subject and the style only into paraphrases; the framing only when
#: nothing else can be reworded).
REPHRASE_SLOTS: tuple[int, ...] = (BASE, SETTING, STYLE, LIGHTING, MOOD, PALETTE, COMPOSITION, FRAMING)

EMPTY = -1


def _kinds() -> list[tuple[str, tuple[str, ...]]]:
    """The vocabulary's phrase kinds in table order."""
    subjects = tuple(p for group in V.SUBJECTS.values() for p in group)
    return [
        ("subject", subjects), ("setting", V.SETTINGS), ("style", V.STYLES),
        ("lighting", V.LIGHTING), ("mood", V.MOODS), ("palette", V.PALETTES),
        ("composition", V.COMPOSITIONS), ("detail", V.DETAILS), ("framing", V.FRAMINGS),
    ]


#: Which phrase kind fills each slot.
SLOT_KIND: tuple[str, ...] = (
    "subject", "setting", "style", "lighting", "mood", "palette",
    "composition", "detail", "detail", "framing",
)


@dataclass(frozen=True)
class Vocabulary:
    """The phrase list with the id range of each kind.

    Attributes:
        phrases: All phrases, grouped by kind in a fixed order.
        ranges: Kind name -> ``(start, stop)`` id range in ``phrases``.
        subject_groups: Group name (animal, food, ...) of every subject id.
    """

    phrases: tuple[str, ...]
    ranges: dict[str, tuple[int, int]]
    subject_groups: tuple[str, ...]

    @classmethod
    def default(cls) -> Vocabulary:
        """The vocabulary shipped in :mod:`simulators.text.vocabulary`."""
        phrases: list[str] = []
        ranges: dict[str, tuple[int, int]] = {}
        for kind, items in _kinds():
            ranges[kind] = (len(phrases), len(phrases) + len(items))
            phrases.extend(items)
        groups = tuple(g for g, items in V.SUBJECTS.items() for _ in items)
        return cls(tuple(phrases), ranges, groups)

    def __len__(self) -> int:
        return len(self.phrases)

    def slot_range(self, slot: int) -> tuple[int, int]:
        """Id range ``(start, stop)`` of the phrases that may fill ``slot``."""
        return self.ranges[SLOT_KIND[slot]]


def render(ids: np.ndarray, texts: Sequence[str]) -> str:
    """Render one structured prompt as text.

    Args:
        ids: Array of shape ``(S,)`` of phrase ids, ``-1`` for empty slots.
        texts: Text of every id (phrases, then free-text prompts).

    Returns:
        The prompt, e.g. ``"a red fox in a snowy forest, oil painting, fog"``.
    """
    ids = np.asarray(ids)
    head = texts[ids[BASE]] if ids[BASE] >= 0 else ""
    if ids[FRAMING] >= 0:
        head = f"{texts[ids[FRAMING]]} {head}".strip()
    if ids[SETTING] >= 0:
        head = f"{head} {texts[ids[SETTING]]}".strip()
    rest = [texts[i] for i in ids[STYLE:FRAMING] if i >= 0]
    return ", ".join([head, *rest]) if head else ", ".join(rest)


def render_many(ids: np.ndarray, texts: Sequence[str]):
    """Render ``(n, S)`` structured prompts as a pyarrow string array, exactly as :func:`render` does.

    Needs pyarrow (``pip install 'pasta-t2i[data]'``).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[1] != NUM_SLOTS:
        raise ValueError(f"prompts must have shape (n, {NUM_SLOTS}), got {ids.shape}")
    table = pa.array(texts, pa.string())

    def slot(i: int):  # the phrase of slot i, null where the slot is empty
        col = ids[:, i]
        return table.take(pa.array(col, mask=col < 0))

    def join(parts, sep: str):  # sep.join(non-null parts); "" where all are null
        glue = pa.scalar(sep)
        pieces = [pc.fill_null(pc.binary_join_element_wise(glue, p, pa.scalar("")), "") for p in parts]
        whole = pieces[0] if len(pieces) == 1 else pc.binary_join_element_wise(*pieces, pa.scalar(""))
        return pc.utf8_slice_codeunits(whole, len(sep))

    head = join([slot(FRAMING), slot(BASE), slot(SETTING)], " ")
    head = pc.if_else(pc.equal(head, ""), pa.scalar(None, pa.string()), head)
    return join([head, *(slot(i) for i in range(STYLE, FRAMING))], ", ")


def random_prompts(vocab: Vocabulary, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random structured prompts: a subject, other slots filled at random."""
    ids = empty_prompts((n,))
    fill = {SETTING: 0.5, STYLE: 0.5, LIGHTING: 0.3, MOOD: 0.3, PALETTE: 0.3,
            COMPOSITION: 0.3, DETAIL_A: 0.3, DETAIL_B: 0.15, FRAMING: 0.15}
    ids[:, BASE] = rng.integers(*vocab.slot_range(BASE), size=n)
    for slot, prob in fill.items():
        on = rng.random(n) < prob
        ids[on, slot] = rng.integers(*vocab.slot_range(slot), size=int(on.sum()))
    return ids


def empty_prompts(shape: tuple[int, ...]) -> np.ndarray:
    """An all-empty batch of prompts of the given leading shape."""
    return np.full((*shape, NUM_SLOTS), EMPTY, dtype=np.int32)


class PromptSpace:
    """Texts and embeddings of every phrase id, and prompt composition.

    Ids ``0..P-1`` are vocabulary phrases, ``P..P+F-1`` free-text prompts;
    ``-1`` (empty) indexes a zero row. A prompt's embedding is the
    normalised, slot-weighted sum of its phrases' embeddings.

    Args:
        vocab: The phrase vocabulary.
        phrase_embeddings: ``(P, d)`` unit vectors.
        slot_weights: ``(S,)`` weight per slot.
        free_texts: Free-text prompts to add as extra ids.
        free_embeddings: ``(F, d)`` their unit embeddings.
    """

    def __init__(self, vocab: Vocabulary, phrase_embeddings: np.ndarray, slot_weights: np.ndarray,
                 free_texts: Sequence[str] = (), free_embeddings: np.ndarray | None = None):
        d = phrase_embeddings.shape[1]
        free = np.zeros((0, d), np.float32) if free_embeddings is None else free_embeddings
        if len(free) != len(free_texts):
            raise ValueError(f"got {len(free_texts)} free texts but {len(free)} embeddings")
        self.vocab = vocab
        self.texts: tuple[str, ...] = (*vocab.phrases, *free_texts)
        self.num_phrases = len(vocab)
        self.table = np.concatenate(
            [phrase_embeddings, free, np.zeros((1, d), np.float32)]).astype(np.float32)
        self.slot_weights = np.asarray(slot_weights, np.float32)
        self.weighted = self.table[None, :, :] * self.slot_weights[:, None, None]
        #: Ids that word the same thing differently (each list: a phrase and its paraphrases); set by
        #: :func:`simulators.text.requests.build_space`, the rephrase category's material.
        self.groups: list[list[int]] = []
        #: ``(ids + 1, d)`` embeddings that judge which subjects are related (``None``: :attr:`table`).
        self.relate: np.ndarray | None = None

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.table.shape[1])

    def free_id(self, i: int) -> int:
        """Phrase id of the ``i``-th free-text prompt."""
        return self.num_phrases + i

    def compose(self, ids: np.ndarray) -> np.ndarray:
        """Unnormalised embeddings ``(..., d)`` of prompts ``(..., S)``."""
        return np.einsum("...sd->...d", self.table[ids] * self.slot_weights[:, None])

    def embed(self, ids: np.ndarray) -> np.ndarray:
        """Unit embeddings ``(..., d)`` of prompts ``(..., S)``."""
        return normalize(self.compose(ids))

    def text(self, ids: np.ndarray) -> str:
        """Text of one prompt ``(S,)``."""
        return render(ids, self.texts)

    def prompts(self, ids: np.ndarray) -> PhrasePrompts:
        """Structured prompts ``(..., S)`` as :class:`PhrasePrompts` (ids, embeddings, texts on demand)."""
        return PhrasePrompts(self, np.asarray(ids, np.int32), self.embed(ids).astype(np.float32))

    def texts_of(self, ids: np.ndarray):
        """Texts of many prompts ``(n, S)`` at once, as a pyarrow string array (needs pyarrow).

        The same texts as :meth:`text`, rendered by vectorised string kernels:
        millions of prompts take seconds, not minutes.
        """
        return render_many(ids, self.texts)


class PhrasePrompts(Prompts):
    """The synthetic world's prompts: phrase ids beside their embeddings; texts rendered on demand.

    The ids are the synthetic generator's and image model's own form; the
    environment's core sees only the :class:`~simulators.contract.Prompts`
    interface.

    Attributes:
        space: The prompt space the ids index.
        ids: ``(*batch, S)`` int32 phrase ids, ``-1`` for empty slots.
        embeddings: ``(*batch, d)`` unit embeddings.
    """

    fields = ("ids", "embeddings")

    def __init__(self, space: PromptSpace, ids: np.ndarray, embeddings: np.ndarray):
        self.space, self.ids, self.embeddings = space, ids, embeddings

    def texts(self) -> np.ndarray:
        flat = self.ids.reshape(-1, NUM_SLOTS)
        out = np.empty(len(flat), dtype=object)
        out[:] = [self.space.text(row) for row in flat]
        return out.reshape(self.shape)

    def arrow_texts(self):
        """The texts of the flattened batch as a pyarrow string array (vectorised; needs pyarrow)."""
        return self.space.texts_of(self.ids.reshape(-1, NUM_SLOTS))
