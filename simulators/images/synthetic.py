"""Text-to-image stand-in of the synthetic world: image embeddings around a prompt.

:class:`SyntheticImageModel` renders ``M`` "images" per prompt as unit
embeddings in the prompt space, batch-first:

1. *Prompt adherence*: the base phrase is always rendered; every other phrase
   is kept with probability ``q(n) = clip(1 - drop_per_phrase * (n - free_phrases), min_keep, 1)``
   where ``n`` is the number of phrases in the prompt, so long prompts lose
   details.
2. *Variation*: the kept phrases' composed embedding, normalised, plus
   Gaussian noise of norm about ``noise``, normalised again.

Each image draws one uniform; it picks a row of a fixed bank of noise
vectors and keep-draws that is part of the world. One compiled kernel
(:func:`simulators.kernels.render_images`) renders a batch of any size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulators.contract import Prompts
from simulators.jit import kernels
from simulators.text import prompts as P


@dataclass(frozen=True)
class ImageModelConfig:
    """Tunables of the image stand-in.

    Attributes:
        noise: Norm of the variation around the prompt (0 gives exact images).
        drop_per_phrase: Drop in keep probability per phrase beyond ``free_phrases``.
        free_phrases: Phrases a prompt may have before details start to drop.
        min_keep: Lowest keep probability of a phrase.
        bank_size: Rows of the noise bank.
    """

    noise: float = 0.45
    drop_per_phrase: float = 0.1
    free_phrases: int = 3
    min_keep: float = 0.35
    bank_size: int = 4096


class SyntheticImageModel:
    """Image embeddings scattered around what a prompt describes.

    Args:
        space: The prompt space.
        config: Noise and adherence settings.
        seed: Seed of the world's fixed noise bank.
    """

    uniforms_per_image = 1
    #: The synthetic world has no pixels (see the contract's ImageModel).
    last_pixels = None

    def __init__(self, space: P.PromptSpace, config: ImageModelConfig = ImageModelConfig(), seed: int = 0):
        self.space = space
        self.config = config
        rng = np.random.default_rng(seed)
        d = space.dim
        noise = rng.standard_normal((config.bank_size, d)) * (config.noise / np.sqrt(d))
        self.noise_bank = noise.astype(np.float32)
        self.keep_bank = rng.random((config.bank_size, P.NUM_SLOTS)).astype(np.float32)
        self.keep_bank[:, P.BASE] = 0.0  # the base is always rendered

    def keep_probability(self, prompts: np.ndarray) -> np.ndarray:
        """``(...,)`` keep probability of each non-base phrase of each prompt."""
        c = self.config
        n = (prompts[..., :P.FRAMING] >= 0).sum(axis=-1)
        return np.clip(1.0 - c.drop_per_phrase * (n - c.free_phrases), c.min_keep, 1.0)

    def render(self, prompts: Prompts, uniforms: np.ndarray) -> np.ndarray:
        """Render images (the world contract's call).

        Args:
            prompts: ``(B, L)`` :class:`~simulators.text.prompts.PhrasePrompts`.
            uniforms: ``(B, L, M)`` uniforms, one per image.

        Returns:
            ``(B, L, M, d)`` unit image embeddings.
        """
        if not isinstance(prompts, P.PhrasePrompts):
            raise TypeError(f"the synthetic image model renders the synthetic world's PhrasePrompts, got "
                            f"{type(prompts).__name__}")
        return self.render_ids(prompts.ids, uniforms)

    def render_ids(self, prompts: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Render images of ``(B, L, S)`` phrase-id prompts from ``(B, L, M)`` uniforms."""
        c = self.config
        B, L, _ = prompts.shape
        out = np.empty((B, L, u.shape[2], self.space.dim), np.float32)
        kernels().render_images(np.ascontiguousarray(prompts, np.int32), np.ascontiguousarray(u, np.float32),
                              self.keep_bank, self.noise_bank, self.space.weighted, float(c.drop_per_phrase),
                              int(c.free_phrases), float(c.min_keep), P.FRAMING, out)
        return out
