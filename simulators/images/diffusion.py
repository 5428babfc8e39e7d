"""Text-to-image on diffusers, with an on-disk image cache.

:class:`DiffusersTextToImage` is a :class:`~simulators.contract.TextToImage`
over any diffusers text-to-image pipeline, by hub id or local folder (SDXL,
SDXL-Turbo, SD-Turbo, ...). Every image has its own seed (a
``torch.Generator`` per image), so image ``(text, seed)`` is the same whatever
else shares its batch; all images of a call go through the pipeline in one
batched call (up to ``max_batch`` images). :class:`ImageCache` keeps every
image on disk under a key of model, settings, text and seed: a repeated
prompt costs nothing. Needs ``pip install 'pasta-t2i[diffusers]'``.

Fidelity trade-offs, as options: ``steps`` (1 for the turbo models),
``guidance_scale`` (0 for the turbo models: no second, unconditional pass),
``height``/``width``, ``dtype`` (bf16 on a GPU by default), ``tiny_vae`` (a
small autoencoder such as ``madebyollin/taesdxl`` in place of the VAE
decoder, which is most of a one-step turn), ``compile`` (``torch.compile``
of the UNet).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simulators.atomic import atomic_path
from simulators.backends import require, torch_device, torch_dtype
from simulators.errors import ShapeError

#: A fast default: SD-Turbo renders in one step without guidance.
DEFAULT_T2I_MODEL = "stabilityai/sd-turbo"


class ImageCache:
    """Images on disk, one PNG per ``(model settings, text, seed)`` key, written atomically.

    Args:
        folder: Where the images live (created on first write).
        namespace: A JSON-ready description of the model and its settings;
            images made with other settings never collide.
    """

    def __init__(self, folder: str | os.PathLike, namespace: dict[str, Any]):
        self.folder = Path(folder)
        self.namespace = json.dumps(namespace, sort_keys=True)
        self.hits = self.misses = 0
        self._lock = threading.Lock()

    def key(self, text: str, seed: int) -> str:
        """The SHA-256 key of an image."""
        payload = json.dumps([self.namespace, text, int(seed)], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.png"

    def get(self, text: str, seed: int) -> np.ndarray | None:
        """The cached ``(h, w, 3)`` uint8 image, or ``None``."""
        path = self.path(self.key(text, seed))
        if not path.is_file():
            with self._lock:
                self.misses += 1
            return None
        Image = require("PIL.Image", "the image cache")
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except OSError:  # a damaged file is made again
            with self._lock:
                self.misses += 1
            return None
        with self._lock:
            self.hits += 1
        return arr

    def put(self, text: str, seed: int, image: np.ndarray) -> None:
        """Store an image (temp file, then rename: a crash never leaves half a PNG)."""
        Image = require("PIL.Image", "the image cache")
        path = self.path(self.key(text, seed))
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".tmp") as tmp:
            Image.fromarray(np.asarray(image, np.uint8)).save(tmp, format="PNG", compress_level=1)


class DiffusersTextToImage:
    """Images for texts from a diffusers pipeline.

    Args:
        model: A hub id or a local folder of a text-to-image pipeline.
        steps: Denoising steps.
        guidance_scale: Classifier-free guidance (0: none, one UNet pass per step).
        height: Image height in pixels.
        width: Image width in pixels.
        device: ``"cuda"``, ``"cpu"`` or ``None``/``"auto"``.
        dtype: ``"bfloat16"``, ``"float16"``, ``"float32"``; ``None``: bf16 on a
            GPU, fp32 on the CPU.
        cache_dir: Folder of the image cache; ``None`` turns it off.
        max_batch: Images per pipeline call.
        tiny_vae: Hub id or folder of a tiny autoencoder (``AutoencoderTiny``)
            to decode with instead of the pipeline's VAE.
        compile: ``torch.compile`` the UNet (slow first call, faster after).
        pipeline: A ready pipeline instead of loading ``model``.

    Raises:
        DependencyNotInstalled: diffusers is not installed.
    """

    def __init__(self, model: str = DEFAULT_T2I_MODEL, steps: int = 1, guidance_scale: float = 0.0,
                 height: int = 512, width: int = 512, device: str | None = None, dtype: str | None = None,
                 cache_dir: str | os.PathLike | None = None, max_batch: int = 16, tiny_vae: str | None = None,
                 compile: bool = False, pipeline: Any = None):
        diffusers = require("diffusers", "the diffusers text-to-image backend")
        self.torch = require("torch", "the diffusers text-to-image backend")
        if steps < 1 or height < 8 or width < 8 or max_batch < 1:
            raise ValueError(f"steps, max_batch must be >= 1 and height, width >= 8; got steps={steps}, "
                             f"height={height}, width={width}, max_batch={max_batch}")
        self.device = torch_device(device)
        self.dtype = torch_dtype(dtype, self.device)
        as_dtype = _dtype_option(diffusers, self.dtype)
        if pipeline is None:
            pipeline = diffusers.AutoPipelineForText2Image.from_pretrained(model, **as_dtype)
        if tiny_vae is not None:
            pipeline.vae = diffusers.AutoencoderTiny.from_pretrained(tiny_vae, **as_dtype)
        pipeline = pipeline.to(self.device)
        pipeline.set_progress_bar_config(disable=True)
        if compile:
            pipeline.unet = self.torch.compile(pipeline.unet)
        self.pipeline = pipeline
        self.model, self.steps, self.guidance_scale = str(model), int(steps), float(guidance_scale)
        self.height, self.width, self.max_batch, self.tiny_vae = int(height), int(width), int(max_batch), tiny_vae
        self.cache = ImageCache(cache_dir, self.identity()) if cache_dir is not None else None
        self.calls = 0

    def identity(self) -> dict[str, Any]:
        """What fixes the images (model, sampler settings, dtype): the cache key and dataset fingerprint."""
        return {"model": self.model, "steps": self.steps, "guidance_scale": self.guidance_scale,
                "height": self.height, "width": self.width, "dtype": str(self.dtype).replace("torch.", ""),
                "tiny_vae": self.tiny_vae, "scheduler": type(self.pipeline.scheduler).__name__}

    def generate(self, texts: Sequence[str], seeds: np.ndarray) -> np.ndarray:
        """Render ``(N, M, h, w, 3)`` uint8 images: image ``(i, m)`` from ``texts[i]`` with seed ``seeds[i, m]``.

        Cached images are read back; the rest go through the pipeline in
        batched calls, then into the cache.
        """
        seeds = np.asarray(seeds, np.int64)
        if seeds.ndim != 2 or seeds.shape[0] != len(texts):
            raise ShapeError(f"seeds: expected shape ({len(texts)}, M), got {seeds.shape}")
        N, M = seeds.shape
        out = np.zeros((N, M, self.height, self.width, 3), np.uint8)
        todo: list[tuple[int, int]] = []
        for i, text in enumerate(texts):
            for m in range(M):
                hit = self.cache.get(text, int(seeds[i, m])) if self.cache is not None else None
                if hit is not None and hit.shape == out.shape[2:]:
                    out[i, m] = hit
                else:
                    todo.append((i, m))
        for a in range(0, len(todo), self.max_batch):
            batch = todo[a:a + self.max_batch]
            images = self._run([texts[i] for i, _ in batch], [int(seeds[i, m]) for i, m in batch])
            for (i, m), image in zip(batch, images):
                out[i, m] = image
                if self.cache is not None:
                    self.cache.put(texts[i], int(seeds[i, m]), image)
        return out

    def _run(self, texts: list[str], seeds: list[int]) -> np.ndarray:
        torch = self.torch
        gen_device = "cpu" if self.device.type == "mps" else self.device
        generators = [torch.Generator(device=gen_device).manual_seed(s) for s in seeds]
        self.calls += 1
        with torch.inference_mode():
            result = self.pipeline(prompt=texts, num_inference_steps=self.steps, guidance_scale=self.guidance_scale,
                                   height=self.height, width=self.width, generator=generators, output_type="np")
        images = np.asarray(result.images, np.float32)
        return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _dtype_option(diffusers, dtype) -> dict[str, Any]:
    """``from_pretrained``'s dtype keyword: ``dtype`` in recent diffusers, ``torch_dtype`` before."""
    recent = hasattr(getattr(diffusers.utils, "deprecation_utils", None), "_resolve_dtype")
    return {"dtype": dtype} if recent else {"torch_dtype": dtype}
