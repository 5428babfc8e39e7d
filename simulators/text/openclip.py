"""open_clip encoders: CLIP's text and image towers behind the world contract's encoder protocols.

:class:`OpenClipEncoder` loads an open_clip model by name and pretrained tag
(``OpenClipEncoder("ViT-H-14", "laion2b_s32b_b79k")``, PASTA's encoder) and
is both the clip world's :class:`~simulators.contract.PromptEncoder` and its
:class:`~simulators.contract.ImageEncoder`: texts and images land in one
joint space. Batched, on the GPU when there is one, without gradients;
text embeddings are memoised (a prompt shown again costs nothing).
Needs ``pip install 'pasta-t2i[openclip]'``.
"""

from __future__ import annotations

import io
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simulators.backends import require, torch_device
from simulators.errors import ShapeError

#: PASTA's CLIP: ViT-H-14 trained on LAION-2B.
DEFAULT_CLIP_MODEL = "ViT-H-14"
DEFAULT_CLIP_PRETRAINED = "laion2b_s32b_b79k"


class OpenClipEncoder:
    """Text and image embeddings from one open_clip model.

    Args:
        model_name: An open_clip architecture name (``open_clip.list_models()``),
            e.g. ``"ViT-H-14"``, ``"hf-hub:ORG/NAME"``, or the path of an
            open_clip model-config file ``NAME.json`` (a custom architecture,
            registered under ``NAME``; each process that loads it registers it).
        pretrained: A pretrained tag (``open_clip.list_pretrained()``), a
            local checkpoint path, or ``None`` for random weights (tests,
            speed measurements).
        device: ``"cuda"``, ``"cpu"``, or ``None``/``"auto"`` (the GPU if any).
        precision: open_clip precision, e.g. ``"fp32"``, ``"bf16"``, ``"fp16"``;
            ``None``: bf16 on a GPU, fp32 on the CPU.
        batch_size: Texts or images per forward pass.
        cache_size: Text embeddings kept in memory (0 turns the memo off).
        model: A ready ``(model, preprocess, tokenizer)`` triple instead of
            loading by name (``model_name`` then only labels it).

    Raises:
        DependencyNotInstalled: open_clip is not installed.
        ValueError: The name or tag is unknown to open_clip (its message says
            which names exist).
    """

    def __init__(self, model_name: str = DEFAULT_CLIP_MODEL, pretrained: str | None = DEFAULT_CLIP_PRETRAINED,
                 device: str | None = None, precision: str | None = None, batch_size: int = 64,
                 cache_size: int = 65536, model: tuple[Any, Any, Any] | None = None):
        open_clip = require("open_clip", "the open_clip encoder")
        self.torch = require("torch", "the open_clip encoder")
        self.device = torch_device(device)
        self.precision = precision or ("bf16" if self.device.type == "cuda" else "fp32")
        self.model_name, self.pretrained = model_name, pretrained
        self.config: dict[str, Any] | None = None
        if model is None and str(model_name).endswith(".json"):
            model_name = self._register_config(open_clip, model_name)
        if model is None:
            if pretrained is not None and not os.path.exists(pretrained) and \
                    pretrained not in open_clip.list_pretrained_tags_by_model(model_name):
                known = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
                raise ValueError(f"open_clip has no pretrained tag {pretrained!r} for {model_name!r} "
                                 f"(known tags: {known}); pass a tag, a checkpoint path, or None")
            net, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pretrained, device=self.device, precision=self.precision)
            tokenizer = open_clip.get_tokenizer(model_name)
        else:
            net, preprocess, tokenizer = model
            net = net.to(self.device)
        self.model, self.preprocess, self.tokenizer = net.eval(), preprocess, tokenizer
        self.batch_size = int(batch_size)
        visual = net.visual
        size = getattr(visual, "image_size", 224)
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        cfg = getattr(visual, "preprocess_cfg", {}) or {}
        self.mean = np.asarray(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), np.float32)
        self.std = np.asarray(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)), np.float32)
        self._dtype = next(net.parameters()).dtype
        with self.torch.no_grad():
            probe = net.encode_text(tokenizer(["a"]).to(self.device))
        self._dim = int(probe.shape[-1])
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.cache_size = int(cache_size)

    def _register_config(self, open_clip, path: str) -> str:
        """Register the model config file ``path`` with open_clip; the architecture's name (the file's stem)."""
        import json

        try:
            self.config = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the open_clip model config {path!r} ({exc}); give an architecture "
                             "name (open_clip.list_models()) or an open_clip model-config JSON file") from None
        open_clip.add_model_config(path)
        self.model_name = Path(path).stem
        return self.model_name

    @property
    def dim(self) -> int:
        """Dimension of the joint embedding space."""
        return self._dim

    def identity(self) -> dict[str, Any]:
        """What fixes this encoder's outputs (for dataset fingerprints)."""
        out: dict[str, Any] = {"model": self.model_name, "pretrained": self.pretrained, "precision": self.precision}
        if self.config is not None:
            out["config"] = self.config
        return out

    def _unit(self, x) -> np.ndarray:
        x = x.float()
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        return x.cpu().numpy().astype(np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, d)`` unit text embeddings (memoised per text)."""
        texts = [str(t) for t in texts]
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        torch = self.torch
        found: dict[str, np.ndarray] = {}
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i:i + self.batch_size]
            with torch.no_grad():
                emb = self._unit(self.model.encode_text(self.tokenizer(chunk).to(self.device)))
            found.update(zip(chunk, emb))
        if self.cache_size:
            for t, e in found.items():
                self._cache[t] = e
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([found[t] if t in found else self._cache[t] for t in texts])

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, d)`` unit embeddings of ``(N, h, w, 3)`` uint8 RGB images.

        Images are resized to the model's input size (bicubic, antialiased)
        and normalised with its mean and standard deviation on the device.
        """
        pixels = np.asarray(pixels)
        if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
            raise ShapeError(f"images: expected (N, h, w, 3) uint8 RGB, got {pixels.shape} {pixels.dtype}")
        torch = self.torch
        F = torch.nn.functional
        mean = torch.as_tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.as_tensor(self.std, device=self.device).view(1, 3, 1, 1)
        out = []
        for i in range(0, len(pixels), self.batch_size):
            x = torch.as_tensor(pixels[i:i + self.batch_size], device=self.device)
            x = x.permute(0, 3, 1, 2).float() / 255.0
            if tuple(x.shape[-2:]) != self.image_size:
                x = F.interpolate(x, size=self.image_size, mode="bicubic", antialias=True, align_corners=False)
            x = ((x - mean) / std).to(self._dtype)
            with torch.no_grad():
                out.append(self._unit(self.model.encode_image(x)))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_image_payloads(self, payloads: Sequence) -> np.ndarray:
        """``(N, d)`` embeddings of images given as bytes or file paths (open_clip's own preprocessing).

        The image encoder the preference-data adapters take
        (:mod:`simulators.preferences.adapters`).
        """
        Image = require("PIL.Image", "reading images")
        torch = self.torch
        out = []
        for i in range(0, len(payloads), self.batch_size):
            ims = []
            for p in payloads[i:i + self.batch_size]:
                src = io.BytesIO(p) if isinstance(p, (bytes, bytearray)) else p
                with Image.open(src) as im:
                    ims.append(self.preprocess(im.convert("RGB")))
            x = torch.stack(ims).to(self.device, self._dtype)
            with torch.no_grad():
                out.append(self._unit(self.model.encode_image(x)))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
