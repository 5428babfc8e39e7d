"""Tiny, randomly initialised models of the real classes the clip world loads, for tests and smoke benchmarks.

open_clip (a registered tiny config loaded by name), a diffusers Stable
Diffusion pipeline (tiny UNet, VAE and CLIP text model, saved to a folder and
loaded back by path) and a tiny GPT-2 chat model with a tokenizer trained in
the test (saved and loaded by path). Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_CLIP = "pasta-tiny-clip"


def tiny_open_clip_config(folder: Path) -> str:
    """Write the open_clip model config ``pasta-tiny-clip.json`` (32-d, one layer per tower); returns its path.

    The path is itself a ``clip_model`` (the encoder registers it in whichever
    process loads it, a Ray worker too).
    """
    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    path = Path(folder) / f"{TINY_CLIP}.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def register_tiny_open_clip(folder: Path) -> str:
    """Register the open_clip config ``pasta-tiny-clip`` in this process and return its name."""
    import open_clip

    open_clip.add_model_config(tiny_open_clip_config(folder))
    return TINY_CLIP


def save_tiny_open_clip_weights(folder: Path) -> str:
    """Random weights of ``pasta-tiny-clip`` saved as a checkpoint (so every load gives the same model)."""
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model(register_tiny_open_clip(folder), pretrained=None)
    path = Path(folder) / "tiny-clip.pt"
    torch.save(model.state_dict(), path)
    return str(path)


def _clip_tokenizer_files(folder: Path) -> tuple[str, str]:
    """vocab.json and merges.txt of a byte-level CLIP tokenizer with no merges (every character a token)."""
    # Byte-level BPE maps every byte to a printable character: printable bytes to themselves, the rest
    # to code points from 256 up.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    chars = [chr(b) if b in printable else chr(next(extra)) for b in range(256)]
    vocab = {tok: i for i, tok in enumerate(["<|startoftext|>", "<|endoftext|>", *chars, *[c + "</w>" for c in chars]])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return str(folder / "vocab.json"), str(folder / "merges.txt")


def save_tiny_diffusion_pipeline(folder: Path) -> str:
    """A tiny Stable Diffusion pipeline (32x32 images) saved to ``folder``; returns the path."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                norm_num_groups=4, attention_head_dim=4)
    vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        latent_channels=4, norm_num_groups=4, sample_size=32)
    tok_dir = folder / "_tok"
    tok_dir.mkdir(exist_ok=True)
    vocab, merges = _clip_tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer(vocab, merges, model_max_length=77)
    text = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16,
                                        intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                                        vocab_size=len(tokenizer), max_position_embeddings=77))
    pipe: Any = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=EulerDiscreteScheduler(steps_offset=1), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    out = folder / "pipeline"
    pipe.save_pretrained(out)
    return str(out)


def save_tiny_chat_model(folder: Path) -> str:
    """A tiny random GPT-2 with a word-level tokenizer trained here and a chat template; returns the path."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    corpus = ["a red fox in a snowy forest, oil painting", "rephrase add detail change style change subject",
              "creative leap", '{"rephrase": ["a cat"], "add detail": []}', "system user assistant : ,"]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[EOS]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    fast.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                          "{% if add_generation_prompt %}assistant:{% endif %}")
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(fast), n_positions=1024, n_embd=16, n_layer=1, n_head=2,
                                       eos_token_id=fast.eos_token_id, bos_token_id=fast.eos_token_id))
    out = Path(folder) / "chat"
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return str(out)


def tiny_clip_world_options(folder: Path, cache: str | None = None, chat: bool = False) -> dict:
    """World options (JSON values) of a clip world on tiny models saved under ``folder``: loadable in any process."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    options = {"clip_model": tiny_open_clip_config(folder), "clip_pretrained": save_tiny_open_clip_weights(folder),
               "t2i_model": save_tiny_diffusion_pipeline(folder), "t2i_steps": 2, "image_size": 32,
               "device": "cpu", "cache_dir": cache}
    if chat:
        options["lmm_model"] = save_tiny_chat_model(folder)
    return options
