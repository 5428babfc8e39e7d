"""World "clip" on real open_clip, diffusers and transformers classes, tiny and randomly initialised here.

The models are built in the test (see ``benchmarks/tiny_models.py``), saved, and
loaded back by name or path through the same code a researcher's weights
take. Nothing is downloaded.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from benchmarks import tiny_models
from pasta_env.clip_world import make_clip_world
from pasta_env.env import PastaT2IEnv
from pasta_env.vector_env import PastaT2IVectorEnv
from simulators.contract import ImageEncoder, PromptEncoder, TextToImage
from simulators.images.diffusion import DiffusersTextToImage
from simulators.text.openclip import OpenClipEncoder

PROMPTS = ["a red fox in a snowy forest", "a bowl of ramen", "a lighthouse at dusk"]
SLATE = np.array([0, 5, 10, 15])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-models")
    return {"clip_model": tiny_models.register_tiny_open_clip(folder),
            "clip_pretrained": tiny_models.save_tiny_open_clip_weights(folder),
            "t2i_model": tiny_models.save_tiny_diffusion_pipeline(folder),
            "lmm_model": tiny_models.save_tiny_chat_model(folder)}


def _options(models, cache, **extra):
    return {"clip_model": models["clip_model"], "clip_pretrained": models["clip_pretrained"],
            "t2i_model": models["t2i_model"],
            "t2i_steps": 2, "image_size": 32, "device": "cpu", "cache_dir": str(cache), **extra}


def _play(env, seed):
    obs, info = env.reset(seed=seed)
    out = {"obs": [obs], "rewards": [], "infos": [info]}
    for _ in range(env.unwrapped.config.horizon):
        obs, reward, term, trunc, info = env.step(SLATE)
        out["obs"].append(obs)
        out["rewards"].append(reward)
        out["infos"].append(info)
    assert term and not trunc
    return out


def test_a_full_episode_of_the_clip_world_loaded_by_name(models, tmp_path):
    env = gym.make("PastaT2I-v0", world="clip", prompts=PROMPTS, render_mode="rgb_array",
                   **_options(models, tmp_path / "cache", lmm_model=models["lmm_model"]))
    world = env.unwrapped.world
    assert isinstance(world.encoder, OpenClipEncoder) and isinstance(world.encoder, PromptEncoder)
    assert isinstance(world.encoder, ImageEncoder) and isinstance(world.images.t2i, TextToImage)
    world.candidates.chat.max_new_tokens = 24  # a random model's babble: short is enough
    run = _play(env, seed=3)
    obs = run["obs"][-1]
    assert obs["candidates"].shape == (25, 32) and obs["history_slate_images"].shape == (5, 4, 32)
    np.testing.assert_allclose(np.linalg.norm(obs["candidates"], axis=1), 1.0, atol=1e-4)
    # Images came out: 16 per turn, pixels kept for rendering, embedded in CLIP's space.
    pixels = env.unwrapped.core.pixels
    assert pixels.shape == (1, 4, 4, 32, 32, 3) and pixels.dtype == np.uint8 and pixels.std() > 0
    # The random language model's replies are malformed: repaired, and the info says so.
    notes = [i.get("candidate_notes") for i in run["infos"]]
    assert all(n and "from the offline generator" in n for n in notes)
    assert len(set(run["infos"][-1]["candidate_texts"])) == 25
    chosen = run["infos"][1]["slate_texts"][run["infos"][1]["choice"]]
    assert run["infos"][2]["candidate_texts"][0] != chosen  # the next turn expands the chosen prompt
    # The grid: L columns of M images, the chosen column framed in green.
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    green = (frame == np.array([40, 170, 60], np.uint8)).all(axis=2)
    columns = np.flatnonzero(green.any(axis=0))
    col_width = (frame.shape[1] - 4) // 4
    assert columns.min() // col_width == columns.max() // col_width == run["infos"][-1]["choice"]


def test_same_seed_same_episode_and_the_cache_serves_repeated_prompts(models, tmp_path):
    opts = _options(models, tmp_path / "cache", lmm_model=models["lmm_model"])
    first = PastaT2IEnv(world="clip", prompts=PROMPTS, **opts)
    first.world.candidates.chat.max_new_tokens = 24
    a = _play(first, seed=11)
    t2i_a = first.world.images.t2i
    assert t2i_a.cache.misses > 0 and t2i_a.calls > 0
    # A new world (new models, empty memory) on the same folder: every image comes from the disk cache.
    second = PastaT2IEnv(world="clip", prompts=PROMPTS, **opts)
    second.world.candidates.chat.max_new_tokens = 24
    b = _play(second, seed=11)
    t2i_b = second.world.images.t2i
    assert t2i_b.calls == 0 and t2i_b.cache.hits == 5 * 16 and t2i_b.cache.misses == 0
    assert a["rewards"] == b["rewards"]
    for x, y in zip(a["obs"], b["obs"]):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert [list(i["candidate_texts"]) for i in a["infos"]] == [list(i["candidate_texts"]) for i in b["infos"]]
    # Another seed is another episode.
    c = _play(second, seed=12)
    assert c["rewards"] != a["rewards"]


def test_image_seeds_follow_the_turn_so_a_prompt_shown_again_costs_nothing(models, tmp_path):
    t2i = DiffusersTextToImage(models["t2i_model"], steps=2, height=32, width=32, device="cpu",
                               cache_dir=tmp_path / "cache")
    world = make_clip_world(prompts=PROMPTS, t2i=t2i, **{k: v for k, v in _options(models, None).items()
                                                         if k not in ("t2i_model", "t2i_steps", "image_size")})
    env = PastaT2IEnv(world=world)
    env.reset(seed=5)
    env.step(SLATE)
    calls = t2i.calls
    env.reset(seed=5)
    env.step(SLATE[::-1].copy())  # the same prompts in other columns: the same images, from memory
    assert t2i.calls == calls
    np.testing.assert_array_equal(np.sort(env.core.images[0, :, 0, 0]), np.sort(env.core.images[0, :, 0, 0]))


def test_vector_env_rows_equal_single_envs_in_the_clip_world(models, tmp_path):
    world = make_clip_world(prompts=PROMPTS, **_options(models, tmp_path / "cache"))
    vec = PastaT2IVectorEnv(num_envs=2, world=world)
    assert vec.num_threads == 1  # the clip world batches users itself
    obs_v, _ = vec.reset(seed=20)
    single = PastaT2IEnv(world=world)
    for i in range(2):
        obs_s, info_s = single.reset(seed=20 + i)
        np.testing.assert_allclose(obs_v["candidates"][i], obs_s["candidates"], atol=1e-5)
    rewards_v = vec.step(np.stack([SLATE, SLATE]))[1]
    for i in range(2):
        single.reset(seed=20 + i)
        assert single.step(SLATE)[1] == pytest.approx(rewards_v[i], abs=1e-4)
    with pytest.raises(ValueError, match="num_threads=1"):
        PastaT2IVectorEnv(num_envs=2, world=world, num_threads=2)


def test_gymnasium_env_checker_passes_on_the_clip_world(models, tmp_path):
    from gymnasium.utils.env_checker import check_env

    env = PastaT2IEnv(world="clip", prompts=PROMPTS, **_options(models, tmp_path / "cache"))
    check_env(env, skip_render_check=True)


def test_clip_world_options_are_checked(models, tmp_path):
    with pytest.raises(ValueError, match="world 'synthetic' takes no option 'clip_model'"):
        gym.make("PastaT2I-v0", clip_model="ViT-H-14")
    with pytest.raises(ValueError, match="5, 10, ..., 40 candidates"):
        make_clip_world(num_candidates=12, **_options(models, tmp_path))
    with pytest.raises(ValueError, match="no pretrained tag 'nope'"):
        OpenClipEncoder(models["clip_model"], "nope", device="cpu")


def test_open_clip_encoder_embeds_image_files_for_the_preference_adapters(models, tmp_path):
    from PIL import Image

    enc = OpenClipEncoder(models["clip_model"], None, device="cpu")
    pixels = np.random.default_rng(0).integers(0, 255, (2, 40, 40, 3), dtype=np.uint8)
    paths = []
    for i, p in enumerate(pixels):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(p).save(paths[-1])
    emb = enc.encode_image_payloads([str(paths[0]), paths[1].read_bytes()])
    assert emb.shape == (2, enc.dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, enc.encode_image_payloads([str(paths[0]), str(paths[1])]), atol=1e-6)


def test_validate_world_runs_on_the_clip_world(models, tmp_path):
    from agents import validity as world_validity

    report = world_validity.run("clip", prompts=None, episodes=4, seed=0, num_envs=4, progress=False,
                                world_kwargs=_options(models, tmp_path / "cache"))
    assert report["settings"]["world"] == "clip"
    assert set(report["agents"]) >= {"random", "lmm", "greedy", "bayes", "planner", "oracle"}
    assert all(np.isfinite(a["return_mean"]) for a in report["agents"].values())
    assert any(c["check"] == "no privileged info reaches a non-privileged agent" and c["passed"]
               for c in report["checks"])


def test_a_user_model_trained_on_clip_embeddings_drives_the_clip_world(models, tmp_path, capsys):
    """Preference data embedded by the open_clip encoder -> EM -> the clip world's user model."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from pasta_cli.main import main

    rng = np.random.default_rng(0)

    def png(colour):
        buf = io.BytesIO()
        Image.fromarray(np.full((24, 24, 3), colour, np.uint8)).save(buf, format="PNG")
        return buf.getvalue()

    rows = []
    for user in range(6):
        for i in range(12):  # users 0-2 prefer the red image, users 3-5 the blue one
            red_first = bool(rng.integers(2))
            a, b = ((200, 30, 30), (30, 30, 200)) if red_first else ((30, 30, 200), (200, 30, 30))
            rows.append({"caption": PROMPTS[i % 3], "label_0": int(red_first == (user < 3)),
                         "label_1": int(red_first != (user < 3)), "user_id": user, "has_label": True,
                         "image_0_uid": f"{user}-{i}-0", "image_1_uid": f"{user}-{i}-1",
                         "jpg_0": png(a), "jpg_1": png(b)})
    source = tmp_path / "pick.parquet"  # Pick-a-Pic's own layout: the images as bytes in the table
    pq.write_table(pa.Table.from_pylist(rows), source)
    data, model = tmp_path / "prefs", tmp_path / "clip_users.npz"
    assert main(["import-preferences", "--format", "pick-a-pic", "--input", str(source), "--out", str(data),
                 "--clip-model", models["clip_model"], "--clip-pretrained", models["clip_pretrained"],
                 "--device", "cpu"]) == 0
    assert "72 pairs from 6 users" in capsys.readouterr().out
    with np.load(data / "embeddings.npz") as emb:
        assert emb["image_emb"].shape == (2 * 72, 32) and emb["prompt_emb"].shape == (3, 32)  # the tiny CLIP's
    assert main(["train-user-model", "--data", str(data), "--k", "2", "--epochs", "3", "--inits", "1",
                 "--out", str(model)]) == 0
    env = PastaT2IEnv(world="clip", prompts=PROMPTS, user_model=str(model), **_options(models, tmp_path / "c"))
    assert env.world.user_model.num_types == 2 and env.world.user_model.dim == 32
    run = _play(env, seed=0)
    assert np.isfinite(run["rewards"]).all()


def test_the_clip_world_has_a_stable_identity_that_names_what_differs(models, tmp_path):
    from pasta_env.datasets.identity import identity_differences, world_identity

    a = world_identity(make_clip_world(prompts=PROMPTS, **_options(models, tmp_path / "cache")))
    b = world_identity(make_clip_world(prompts=PROMPTS, **_options(models, tmp_path / "cache")))
    assert a == b and a["name"] == "clip" and a["dim"] == 32
    c = world_identity(make_clip_world(prompts=PROMPTS, **_options(models, tmp_path / "cache", t2i_steps=3)))
    assert identity_differences(a, c) == [
        f"the image model differs (fingerprint {a['fingerprints']['images']} in the dataset, "
        f"{c['fingerprints']['images']} in this installation)"]


def test_the_clip_world_remade_around_another_request_keeps_its_loaded_models(models, tmp_path):
    from pasta_env.worlds import make_world

    world = make_world("clip", prompts=PROMPTS, **_options(models, tmp_path / "cache", lmm_model=models["lmm_model"]))
    other = world.with_prompts(["a cozy reading nook"])
    assert other.encoder is world.encoder and other.images.t2i is world.images.t2i
    assert other.candidates.chat is world.candidates.chat and other.user_model is world.user_model
    assert [other.prompt_text(0)] == ["a cozy reading nook"] and not other.thread_safe
