"""Per-turn cost of world "clip" with the real architectures at random initialisation (speed does not need weights).

One turn of the clip world renders ``L x M`` (16) images and embeds them, and
embeds the turn's 25 candidate prompts. This script times each stage on the
real model classes, built from their published configurations with random
weights (nothing is downloaded):

* the text-to-image UNet: SDXL's (2.6 B parameters) for ``steps`` denoising
  steps at ``size`` pixels, batch 16, no guidance (turbo-style);
* the decode: SDXL's VAE decoder, or a tiny autoencoder (``--tiny-vae``,
  the ``AutoencoderTiny`` architecture) as the fidelity trade-off;
* open_clip ViT-H-14 (PASTA's encoder): 16 images and 25 prompts;
* the user model's scoring of the 16 image embeddings.

``pasta bench-clip-turn --device cuda --steps 1 4`` prints a table and
writes ``results/clip_turn.json``; ``--tiny`` swaps in miniature
configurations so the script itself can be checked on a CPU in seconds.
``--compile`` runs the UNet and decoder through ``torch.compile``.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

#: SDXL's UNet (stabilityai/stable-diffusion-xl-base-1.0, unet/config.json).
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                 cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                 addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
#: SDXL's VAE (vae/config.json).
SDXL_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, sample_size=1024, scaling_factor=0.13025)
TINY_UNET = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 1),
                 attention_head_dim=(2, 4), cross_attention_dim=32, norm_num_groups=4,
                 use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=8 * 6 + 16)
TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                norm_num_groups=4, sample_size=32)
TINY_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                                            "head_width": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def _timer(torch, device):
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def time_it(fn, repeats: int) -> float:
        fn()  # warm-up (and compilation)
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return float(np.median(times) * 1000.0)

    return time_it


def run(device: str = "cuda", steps: tuple[int, ...] = (1, 4), size: int = 512, images: int = 16,
        prompts: int = 25, dtype: str = "bfloat16", tiny: bool = False, tiny_vae: bool = False,
        compile: bool = False, repeats: int = 5, load: bool = False) -> dict[str, Any]:
    """Time one clip-world turn stage by stage; milliseconds are medians of ``repeats`` runs after a warm-up.

    The models are built on the device (random weights); ``build_s`` is that
    time. With ``load`` their weights are also saved as safetensors and loaded
    back onto the device (``load_s``: what a worker pays to load the models
    from a local disk, here from the page cache). With ``tiny`` the image size
    is capped at 64 pixels (a CPU check of the script).
    """
    import diffusers
    import open_clip
    import torch

    dev = torch.device(device)
    dt = getattr(torch, dtype)
    size = min(size, 64) if tiny else size
    time_it = _timer(torch, dev)
    torch.manual_seed(0)
    t_build = time.perf_counter()
    with torch.inference_mode(), dev:
        unet: Any = diffusers.UNet2DConditionModel(**(TINY_UNET if tiny else SDXL_UNET))
        unet = unet.to(dev, dt).eval()
        vae: Any
        if tiny_vae:
            vae = diffusers.AutoencoderTiny(**({"encoder_block_out_channels": (8, 8, 8, 8),
                                               "decoder_block_out_channels": (8, 8, 8, 8)} if tiny else {}))
        else:
            vae = diffusers.AutoencoderKL(**(TINY_VAE if tiny else SDXL_VAE))
        vae = vae.to(dev, dt).eval()
        if tiny:
            import tempfile

            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "bench-tiny-clip.json"
                path.write_text(json.dumps(TINY_CLIP))
                open_clip.add_model_config(path)
            clip_name = "bench-tiny-clip"
        else:
            clip_name = "ViT-H-14"
        clip = open_clip.create_model(clip_name, pretrained=None, device=dev, precision="bf16" if dt == torch.bfloat16
                                      else "fp32").eval()
        tokenizer = open_clip.get_tokenizer(clip_name)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        build_s = time.perf_counter() - t_build
        load_s = _load_time(torch, dev, {"unet": unet, "vae": vae, "clip": clip}) if load else None
        decode = vae.decode
        if compile:
            unet = torch.compile(unet)
            decode = torch.compile(vae.decode)
        factor = 8 if tiny_vae else 2 ** (len(vae.config.block_out_channels) - 1)
        lat = size // factor
        latents = torch.randn(images, 4, lat, lat, device=dev, dtype=dt)
        cfg = unet.config
        ctx = torch.randn(images, 77, cfg.cross_attention_dim, device=dev, dtype=dt)
        text_dim = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        added = {"text_embeds": torch.randn(images, text_dim, device=dev, dtype=dt),
                 "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * images, device=dev, dtype=dt)}
        t = torch.full((images,), 999, device=dev)
        vis = clip.visual.image_size
        vis = vis if isinstance(vis, (tuple, list)) else (vis, vis)
        pixels = torch.rand(images, 3, *vis, device=dev, dtype=dt)
        tokens = tokenizer([f"prompt number {i}, a detailed scene" for i in range(prompts)]).to(dev)

        def unet_steps(n):
            def go():
                x = latents
                for _ in range(n):
                    x = unet(x, t, encoder_hidden_states=ctx, added_cond_kwargs=added).sample
            return go

        image_emb = clip.encode_image(pixels).float()
        tastes = torch.randn(8, image_emb.shape[1], device=dev)  # a user model's eight taste heads
        stages = {f"unet_{n}_step": time_it(unet_steps(n), repeats) for n in steps}
        stages["decode"] = time_it(lambda: decode(latents).sample, repeats)
        stages["clip_images"] = time_it(lambda: clip.encode_image(pixels), repeats)
        stages["clip_prompts"] = time_it(lambda: clip.encode_text(tokens), repeats)
        stages["scoring"] = time_it(lambda: (image_emb @ tastes.T).softmax(-1), repeats)
    rest = stages["decode"] + stages["clip_images"] + stages["clip_prompts"] + stages["scoring"]
    turns = {n: stages[f"unet_{n}_step"] + rest for n in steps}
    return {
        "settings": {"device": str(dev), "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
                     "dtype": dtype, "size": size, "images": images, "prompts": prompts, "steps": list(steps),
                     "architectures": "tiny" if tiny else "SDXL UNet, " + ("tiny autoencoder" if tiny_vae else
                                                                            "SDXL VAE") + ", open_clip ViT-H-14",
                     "compile": compile, "repeats": repeats, "torch": torch.__version__,
                     "diffusers": diffusers.__version__, "python": platform.python_version()},
        "stages_ms": {k: round(v, 2) for k, v in stages.items()},
        "build_s": round(build_s, 2), "load_s": None if load_s is None else round(load_s, 2),
        "parameters": {"unet": sum(p.numel() for p in unet.parameters()),
                       "vae": sum(p.numel() for p in vae.parameters()),
                       "clip": sum(p.numel() for p in clip.parameters())},
        "turn_ms": {str(n): round(v, 2) for n, v in turns.items()},
        "images_per_s": {str(n): round(images / (v / 1000.0), 1) for n, v in turns.items()},
    }


def _load_time(torch, dev, models: dict[str, Any]) -> float:
    """Save the models' weights as safetensors in a temporary folder; seconds to load them back onto ``dev``."""
    import tempfile

    from safetensors.torch import load_file, save_file

    with tempfile.TemporaryDirectory() as folder:
        for name, model in models.items():
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{folder}/{name}.safetensors")
        t0 = time.perf_counter()
        for name, model in models.items():
            model.load_state_dict(load_file(f"{folder}/{name}.safetensors", device=str(dev)))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [f"clip-world turn on {s['gpu'] or s['device']} ({s['architectures']}, {s['dtype']}, {s['images']} "
             f"images at {s['size']} px, compile {s['compile']})", "", "| stage | ms |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in result["stages_ms"].items()]
    lines += ["", f"models built on the device in {result['build_s']:.1f} s"
              + ("" if result["load_s"] is None else f"; weights loaded from safetensors in {result['load_s']:.1f} s")]
    lines += ["", "| steps | ms per turn | images/s |", "|---|---|---|"]
    lines += [f"| {n} | {result['turn_ms'][n]:.1f} | {result['images_per_s'][n]:.1f} |" for n in result["turn_ms"]]
    return "\n".join(lines)
