"""The world contract: what each part of a world takes and returns, with batch shapes and who owns randomness.

A world is five parts that meet only through the protocols below; the
environment's core calls nothing else. Shapes use ``B`` users, ``C``
candidates, ``L`` slate columns, ``M`` images per prompt, ``d`` the
embedding dimension shared by prompts and images (a world has one embedding
space: the synthetic world's 64-d phrase space, or CLIP's joint space).

=================== =============================================== ==============================================
part                call                                            shapes
=================== =============================================== ==============================================
prompt encoder      ``encode(texts)``                               ``N`` texts -> ``(N, d)`` unit float32
image encoder       ``encode_images(pixels)``                       ``(N, h, w, 3)`` uint8 -> ``(N, d)`` unit
text-to-image       ``generate(texts, seeds)``                      ``N`` texts, ``(N, M)`` int seeds ->
                                                                    ``(N, M, h, w, 3)`` uint8
image model         ``render(prompts, uniforms)``                   :class:`Prompts` ``(B, L)``, ``(B, L, M)`` ->
                                                                    ``(B, L, M, d)`` unit image embeddings
candidate generator ``generate(current, uniforms)``                 :class:`Prompts` ``(B,)``,
                                                                    ``(B, uniforms_per_turn)`` -> ``(B, C)``
user model          ``type_scores(requests, images, types)``        ``(B, L, d)``, ``(B, L, M, d)``, ``(B,)`` ->
                                                                    ``(B, L, M)``
=================== =============================================== ==============================================

**Randomness is owned by the episode.** At reset the core draws one vector
of uniforms per user from that user's generator (seeded by
``reset(seed=...)``) and hands each part its slice: the candidate generator
``uniforms_per_turn`` per user and turn, the image model one uniform per
image. A part that needs more randomness derives it from its uniforms (e.g.
:func:`seeds_from_uniforms` turns them into integer seeds for a diffusion
sampler or a language model). A part never draws from a global or private
stream, so equal seeds and actions give equal episodes in every world.

**Prompts are texts plus embeddings.** The core carries prompts as
:class:`Prompts`: unit embeddings for the agents and the user model, and
texts rendered when somebody reads them. A generator may keep its own form
beside them (the synthetic world's phrase ids); the core only indexes,
joins and passes prompts back to the parts that made them.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from simulators.errors import ShapeError, check_shape

__all__ = [
    "Prompts", "TextPrompts", "PromptEncoder", "ImageEncoder", "TextToImage", "ImageModel",
    "CandidateGenerator", "UserSimulator", "seeds_from_uniforms", "text_hash", "check_prompts", "check_candidates",
]


class Prompts:
    """A batch of prompts: unit embeddings, texts on demand, and any arrays of the generator's own form.

    Every array attribute named in ``fields`` has the batch shape as its
    leading axes; indexing, joining and stacking apply to all of them alike,
    so a sub-batch keeps texts and embeddings together. Subclasses name their
    fields and render :meth:`texts`.

    Attributes:
        embeddings: ``(*batch, d)`` float32 unit vectors.
    """

    #: Names of the array attributes that share the batch axes.
    fields: ClassVar[tuple[str, ...]] = ("embeddings",)
    embeddings: np.ndarray
    #: ``(B,)`` notes of the generator that made a ``(B, C)`` batch, per row (``None``: nothing to say),
    #: e.g. which candidates a language model's reply lacked; ``None`` when the generator keeps none.
    #: Indexing keeps them as they are; :meth:`concat` joins them.
    notes: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The batch shape (the embeddings' shape without ``d``)."""
        return self.embeddings.shape[:-1]

    @property
    def dim(self) -> int:
        """Embedding dimension ``d``."""
        return int(self.embeddings.shape[-1])

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    def _field(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def _with(self, arrays: dict[str, np.ndarray]) -> Prompts:
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.__dict__.update(arrays)
        return out

    def with_embeddings(self, embeddings: np.ndarray) -> Prompts:
        """The same prompts with their embeddings held in ``embeddings`` (equal values, e.g. another buffer's)."""
        if embeddings.shape != self.embeddings.shape:
            raise ShapeError(f"embeddings: expected shape {self.embeddings.shape}, got {embeddings.shape}")
        return self._with({"embeddings": embeddings})

    def __getitem__(self, index) -> Prompts:
        """Numpy indexing over the batch axes, applied to every field."""
        return self._with({f: _take(self.__dict__[f], index) for f in self.fields})

    def take_columns(self, cols: np.ndarray) -> Prompts:
        """Per row of a ``(B, C)`` batch, the prompts in columns ``cols``: ``(B, k)`` for ``(B, k)`` indices,
        ``(B,)`` for ``(B,)`` ones; the same as ``self[rows, cols]``, by one flat gather per field.
        """
        B, C = self.shape
        cols = np.asarray(cols)
        if B == 1:  # one row (the single env): a plain take of the row's columns, without the flat indices
            idx = cols.reshape(-1)  # an array index: object fields (texts) stay arrays
            return self._with({f: (a := self.__dict__[f])[0].take(idx, axis=0).reshape(*cols.shape, *a.shape[2:])
                               for f in self.fields})
        flat = (np.arange(B).reshape(B, *([1] * (cols.ndim - 1))) * C + cols).ravel()
        arrays = {}
        for f in self.fields:
            a = self.__dict__[f]
            arrays[f] = a.reshape(B * C, *a.shape[2:]).take(flat, axis=0).reshape(*cols.shape, *a.shape[2:])
        return self._with(arrays)

    def reshape(self, *shape: int) -> Prompts:
        """The same prompts with another batch shape."""
        return self._with({f: (a := self._field(f)).reshape(*shape, *a.shape[len(self.shape):])
                           for f in self.fields})

    def broadcast_to(self, shape: tuple[int, ...]) -> Prompts:
        """A read-only view of a batch of shape ``()`` or ``(1,)`` repeated to ``shape`` (no memory used)."""
        lead = len(self.shape)
        return self._with({f: np.broadcast_to(a := self._field(f), (*shape, *a.shape[lead:]))
                           for f in self.fields})

    def concat(self, others: Sequence[Prompts]) -> Prompts:
        """This batch and ``others`` joined along the first batch axis."""
        parts = [self, *others]
        joined = {f: np.concatenate([p._field(f) for p in parts]) for f in self.fields}
        if any(p.notes is not None for p in parts):
            joined["notes"] = np.concatenate([np.full(len(p), None, object) if p.notes is None else p.notes
                                              for p in parts])
        return self._with(joined)

    def stack(self, others: Sequence[Prompts], axis: int = 0) -> Prompts:
        """This batch and ``others`` (equal shapes) stacked on a new batch axis."""
        parts = [self, *others]
        return self._with({f: np.stack([p._field(f) for p in parts], axis=axis) for f in self.fields})

    def texts(self) -> np.ndarray:
        """The texts, an object array of ``str`` with the batch shape."""
        raise NotImplementedError

    def text(self) -> str:
        """The text of a single prompt (a batch shape of ``()``)."""
        if self.shape != ():
            raise ValueError(f"text() reads one prompt; this batch has shape {self.shape}: use texts()")
        return str(self.texts()[()])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dim={self.dim})"


def _take(array: np.ndarray, index) -> np.ndarray:
    """``array[index]``, always an array (a single item of an object array would come back bare)."""
    out = array[index]
    return out if isinstance(out, np.ndarray) else np.asarray(out, dtype=array.dtype)


class TextPrompts(Prompts):
    """Prompts that are free text: the texts themselves plus their embeddings.

    Args:
        texts: An object array (or a list) of ``str`` with the batch shape.
        embeddings: ``(*batch, d)`` unit float32 embeddings of the texts.

    Raises:
        ShapeError: The texts' shape is not the embeddings' batch shape.
    """

    fields = ("texts_", "embeddings")

    def __init__(self, texts, embeddings: np.ndarray):
        arr = np.empty(len(texts), dtype=object) if isinstance(texts, list) else None
        if arr is not None:
            arr[:] = texts
            texts = arr
        texts = np.asarray(texts, dtype=object)
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if texts.shape != embeddings.shape[:-1]:
            raise ShapeError(f"texts: expected shape {embeddings.shape[:-1]} to match the embeddings "
                             f"{embeddings.shape}, got {texts.shape}")
        self.texts_ = texts
        self.embeddings = embeddings

    def texts(self) -> np.ndarray:
        return self.texts_


@runtime_checkable
class PromptEncoder(Protocol):
    """Turns texts into unit embeddings in the world's space.

    ``encode`` takes ``N`` strings (any content, empty included) and returns
    ``(N, d)`` float32 unit rows; it is deterministic (no randomness).
    """

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class ImageEncoder(Protocol):
    """Turns pixel images into unit embeddings in the same space as the prompt encoder.

    ``encode_images`` takes ``(N, h, w, 3)`` uint8 RGB images and returns
    ``(N, d)`` float32 unit rows; deterministic.
    """

    @property
    def dim(self) -> int: ...

    def encode_images(self, pixels: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class TextToImage(Protocol):
    """Renders pixel images for texts.

    ``generate(texts, seeds)`` takes ``N`` texts and ``(N, M)`` integer seeds
    and returns ``(N, M, h, w, 3)`` uint8 RGB images; image ``(i, m)`` is a
    function of ``texts[i]``, ``seeds[i, m]`` and the model's settings only.
    """

    def generate(self, texts: Sequence[str], seeds: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class ImageModel(Protocol):
    """What the core calls to show a slate: prompts in, image embeddings out.

    ``render(prompts, uniforms)``: :class:`Prompts` of batch shape ``(B, L)``
    and ``(B, L, M)`` uniforms in ``[0, 1)`` (one per image) give ``(B, L,
    M, d)`` unit image embeddings. Models with pixels keep the last batch's
    images in ``last_pixels`` (``(B, L, M, h, w, 3)`` uint8), others set it
    to ``None``.
    """

    @property
    def last_pixels(self) -> np.ndarray | None: ...

    def render(self, prompts: Prompts, uniforms: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class CandidateGenerator(Protocol):
    """Proposes the ``C`` candidate prompts of a turn, in named categories.

    Attributes:
        categories: Category names, e.g. PASTA's five.
        num_candidates: ``C``.
        category_of: ``(C,)`` int64 category index of each candidate slot
            (the same every turn).
        uniforms_per_turn: Uniforms the generator takes per user and turn.

    ``generate(current, uniforms)``: :class:`Prompts` ``(B,)`` and ``(B,
    uniforms_per_turn)`` uniforms give :class:`Prompts` ``(B, C)``, distinct
    within a row. ``keeps_request(current, request)``: ``(B,)`` bool, whether
    each current prompt still holds what the user asked for.
    ``ranking_scores(candidates, request, current)``: ``(N, C, d)``, ``(N,
    d)``, ``(N, d)`` -> ``(N, C)``, the generator's own user-agnostic order
    (what a language-model-only system would show first).
    """

    @property
    def categories(self) -> tuple[str, ...]: ...

    @property
    def num_candidates(self) -> int: ...

    @property
    def category_of(self) -> np.ndarray: ...

    @property
    def uniforms_per_turn(self) -> int: ...

    def generate(self, current: Prompts, uniforms: np.ndarray) -> Prompts: ...

    def keeps_request(self, current: Prompts, request: Prompts) -> np.ndarray: ...

    def ranking_scores(self, candidates: np.ndarray, request: np.ndarray, current: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class UserSimulator(Protocol):
    """``K`` latent user types that score images against the user's request and choose a column.

    :class:`simulators.users.user_model.UserModel` implements it (numpy,
    batch-first); the user model never draws random numbers: the core turns
    :meth:`choice_probs` into a choice with the episode's own uniform.
    """

    @property
    def prior(self) -> np.ndarray: ...

    @property
    def temperature(self) -> float: ...

    @property
    def aggregation(self) -> str: ...

    @property
    def type_names(self) -> tuple[str, ...]: ...

    @property
    def num_types(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def type_scores(self, requests: np.ndarray, images: np.ndarray, types: np.ndarray) -> np.ndarray: ...

    def scores(self, requests: np.ndarray, images: np.ndarray) -> np.ndarray: ...

    def utilities(self, requests: np.ndarray, images: np.ndarray) -> np.ndarray: ...

    def prompt_utilities(self, requests: np.ndarray, prompts: np.ndarray) -> np.ndarray: ...

    def log_likelihood(self, utilities: np.ndarray, choice: np.ndarray) -> np.ndarray: ...

    def choice_probs(self, utilities: np.ndarray) -> np.ndarray: ...


def seeds_from_uniforms(uniforms: np.ndarray, salt: int = 0) -> np.ndarray:
    """Integer seeds in ``[0, 2**31)`` from the episode's uniforms (and a salt, e.g. a text hash).

    Args:
        uniforms: Uniforms in ``[0, 1)`` of any shape.
        salt: Mixed in so that different consumers of one uniform get
            different seeds.

    Returns:
        int64 seeds of the same shape.
    """
    u = np.asarray(uniforms, dtype=np.float64)
    base = (u.reshape(-1) * 2.0 ** 31).astype(np.int64)  # an array, not a scalar: it wraps silently
    mixed = (base * 0x9E3779B1 + (salt & 0x7FFFFFFF) * 0x85EBCA77) & 0x7FFFFFFF
    return mixed.astype(np.int64).reshape(u.shape)


def text_hash(text: str) -> int:
    """A stable 31-bit hash of a text, to salt seeds (CRC-32; Python's ``hash`` changes per process)."""
    return zlib.crc32(text.encode("utf-8")) & 0x7FFFFFFF


def check_prompts(name: str, prompts: Prompts, batch: tuple[int, ...], dim: int) -> None:
    """Check a :class:`Prompts` batch's shape and dimension.

    Raises:
        ShapeError: e.g. ``"candidates: expected shape (2, 25, 64), got (2, 24, 64)"``.
    """
    if not isinstance(prompts, Prompts):
        raise ShapeError(f"{name}: expected Prompts, got {type(prompts).__name__}")
    check_shape(name, prompts.embeddings, (*batch, dim))


def check_candidates(generator: CandidateGenerator, candidates: Prompts, batch: int, dim: int) -> None:
    """Check one turn of a candidate generator: ``(batch, C)`` prompts of dimension ``dim``."""
    check_prompts("candidates", candidates, (batch, generator.num_candidates), dim)
    cats = np.asarray(generator.category_of)
    if cats.shape != (generator.num_candidates,) or cats.min() < 0 or cats.max() >= len(generator.categories):
        raise ShapeError(f"category_of: expected {generator.num_candidates} indices in "
                         f"0..{len(generator.categories) - 1}, got {cats.tolist()}")
