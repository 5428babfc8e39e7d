"""An image model with pixels: a text-to-image model, then an image encoder; and the slate grid picture.

:class:`PixelImageModel` is the clip world's
:class:`~simulators.contract.ImageModel`: for a ``(B, L)`` slate it renders
``M`` images per prompt with a :class:`~simulators.contract.TextToImage`
(one call for the whole batch), embeds them with an
:class:`~simulators.contract.ImageEncoder` and keeps the pixels for
``render_mode="rgb_array"``. :func:`slate_grid` draws the ``L x M`` grid.

Seeds (``seeds=``): the episode owns randomness, so image seeds come from the
episode's uniforms (:func:`~simulators.contract.seeds_from_uniforms`):

* ``"turn"`` (default): image ``m`` of a prompt shown at a turn has the
  seed of (the turn's ``m``-th image uniform, the prompt's text). Agents
  compared on the same env seeds get the same images for the same prompt at
  the same turn (common random numbers), and the cache serves them.
* ``"image"``: every image slot has its own uniform (a prompt in another
  column gets other images).
* ``"prompt"``: images depend on the text alone (a fixed-seed service); the
  most cache hits, no image noise across episodes.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from simulators.contract import ImageEncoder, Prompts, TextToImage, seeds_from_uniforms, text_hash
from simulators.errors import ShapeError

SEED_MODES = ("turn", "image", "prompt")


class PixelImageModel:
    """Images from a text-to-image model, embedded by an image encoder.

    Args:
        t2i: Renders pixels for texts and seeds.
        encoder: Embeds pixels in the world's space.
        seeds: How image seeds derive from the episode (see the module doc).
        memo_size: Image embeddings kept in memory per ``(text, seed)``
            (a repeated image skips the text-to-image model and the encoder).
    """

    def __init__(self, t2i: TextToImage, encoder: ImageEncoder, seeds: str = "turn", memo_size: int = 65536):
        if seeds not in SEED_MODES:
            raise ValueError(f"seeds must be one of {', '.join(SEED_MODES)}, got {seeds!r}")
        self.t2i, self.encoder, self.seed_mode = t2i, encoder, seeds
        self.last_pixels: np.ndarray | None = None
        self._memo: OrderedDict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.memo_size = int(memo_size)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def identity(self) -> dict:
        """What fixes the image embeddings (for dataset fingerprints)."""
        part = lambda x: x.identity() if callable(getattr(x, "identity", None)) else type(x).__qualname__
        return {"t2i": part(self.t2i), "encoder": part(self.encoder), "seeds": self.seed_mode}

    def seeds(self, texts: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """``(B, L, M)`` integer image seeds for ``(B, L)`` texts and their ``(B, L, M)`` uniforms."""
        salts = np.vectorize(text_hash, otypes=[np.int64])(texts) if texts.size else np.zeros(texts.shape, np.int64)
        if self.seed_mode == "image":
            return seeds_from_uniforms(uniforms)
        M = uniforms.shape[-1]
        if self.seed_mode == "turn":
            base = seeds_from_uniforms(np.broadcast_to(uniforms[:, :1, :], uniforms.shape))
        else:
            base = np.broadcast_to(np.arange(M, dtype=np.int64), uniforms.shape)
        return (base * 0x9E3779B1 + salts[..., None] * 0x85EBCA77) & 0x7FFFFFFF

    def render(self, prompts: Prompts, uniforms: np.ndarray) -> np.ndarray:
        """``(B, L, M, d)`` unit image embeddings of ``(B, L)`` prompts (the world contract's call)."""
        uniforms = np.asarray(uniforms)
        if uniforms.ndim != 3 or uniforms.shape[:2] != prompts.shape:
            raise ShapeError(f"uniforms: expected shape ({', '.join(map(str, prompts.shape))}, M), "
                             f"got {uniforms.shape}")
        B, L, M = uniforms.shape
        texts = prompts.texts()
        seeds = self.seeds(texts, uniforms)
        flat_texts, flat_seeds = texts.reshape(-1), seeds.reshape(B * L, M)
        emb = np.zeros((B * L, M, self.dim), np.float32)
        pix: np.ndarray | None = None
        rows = [i for i in range(B * L) if any((flat_texts[i], int(s)) not in self._memo for s in flat_seeds[i])]
        if rows:
            new = self.t2i.generate([str(flat_texts[i]) for i in rows], flat_seeds[rows])
            h, w = new.shape[2:4]
            vec = self.encoder.encode_images(new.reshape(-1, h, w, 3)).reshape(len(rows), M, -1)
            for j, i in enumerate(rows):
                for m in range(M):
                    self._remember((str(flat_texts[i]), int(flat_seeds[i, m])), vec[j, m], new[j, m])
        for i in range(B * L):
            for m in range(M):
                e, p = self._memo[(str(flat_texts[i]), int(flat_seeds[i, m]))]
                if pix is None:
                    pix = np.zeros((B * L, M, *p.shape), np.uint8)
                emb[i, m], pix[i, m] = e, p
        self.last_pixels = None if pix is None else pix.reshape(B, L, M, *pix.shape[2:])
        return emb.reshape(B, L, M, self.dim)

    def _remember(self, key: tuple[str, int], emb: np.ndarray, pixels: np.ndarray) -> None:
        self._memo[key] = (emb, pixels)
        self._memo.move_to_end(key)
        while len(self._memo) > max(self.memo_size, 1):
            self._memo.popitem(last=False)


def slate_grid(pixels: np.ndarray, chosen: int | None = None, border: int = 4, gap: int = 4) -> np.ndarray:
    """The ``L x M`` picture of a slate: one column of ``M`` images per prompt, the chosen column framed.

    Args:
        pixels: ``(L, M, h, w, 3)`` uint8 images.
        chosen: Column to frame in green (``None``: no frame).
        border: Frame width in pixels.
        gap: Space between columns and images.

    Returns:
        An ``(H, W, 3)`` uint8 RGB image.
    """
    pixels = np.asarray(pixels, np.uint8)
    if pixels.ndim != 5 or pixels.shape[-1] != 3:
        raise ShapeError(f"pixels: expected (L, M, h, w, 3), got {pixels.shape}")
    L, M, h, w, _ = pixels.shape
    cell_w, cell_h = w + 2 * border, M * h + (M - 1) * gap + 2 * border
    canvas = np.full((cell_h + 2 * gap, L * cell_w + (L + 1) * gap, 3), 255, np.uint8)
    for col in range(L):
        x0, y0 = gap + col * (cell_w + gap), gap
        if col == chosen:
            canvas[y0:y0 + cell_h, x0:x0 + cell_w] = (40, 170, 60)
        for m in range(M):
            y = y0 + border + m * (h + gap)
            canvas[y:y + h, x0 + border:x0 + border + w] = pixels[col, m]
    return canvas
