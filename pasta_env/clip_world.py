"""The ``clip`` world: open_clip embeddings, diffusers images and a language model's candidates.

PASTA's own world: prompts and images live in CLIP's joint space (PASTA used
ViT-H-14), a text-to-image model renders ``M`` real images per shown prompt
(PASTA used SDXL), and a language model proposes the candidates (PASTA used
Gemini 1.5 Flash)::

    env = gym.make("PastaT2I-v0", world="clip", clip_model="ViT-H-14",
                   t2i_model="stabilityai/sdxl-turbo", lmm_model="Qwen/Qwen2.5-1.5B-Instruct",
                   user_model="my_clip_user_model.npz", render_mode="rgb_array")

Weights load by name from the Hugging Face hub or from local folders (the
user downloads them; nothing here fetches on import). Every part can also be
passed ready-made (``encoder=``, ``t2i=``, ``chat=``), which is how the tests
build tiny random models of the real classes. Needs
``pip install 'pasta-t2i[clip]'`` (open_clip, diffusers, transformers).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from pasta_env.worlds import PromptsArg, World, read_prompts, register_world
from simulators.candidates.language_model import ChatModel, LanguageModelCandidateGenerator, TransformersChat
from simulators.candidates.synthetic import CATEGORIES
from simulators.candidates.templates import TemplateCandidateGenerator
from simulators.contract import PromptEncoder, TextPrompts, TextToImage
from simulators.images.diffusion import DEFAULT_T2I_MODEL, DiffusersTextToImage
from simulators.images.pixels import PixelImageModel
from simulators.text import vocabulary as V
from simulators.text.openclip import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED, OpenClipEncoder
from simulators.users.checkpoint import load_user_model
from simulators.users.user_model import TasteUserModel, UserModel


def default_cache_dir() -> Path:
    """Where rendered images are cached: ``$PASTA_T2I_CACHE`` or ``~/.cache/pasta-t2i``, then ``images``."""
    root = os.environ.get("PASTA_T2I_CACHE") or Path.home() / ".cache" / "pasta-t2i"
    return Path(root) / "images"


def default_prompt_texts() -> list[str]:
    """The synthetic world's pool of 192 initial prompts, as texts."""
    from pasta_env.worlds import make_synthetic_world

    return [str(t) for t in make_synthetic_world().initial_prompts.texts()]


def planted_clip_user_model(encoder: PromptEncoder, scale: float = 50.0, intent: float = 30.0,
                            temperature: float = 1.0) -> TasteUserModel:
    """A stand-in user model in CLIP space: the eight tastes, each the mean of its descriptions' embeddings.

    ``s(k, p0, I) = scale * <w_k, I> + intent * <p0, I>`` as in the synthetic
    world; the weights are larger because CLIP's image-text cosines spread
    over a narrower range. For research, train a model on real choices with
    ``pasta train-user-model`` (EM) on CLIP embeddings and pass it as
    ``user_model=``.
    """
    names = list(V.TASTES)
    tastes = np.stack([encoder.encode(list(V.TASTES[n])).mean(axis=0) for n in names])
    tastes /= np.maximum(np.linalg.norm(tastes, axis=1, keepdims=True), 1e-8)
    return TasteUserModel(prior=np.full(len(names), 1.0 / len(names)), temperature=temperature, aggregation="mean",
                          type_names=tuple(names), tastes=tastes, scale=scale, intent=intent)


def make_clip_world(prompts: PromptsArg = None, num_candidates: int = 25,
                    clip_model: str = DEFAULT_CLIP_MODEL, clip_pretrained: str | None = DEFAULT_CLIP_PRETRAINED,
                    t2i_model: str = DEFAULT_T2I_MODEL, t2i_steps: int = 1, t2i_guidance: float = 0.0,
                    image_size: int = 512, tiny_vae: str | None = None, lmm_model: str | None = None,
                    lmm_temperature: float = 0.8, user_model: str | os.PathLike | UserModel | None = None,
                    device: str | None = None, dtype: str | None = None,
                    cache_dir: str | os.PathLike | None = "default", seeds: str = "turn",
                    encoder: Any = None, t2i: TextToImage | None = None, chat: ChatModel | None = None) -> World:
    """Build the clip world.

    Args:
        prompts: Initial prompts (strings or a file); ``None`` uses the
            synthetic world's pool of 192 prompts as texts.
        num_candidates: Candidates per turn: 5, 10, ..., 40 (the same number
            in each of PASTA's five categories).
        clip_model: open_clip architecture (PASTA: ``"ViT-H-14"``).
        clip_pretrained: Its pretrained tag or checkpoint path (``None``:
            random weights, for speed measurements).
        t2i_model: diffusers text-to-image pipeline, hub id or folder.
        t2i_steps: Denoising steps.
        t2i_guidance: Classifier-free guidance scale (0 for turbo models).
        image_size: Image height and width in pixels.
        tiny_vae: A tiny autoencoder to decode with (e.g. ``"madebyollin/taesd"``).
        lmm_model: The candidate generator's language model: a transformers
            chat model (hub id or folder), or ``"gemini-..."`` for Gemini
            (key in ``GEMINI_API_KEY``); ``None``: the offline template
            generator.
        lmm_temperature: The language model's sampling temperature.
        user_model: A user-model checkpoint trained on CLIP embeddings of
            this ``clip_model``, or a :class:`UserModel`; ``None``: the planted
            stand-in (:func:`planted_clip_user_model`).
        device: ``"cuda"``, ``"cpu"`` or ``None`` (the GPU if any).
        dtype: Model dtype (``None``: bf16 on a GPU, fp32 on the CPU).
        cache_dir: Image cache folder; ``"default"``: :func:`default_cache_dir`;
            ``None``: no cache.
        seeds: How image seeds derive from the episode (``"turn"``,
            ``"image"``, ``"prompt"``; see :mod:`simulators.images.pixels`).
        encoder: A ready encoder (text and image) instead of loading ``clip_model``.
        t2i: A ready text-to-image model instead of loading ``t2i_model``.
        chat: A ready chat model instead of loading ``lmm_model``.

    Raises:
        ValueError: A candidate count the generators cannot make.
        DependencyNotInstalled: A backend's package is missing (the message
            names the extra).
    """
    k, rest = divmod(num_candidates, len(CATEGORIES))
    if rest or not 1 <= k <= 8:
        raise ValueError(f"the clip world proposes 5, 10, ..., 40 candidates per turn (the same number in each of "
                         f"its {len(CATEGORIES)} categories), got num_candidates={num_candidates}")
    if encoder is None:
        encoder = OpenClipEncoder(clip_model, clip_pretrained, device=device)
    if t2i is None:
        cache = default_cache_dir() if cache_dir == "default" else cache_dir
        t2i = DiffusersTextToImage(t2i_model, steps=t2i_steps, guidance_scale=t2i_guidance, height=image_size,
                                   width=image_size, device=device, dtype=dtype, cache_dir=cache, tiny_vae=tiny_vae)
    if chat is None and lmm_model is not None:
        if lmm_model.startswith("gemini"):
            from simulators.candidates.gemini import GeminiChat

            chat = GeminiChat(lmm_model, temperature=lmm_temperature)
        else:
            chat = TransformersChat(lmm_model, device=device, dtype=dtype, temperature=lmm_temperature)
    generator: Any = (TemplateCandidateGenerator(encoder, k) if chat is None
                      else LanguageModelCandidateGenerator(chat, encoder, k))
    if isinstance(user_model, (str, os.PathLike)):
        users: UserModel = load_user_model(user_model, dim=encoder.dim)
    else:
        users = user_model or planted_clip_user_model(encoder)
    texts = read_prompts(prompts) if prompts is not None else default_prompt_texts()
    initial = TextPrompts(texts, encoder.encode(texts))
    remake = functools.partial(make_clip_world, num_candidates=num_candidates, lmm_temperature=lmm_temperature,
                               user_model=users, seeds=seeds, encoder=encoder, t2i=t2i, chat=chat)
    return World("clip", generator, PixelImageModel(t2i, encoder, seeds=seeds), users, initial, encoder,
                 thread_safe=False, remake=remake)


register_world("clip", make_clip_world)
