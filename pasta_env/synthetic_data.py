"""Synthetic preference data from a planted user model, in the documented format.

For each user (type drawn from the planted model's prior):

* **pairs**: a random request ``p``; image A rendered for ``p``, image B for
  a random expansion of ``p`` (as if from another text-to-image model, or
  a rewritten prompt). The label is drawn from Bradley-Terry,
  ``P(A) = sigmoid(s_k(p, A) - s_k(p, B))``;
  a close call (``|Δ| < tie_margin``) is a tie (0.5) with probability ``tie_prob``.
* **ratings**: a random prompt and one image; ``rating = s_k(p, I) + N(0, rating_noise^2)``.
* **choices**: trajectories of ``PastaT2I-v0`` played by that user with
  random slates of one candidate per category; each turn is a record with
  the session's initial prompt (the user's request).

Writes ``pairs.jsonl``, ``ratings.jsonl``, ``choices.jsonl``,
``embeddings.npz`` and ``users.jsonl`` (true types) in ``train/`` and, for
held-out users, ``test/``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pasta_env.spaces import random_diverse_slates
from pasta_env.vector_env import PastaT2IVectorEnv
from pasta_env.worlds import World, make_world, planted_user_model, synthetic_space
from simulators.atomic import write_json
from simulators.candidates.synthetic import SyntheticCandidateGenerator
from simulators.images.synthetic import SyntheticImageModel
from simulators.preferences.data import write_dataset
from simulators.text import prompts as P
from simulators.users.user_model import UserModel


@dataclass(frozen=True)
class SyntheticDataConfig:
    """What to generate.

    Attributes:
        num_types: Types of the planted model (8: the eight tastes).
        users: Training users.
        test_users: Held-out users (written to ``test/``; 0 for none).
        pairs_per_user, ratings_per_user: Single-turn records per user.
        trajectories_per_user: Multi-turn episodes per user (``horizon`` choices each).
        tie_margin, tie_prob: When a close pair is a tie.
        rating_noise: Standard deviation of rating noise.
        seed: Seed of everything.
    """

    num_types: int = 8
    users: int = 2000
    test_users: int = 500
    pairs_per_user: int = 20
    ratings_per_user: int = 10
    trajectories_per_user: int = 4
    tie_margin: float = 0.25
    tie_prob: float = 0.3
    rating_noise: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for name in ("num_types", "users"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("test_users", "pairs_per_user", "ratings_per_user", "trajectories_per_user"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.tie_prob <= 1 or not self.tie_margin >= 0 or not self.rating_noise >= 0:
            raise ValueError("tie_prob must be in [0, 1], tie_margin and rating_noise >= 0")


class _Collector:
    """Accumulates records, image embeddings and prompt embeddings."""

    def __init__(self, space: P.PromptSpace):
        self.space = space
        self.records: dict[str, list[dict]] = {"pairs": [], "ratings": [], "choices": []}
        self.images: dict[str, np.ndarray] = {}
        self.prompts: dict[str, np.ndarray] = {}

    def prompt(self, ids: np.ndarray) -> str:
        text = self.space.text(ids)
        if text not in self.prompts:
            self.prompts[text] = self.space.embed(ids)
        return text

    def image(self, emb: np.ndarray) -> str:
        key = f"img{len(self.images)}"
        self.images[key] = np.array(emb, dtype=np.float16)  # a copy: no view keeps a batch alive
        return key


def _single_turn(world: World, users: UserModel, types: np.ndarray, uids: list[str], cfg, rng,
                 out: _Collector) -> None:
    space, gen, images = synthetic_space(world), world.candidates, world.images
    if not isinstance(gen, SyntheticCandidateGenerator) or not isinstance(images, SyntheticImageModel):
        raise ValueError("planted preference data needs the synthetic world's generator and image model")
    vocab = space.vocab
    for kind, per_user in (("pairs", cfg.pairs_per_user), ("ratings", cfg.ratings_per_user)):
        n = per_user * len(uids)
        if n == 0:
            continue
        owner = np.repeat(np.arange(len(uids)), per_user)
        prompts = P.random_prompts(vocab, n, rng)
        emb = space.embed(prompts)
        img_a = images.render_ids(prompts[:, None, :], rng.random((n, 1, 1), np.float32))[:, 0, 0]
        s_a = users.type_scores(emb[:, None, :], img_a[:, None, None, :], types[owner])[:, 0, 0]
        if kind == "ratings":
            ratings = s_a + cfg.rating_noise * rng.standard_normal(n)
            for i in range(n):
                out.records["ratings"].append({
                    "user_id": uids[owner[i]], "prompt": out.prompt(prompts[i]), "image": out.image(img_a[i]),
                    "rating": round(float(ratings[i]), 4)})
            continue
        cands, _ = gen.expand(prompts, rng.random((n, gen.uniforms_per_turn), np.float32))
        pick = rng.integers(0, gen.num_candidates, n)
        other = cands[np.arange(n), pick]
        img_b = images.render_ids(other[:, None, :], rng.random((n, 1, 1), np.float32))[:, 0, 0]
        s_b = users.type_scores(emb[:, None, :], img_b[:, None, None, :], types[owner])[:, 0, 0]
        delta = s_a - s_b
        label = (rng.random(n) < 1.0 / (1.0 + np.exp(-delta))).astype(float)
        tie = (np.abs(delta) < cfg.tie_margin) & (rng.random(n) < cfg.tie_prob)
        label[tie] = 0.5
        for i in range(n):
            out.records["pairs"].append({"user_id": uids[owner[i]], "prompt": out.prompt(prompts[i]),
                                         "image_a": out.image(img_a[i]), "image_b": out.image(img_b[i]),
                                         "label": float(label[i])})


def _choices(world: World, types: np.ndarray, uids: list[str], cfg, rng, out: _Collector) -> None:
    if cfg.trajectories_per_user == 0:
        return
    env = PastaT2IVectorEnv(num_envs=len(uids), world=world)
    core, n_cat = env.core, len(world.candidates.categories)
    for traj in range(cfg.trajectories_per_user):
        obs, info = env.reset(seed=int(rng.integers(2**31)), options={"user_type": types})
        requests = [out.prompt(p) for p in _ids(core.request)]
        for turn in range(env.config.horizon):
            slates = random_diverse_slates(obs["candidate_categories"], env.config.slate_size, n_cat, rng)
            obs, _, _, _, info = env.step(slates)
            # Read each array once per step: on a sharded core every read joins the shards.
            shown, images, choice = _ids(core.slate_prompts), core.images, core.choice
            for b, uid in enumerate(uids):
                out.records["choices"].append({
                    "user_id": uid, "trajectory_id": f"{uid}/{traj}", "turn": turn,
                    "initial_prompt": requests[b], "prompts": [out.prompt(p) for p in shown[b]],
                    "images": [[out.image(img) for img in col] for col in images[b]],
                    "chosen": int(choice[b])})


def _ids(prompts) -> np.ndarray:
    if not isinstance(prompts, P.PhrasePrompts):
        raise ValueError(f"planted preference data needs the synthetic world's prompts, got {type(prompts).__name__}")
    return prompts.ids


def generate(out_dir: str | os.PathLike, config: SyntheticDataConfig = SyntheticDataConfig(),
             progress: bool = True, overwrite: bool = False) -> dict:
    """Write planted synthetic data to ``out_dir/train`` (and ``out_dir/test``).

    The output is deterministic given ``config``. ``out_dir`` is claimed for
    this run (:func:`simulators.files.claim_output_dir`): a folder holding
    another run's files is refused unless ``overwrite``, a rerun with the
    same settings (e.g. after an interrupt) redoes the work into the same
    files, and a second process writing the same folder is refused.
    ``summary.json`` is written last: its presence marks a finished run.

    Returns:
        A summary: record counts per split, the planted model's settings.
    """
    from simulators.files import WriteLock, claim_output_dir

    with WriteLock(out_dir):
        claim_output_dir(out_dir, {"command": "make-synthetic-data", "config": asdict(config)}, overwrite)
        summary_path = Path(out_dir) / "summary.json"
        if summary_path.is_file():
            summary_path.unlink()  # rewritten when this run finishes
        return _generate(out_dir, config, progress)


def _generate(out_dir: str | os.PathLike, config: SyntheticDataConfig, progress: bool) -> dict:
    from tqdm.auto import tqdm

    rng = np.random.default_rng(config.seed)
    users = planted_user_model(config.num_types, config.seed)
    world = make_world("synthetic", user_model=users)
    summary: dict[str, Any] = {"config": asdict(config), "type_names": list(users.type_names), "splits": {}}
    splits = [("train", config.users), ("test", config.test_users)]
    bar = tqdm(total=config.users + config.test_users, unit="user", desc="generating", disable=not progress,
               leave=False)
    for split, n_users in splits:
        if n_users == 0:
            continue
        out = _Collector(synthetic_space(world))
        types_all = rng.choice(users.num_types, size=n_users, p=users.prior)
        uids_all = [f"{split}-{i:06d}" for i in range(n_users)]
        for a in range(0, n_users, 512):
            types, uids = types_all[a:a + 512], uids_all[a:a + 512]
            _single_turn(world, users, types, uids, config, rng, out)
            _choices(world, types, uids, config, rng, out)
            bar.update(len(uids))
        write_dataset(Path(out_dir) / split, out.records, out.prompts, out.images,
                      dict(zip(uids_all, types_all.tolist())), users.type_names)
        summary["splits"][split] = {"users": n_users, **{k: len(v) for k, v in out.records.items()}}
    bar.close()
    users.save(Path(out_dir) / "planted_model.npz")
    write_json(Path(out_dir) / "summary.json", summary)
    return summary
