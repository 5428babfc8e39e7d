"""PASTA's agent: implicit Q-learning on d3rlpy with a slate critic, and its trainer.

The slate value is learned offline with d3rlpy's IQL (critic, expectile
value function; IQL's actor is never used, so by default it is not
trained). With PASTA's ``mean`` critic, ``q(h, P) = mean_{p in P} f(h, p)``,
the agent scores every candidate with ``f`` (the minimum over the critic
ensemble) and shows the top ``L`` with at most one per category, for a
whole batch of users at once. With the ``mixture`` critic (the belief-
weighted inclusive value, :mod:`agents.offline.encoders`) it shows the
slate with the highest value, searched over every slate as ``bayes``
searches (:func:`agents.model_based.best_slates`). Either rule can be
kept to one prompt per category or not (``one_per_category``).

A model is a folder:

* ``model.d3``: d3rlpy's own file (``d3rlpy.load_learnable``, after
  ``import agents.offline.encoders`` registers the encoder factory; it is a
  pickle, like every ``.d3``: load only files you trust);
* ``weights.pt`` and ``model.json``: the same weights as a state dict and
  d3rlpy's config as JSON, with the sizes, categories and world it was
  trained for. :meth:`IQLAgent.load` reads these, never unpickling.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.base import Agent, top_diverse
from agents.offline.encoders import (
    OBSERVATION_KEYS,
    PastaEncoderFactory,
    TypeBelief,
    observation_size,
    observation_slots,
)
from agents.offline.settings import IQLSettings
from pasta_env.config import EnvConfig
from pasta_env.datasets import load
from pasta_env.datasets.manifest import env_config_of, world_of
from pasta_env.datasets.offline import transition_arrays
from pasta_env.stats import ci95
from pasta_env.worlds import World
from simulators.atomic import atomic_path, write_json
from simulators.backends import check_torch_device, require
from simulators.errors import PastaError
from simulators.files import FileFormatError, WriteLock, check_output_file, claim_output_dir, code_version

MODEL_FORMAT = "pasta-t2i iql"
#: Version 2: the past rewards in the history; version 3: the weights' SHA-256 in ``model.json``; version 4:
#: the belief over types, the mixture critic and the acting rule.
MODEL_FORMAT_VERSION = 4


class ModelMismatchError(PastaError, ValueError):
    """A model was trained for other sizes, categories or another world than it is used with."""


def _d3rlpy():
    return require("d3rlpy", "PASTA's IQL agent")


def algo_device(device: str) -> str:
    """The device string d3rlpy uses for ``device`` (``cuda`` means ``cuda:0``)."""
    return "cuda:0" if device == "cuda" else device


def belief_size(settings: IQLSettings) -> tuple[int, int, Any]:
    """``(belief_types, belief_hidden, user_model)`` of ``settings``: the checkpoint's sizes when one is given."""
    if not settings.user_model:
        return settings.belief_types, settings.belief_hidden, None
    from simulators.users.checkpoint import load_user_model
    from simulators.users.neural import TrunkHeadsUserModel

    model = load_user_model(settings.user_model)
    if not isinstance(model, TrunkHeadsUserModel):
        raise ValueError(f"{settings.user_model}: the belief starts from a trunk-and-heads user model (what `pasta "
                         f"train-user-model` writes), got a {type(model).__name__}")
    if settings.belief_types not in (0, model.num_types):
        raise ValueError(f"belief_types {settings.belief_types} differs from the user model's {model.num_types} "
                         "types; leave it out to take the model's")
    return model.num_types, model.hidden, model


def make_iql(settings: IQLSettings, horizon: int, slate_size: int, dim: int, device: str = "cpu",
             reward_norm: tuple[float, float] = (0.0, 1.0)):
    """A d3rlpy IQL with PASTA's networks, its parameters initialised from ``settings.seed``.

    ``reward_norm``: the mean and standard deviation the history encoder
    standardises past rewards with (the training data's). With
    ``settings.user_model`` every copy of the belief starts from that
    checkpoint's weights.
    """
    d3rlpy = _d3rlpy()
    types, belief_hidden, user_model = belief_size(settings)
    if user_model is not None and user_model.dim != dim:
        raise ModelMismatchError(f"{settings.user_model}: the user model reads {user_model.dim}-dimensional "
                                 f"embeddings, the data hold {dim}")
    factory = PastaEncoderFactory(horizon=horizon, slate_size=slate_size, dim=dim, hidden=settings.hidden,
                                  reward_shift=float(reward_norm[0]), reward_scale=float(reward_norm[1]),
                                  belief_types=types, belief_hidden=belief_hidden, critic=settings.critic)
    config = d3rlpy.algos.IQLConfig(
        batch_size=settings.batch_size, gamma=settings.gamma, expectile=settings.expectile,
        weight_temp=settings.weight_temp, critic_learning_rate=settings.critic_lr,
        actor_learning_rate=settings.actor_lr, n_critics=settings.n_critics,
        critic_encoder_factory=factory, value_encoder_factory=factory,
        actor_encoder_factory=d3rlpy.models.VectorEncoderFactory(hidden_units=[64]),
        compile_graph=settings.compile_graph)
    algo = config.create(device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        algo.create_impl((observation_size(horizon, slate_size, dim),), slate_size * dim)
    belief_learning_rate(algo, settings.belief_lr)
    with torch.no_grad():
        if user_model is not None:
            from simulators.users.em import TorchUserModel

            state = TorchUserModel.from_numpy(user_model).state_dict()
            for module in _all_modules(algo):
                if isinstance(module, TypeBelief):
                    module.users.load_state_dict(state)
        if settings.critic == "mixture":  # Q = 1 * (the mixture's value) + 0 at the start
            for q_funcs in (algo.impl.q_function, algo.impl.modules.targ_q_funcs):
                for q_func in q_funcs:
                    q_func._fc.weight.fill_(1.0)
                    q_func._fc.bias.zero_()
    return algo


def belief_learning_rate(algo, lr: float) -> None:
    """Give the critics' and value function's beliefs (if any) their own parameter group, at rate ``lr``."""
    belief = {id(p) for m in _all_modules(algo) if isinstance(m, TypeBelief) for p in m.parameters()}
    if not belief:
        return
    optim = algo.impl.modules.critic_optim.optim
    group = optim.param_groups[0]
    mine = [p for p in group["params"] if id(p) in belief]
    group["params"] = [p for p in group["params"] if id(p) not in belief]
    optim.add_param_group({"params": mine, "lr": lr})


def _all_modules(algo) -> list[torch.nn.Module]:
    """Every torch module of ``algo``'s networks (critics, their targets, value function, actor)."""
    out: list[torch.nn.Module] = []
    for value in vars(algo.impl.modules).values():
        if isinstance(value, torch.nn.Module):
            out.extend(value.modules())
    return out


def flat_observations(obs: dict[str, np.ndarray], horizon: int, slate_size: int, dim: int) -> np.ndarray:
    """The networks' input: the batched observation's :data:`OBSERVATION_KEYS`, flattened, ``float32``."""
    slots = observation_slots(horizon, slate_size, dim)
    n = len(obs["initial_prompt"])
    return np.concatenate([np.asarray(obs[k], np.float32).reshape(n, -1) for k in slots], axis=1)


def _head(q_func) -> torch.nn.Linear:
    fc = getattr(q_func, "_fc", None)
    if not isinstance(fc, torch.nn.Linear):  # pragma: no cover - another d3rlpy layout
        raise RuntimeError("this d3rlpy's Q-function has no linear head; install d3rlpy 2.8")
    return fc


def critic_kind(algo) -> str:
    """``"mean"`` or ``"mixture"``: the slate critic ``algo`` was built with."""
    return algo.impl.q_function[0].encoder.critic


def prompt_values(algo, x: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """``f(h, p)`` of ``(B, n, d)`` prompts, the minimum over the critics: ``(B, n)`` (mean critic)."""
    values = [_head(q)(q.encoder.per_prompt(x, prompts))[..., 0] for q in algo.impl.q_function]
    return torch.stack(values).min(dim=0).values


def type_values(algo, x: torch.Tensor, prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixture critic: each latent type's value ``(B, K, n)`` of ``(B, n, d)`` prompts, the belief ``(B, K)``, ``tau``.

    From the first critic (the ensemble's types need not line up, so they
    are not averaged); its head's weight is positive while the slate
    value rises with the mixture (checked at acting time).
    """
    q_func = algo.impl.q_function[0]
    if float(_head(q_func).weight.reshape(-1)[0]) <= 0:
        raise RuntimeError("the mixture critic's head has a non-positive weight: the slate value no longer rises "
                           "with the mixture; retrain (lower --lr) or use --critic mean")
    v, belief = q_func.encoder.type_values(x, prompts)
    return v.transpose(1, 2), belief, q_func.encoder.temperature()


class IQLAgent(Agent):
    """Shows the top-``L`` candidates by the learned ``f(h, p)``, at most one per category.

    Build with :meth:`load` (a trained model folder) or :meth:`from_algo`.
    """

    name = "iql"
    needs_model = True

    def __init__(self, world: World, config: EnvConfig, seed: int | None = None, algo: Any = None,
                 name: str = "iql", one_per_category: bool = True):
        super().__init__(world, config, seed)
        if algo is None:
            raise ValueError("the iql agent needs a trained model: give iql:PATH (a folder made by "
                             "`pasta train-iql --out PATH`)")
        self.algo, self.name, self.one_per_category = algo, name, one_per_category
        self.device = next(algo.impl.q_function.parameters()).device

    @classmethod
    def from_algo(cls, algo, world: World, config: EnvConfig, name: str = "iql",
                  one_per_category: bool = True) -> IQLAgent:
        """An agent over an IQL being trained (no file)."""
        return cls(world, config, algo=algo, name=name, one_per_category=one_per_category)

    @classmethod
    def load(cls, path: str | Path, world: World, config: EnvConfig, seed: int | None = None,
             device: str | None = None) -> IQLAgent:
        """Load a model folder, checking it fits the env.

        Raises:
            FileFormatError: ``path`` is not a model folder, or its files are damaged.
            ModelMismatchError: The model was trained for other sizes, categories or another world.
        """
        meta = read_model_meta(path)
        if meta.get("observation_keys") != list(OBSERVATION_KEYS):
            raise ModelMismatchError(
                f"{path}: the model reads the observation keys {meta.get('observation_keys')}, this version reads "
                f"{list(OBSERVATION_KEYS)} (the past rewards joined the history); retrain it with `pasta train-iql`")
        want = {"horizon": config.horizon, "slate_size": config.slate_size, "dim": world.dim,
                "num_candidates": config.num_candidates, "categories": list(world.candidates.categories)}
        for key, value in want.items():
            if meta["layout"][key] != value:
                raise ModelMismatchError(
                    f"{path}: the model was trained for {key} {meta['layout'][key]!r}, this env has {value!r}; "
                    "train a model on data from this env")
        d3rlpy = _d3rlpy()
        try:
            algo_config = d3rlpy.algos.IQLConfig.deserialize(json.dumps(meta["d3rlpy_config"]))
        except Exception as exc:  # d3rlpy raises several kinds for a config it cannot read
            raise FileFormatError(f"{path}/model.json: d3rlpy cannot read its configuration ({exc}); "
                                  "retrain the model") from exc
        dev = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
        algo = algo_config.create(device=dev)
        algo.create_impl(tuple(meta["observation_shape"]), int(meta["action_size"]))
        belief_learning_rate(algo, float(meta.get("settings", {}).get("belief_lr", IQLSettings.belief_lr)))
        load_weights(algo, Path(path) / "weights.pt", meta["weights_sha256"])
        return cls(world, config, seed, algo=algo, name=f"iql:{path}",
                   one_per_category=bool(meta["acting"]["one_per_category"]))

    def values(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``f(h, p)`` of every candidate: ``(num_envs, L_C)``."""
        cfg = self.config
        x = flat_observations(obs, cfg.horizon, cfg.slate_size, self.world.dim)
        with torch.no_grad():
            xt = torch.as_tensor(x, device=self.device)
            pt = torch.as_tensor(np.asarray(obs["candidates"], np.float32), device=self.device)
            return prompt_values(self.algo, xt, pt).cpu().numpy()

    def act_batch(self, obs, info):
        cfg = self.config
        if critic_kind(self.algo) == "mixture":
            from agents.model_based import best_slates

            x = flat_observations(obs, cfg.horizon, cfg.slate_size, self.world.dim)
            with torch.no_grad():
                v, belief, tau = type_values(self.algo, torch.as_tensor(x, device=self.device),
                                             torch.as_tensor(np.asarray(obs["candidates"], np.float32),
                                                             device=self.device))
            return best_slates(v.double().cpu().numpy(), None, belief.double().cpu().numpy(), float(tau),
                               obs["candidate_categories"], cfg.slate_size, self.one_per_category)
        values = self.values(obs)
        if not self.one_per_category:
            return np.argsort(-values, axis=1, kind="stable")[:, :cfg.slate_size]
        return top_diverse(values, obs["candidate_categories"], cfg.slate_size, len(self.world.candidates.categories))


#: What ``model.json`` must hold, and the type of each field.
META_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format_version": int, "d3rlpy_config": dict, "observation_shape": list, "action_size": int,
    "observation_keys": list, "layout": dict, "weights_sha256": str, "acting": dict}
LAYOUT_FIELDS = ("horizon", "slate_size", "dim", "num_candidates", "categories")


def read_model_meta(path: str | Path) -> dict[str, Any]:
    """``model.json`` of a model folder, checked field by field."""
    path = Path(path)
    if not path.is_dir():
        raise FileFormatError(f"iql model {str(path)!r} " + ("is a file; give the model folder made by "
                                                             "`pasta train-iql --out`" if path.exists()
                                                             else "does not exist; train one with `pasta train-iql`"))
    try:
        meta = json.loads((path / "model.json").read_text())
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"{path}: no readable model.json ({exc}); not a finished iql model") from exc
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise FileFormatError(f"{path}/model.json is not an iql model description")
    if meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise FileFormatError(f"{path}/model.json is format version {meta.get('format_version')!r}; this "
                              f"pasta-t2i reads version {MODEL_FORMAT_VERSION}: retrain it with `pasta train-iql`")
    for name, kind in META_FIELDS.items():
        if not isinstance(meta.get(name), kind) or isinstance(meta.get(name), bool):
            what = getattr(kind, "__name__", kind)
            raise FileFormatError(f"{path}/model.json: field {name!r} is missing or not a {what}; the file is "
                                  "damaged: retrain the model")
    missing = [k for k in LAYOUT_FIELDS if k not in meta["layout"]]
    if missing:
        raise FileFormatError(f"{path}/model.json: layout lacks {', '.join(missing)}; the file is damaged")
    return meta


def load_weights(algo, path: str | Path, sha256: str | None = None) -> None:
    """Load a weights file written by :func:`save_weights` into ``algo``: tensors only, never a pickle.

    The bytes are checked against ``sha256`` first (a flipped byte fails
    here, not at acting time), then read with ``torch.load(weights_only=True)``,
    which takes tensors and plain containers and runs no code whatever the
    torch version's default or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` say.

    Raises:
        FileFormatError: Missing, damaged (checksum), not a weights file, or for other networks.
    """
    import io

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot read the weights ({exc.strerror or exc})") from exc
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise FileFormatError(f"{path}: the weights' checksum differs from the recorded one (the file changed or "
                              "is damaged); retrain the model or restore the file")
    try:
        state = torch.load(io.BytesIO(raw), map_location=algo.impl.device, weights_only=True)
        targets = algo.impl.modules.create_checkpointer(algo.impl.device).modules
        for name, module in targets.items():
            module.load_state_dict(state[name])
    except Exception as exc:  # torch raises several kinds for a damaged or foreign file
        raise FileFormatError(f"{path}: cannot load the weights ({type(exc).__name__}: {str(exc)[:200]}); "
                              "retrain the model") from exc


def save_weights(algo, path: str | Path) -> str:
    """Write ``algo``'s networks and optimisers (d3rlpy's own state dicts), atomically; their SHA-256."""
    with atomic_path(path) as tmp:
        algo.save_model(tmp)
        digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
    return digest


# ----------------------------------------------------------------------------------------------- training


class _Sampler:
    """Draws mini-batches from one or more datasets in fixed shares, kept on the training device.

    The transitions are held as ``float16`` tensors on ``device`` (the data
    were stored in float16); a batch is gathered there by index, so nothing
    but 256 indices crosses to a GPU per step, and d3rlpy's per-transition
    Python sampling is never used. Indices come from a numpy generator
    seeded from ``seed`` (its state is saved for resuming).
    """

    def __init__(self, folders: Sequence[str | Path], mix: Sequence[float], batch_size: int, seed: int,
                 device: str = "cpu", check: bool = True):
        self.parts = []
        layouts = set()
        worlds = set()
        self.device = device
        for folder in folders:
            ds = load(folder)
            if check:
                ds.check_checksums()
            layouts.add((ds.layout.horizon, ds.layout.num_candidates, ds.layout.slate_size, ds.layout.dim))
            worlds.add(json.dumps(ds.manifest["world"]["fingerprints"], sort_keys=True))
            a = transition_arrays(ds, keys=OBSERVATION_KEYS, action="embeddings")
            self.parts.append({
                "obs": torch.as_tensor(a["observations"].astype(np.float16), device=device),
                "actions": torch.as_tensor(a["actions"].astype(np.float16), device=device),
                "rewards": torch.as_tensor(a["rewards"], device=device),
                "terminals": torch.as_tensor(a["terminals"][:, None], device=device)})
            self.horizon = ds.layout.horizon
            self.layout, self.manifest = ds.layout, ds.manifest
        if len(layouts) > 1:
            raise ValueError(f"the datasets have different sizes (horizon, candidates, slate, dim): {sorted(layouts)}")
        if len(worlds) > 1:
            raise ValueError("the datasets come from different worlds; train on data of one world")
        rewards = torch.cat([part["rewards"] for part in self.parts]).double()
        #: Mean and standard deviation of every dataset's rewards (what the history encoder standardises by).
        self.reward_norm = (float(rewards.mean()), max(float(rewards.std()), 1e-6))
        shares = np.asarray(mix, float)
        counts = np.floor(shares / shares.sum() * batch_size).astype(int)
        counts[np.argmax(shares - counts / batch_size)] += batch_size - counts.sum()
        self.counts = counts
        self.rng = np.random.default_rng(seed)

    def indices(self) -> list[np.ndarray]:
        """The transitions of the next batch: one index array per dataset."""
        return [self.rng.integers(0, len(part["rewards"]), n) for part, n in zip(self.parts, self.counts)]

    def sample(self):
        """The next batch as d3rlpy's ``TorchMiniBatch``, on the device."""
        from d3rlpy.torch_utility import TorchMiniBatch

        obs, nxt, act, rew, term = [], [], [], [], []
        H = self.horizon
        for part, k in zip(self.parts, self.indices()):
            if len(k) == 0:
                continue
            nk = np.where(k % H == H - 1, k, k + 1)  # a terminal's next observation is never used
            k_t = torch.as_tensor(k, device=self.device)
            obs.append(part["obs"][k_t])
            nxt.append(part["obs"][torch.as_tensor(nk, device=self.device)])
            act.append(part["actions"][k_t])
            rew.append(part["rewards"][k_t])
            term.append(part["terminals"][k_t])

        def f32(xs):
            return torch.cat(xs).float()

        actions, rewards = f32(act), f32(rew)
        return TorchMiniBatch(observations=f32(obs), actions=actions, rewards=rewards, next_observations=f32(nxt),
                              next_actions=torch.zeros_like(actions), returns_to_go=torch.zeros_like(rewards),
                              terminals=f32(term), intervals=torch.ones_like(rewards), device=self.device)


def update(algo, batch, train_actor: bool = True, belief_loss: float = 0.0) -> dict[str, torch.Tensor | float]:
    """One gradient step of d3rlpy's IQL on a ``TorchMiniBatch``.

    With ``train_actor`` it is exactly what ``algo.update`` does after moving
    a numpy batch to the device (critic, value function, actor, target
    sync; the losses come back as floats). Without it the actor is skipped
    (the agent never uses it) and the losses come back as tensors on the
    device, so the step never waits for the device to finish; the critic,
    value function and targets are stepped as d3rlpy steps them.
    ``belief_loss`` adds that weight times minus the log-likelihood of the
    batch's next histories under every belief's user model (see
    :class:`~agents.offline.settings.IQLSettings`) to the critic's loss.
    """
    impl = algo.impl
    if train_actor and belief_loss <= 0:
        metrics = impl.update(batch, algo.grad_step)
    else:
        modules = impl.modules
        extra: dict[str, torch.Tensor] = {}
        if belief_loss > 0:
            modules.critic_optim.zero_grad()
            loss = impl.compute_critic_loss(batch, impl.compute_target(batch))
            encoders = [q.encoder.history for q in modules.q_funcs] + [modules.value_func._encoder]
            nll = -torch.stack([e.history_log_likelihood(batch.next_observations).mean() for e in encoders]).mean()
            (loss.critic_loss + belief_loss * nll).backward()
            extra["belief_nll"] = nll.detach()
        else:
            loss = impl._compute_critic_grad(batch)  # d3rlpy's own (CUDA-graphed under compile_graph)
        modules.critic_optim.step()
        if train_actor:
            impl.update_actor(batch)
        impl.update_critic_target()
        metrics = {"critic_loss": loss.critic_loss.detach(), "q_loss": loss.q_loss.detach(),
                   "v_loss": loss.v_loss.detach(), **extra}
    algo.set_grad_step(algo.grad_step + 1)
    return metrics


def evaluate_agent(agent: Agent, episodes: int, seed: int, world: World, config: EnvConfig) -> dict[str, Any]:
    """Mean return of ``agent`` on ``episodes`` users (env seeds ``seed + e``) with a 95% CI."""
    from pasta_env.vector_env import PastaT2IVectorEnv

    env = PastaT2IVectorEnv(num_envs=episodes, world=world, config=config)
    try:
        obs, info = env.reset(seed=seed)
        agent.reset(seed)
        total = np.zeros(episodes)
        turns = []
        for _ in range(config.horizon):
            obs, reward, *_, info = env.step(agent.act(obs, info))
            total += reward
            turns.append(float(reward.mean()))
    finally:
        env.close()
    return {"return_mean": float(total.mean()), "return_ci95": ci95(total), "per_turn": turns}


#: The agents drawn as reference lines on the learning curves.
REFERENCE_AGENTS: tuple[str, ...] = ("lmm", "popular", "bayes")


def reference_returns(episodes: int, seed: int, world: World, config: EnvConfig) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_agent` of :data:`REFERENCE_AGENTS` on the evaluation users (the learning curves' lines)."""
    from agents import make_agent

    return {name: evaluate_agent(make_agent(name, world, config, seed=0), episodes, seed, world, config)
            for name in REFERENCE_AGENTS}


def train_iql(data: Sequence[str | Path], out: str | Path, settings: IQLSettings = IQLSettings(),
              mix: Sequence[float] | None = None, device: str = "cpu", progress: bool = True,
              eval_seed: int = 10_000_000, overwrite: bool = False, check_data: bool = True) -> dict[str, Any]:
    """Train PASTA's agent on one or more datasets and write the model folder ``out``.

    Args:
        data: Dataset folders (made by ``pasta generate``).
        out: The model folder to write.
        settings: What to train and how.
        mix: Share of each dataset in every batch (default: equal shares).
        device: Torch device (``cpu``, ``cuda``, ``cuda:1``...).
        progress: Show a progress bar.
        eval_seed: Evaluations play the users of env seeds ``eval_seed + e``
            (users the datasets, seeded from 0 by default, did not hold).
        overwrite: Replace a model folder another run (other data or
            settings) wrote; without it such a folder is refused.
        check_data: Check every dataset array against its manifest's SHA-256
            before training (a damaged dataset is refused; seconds for
            30,000 episodes).

    Progress is saved in ``out/.state`` at every evaluation: rerun the same
    call after an interrupt and training continues from there.

    Returns:
        The training history: losses every ``log_every`` steps, evaluations,
        gradient steps per second.
    """
    from tqdm.auto import tqdm


    if not data:
        raise ValueError("give at least one dataset")
    mix = [1.0] * len(data) if mix is None else list(mix)
    if len(mix) != len(data) or min(mix) < 0 or sum(mix) <= 0:
        raise ValueError(f"mix must give one non-negative share per dataset ({len(data)}), got {mix}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileFormatError(f"--out {str(out)!r} is a file; the model is a folder")
    check_torch_device(device)
    with WriteLock(out):
        identity = {"settings": asdict(settings), "mix": mix, "device_kind": torch.device(device).type,
                    "data": [_data_identity(d) for d in data], "code_version": code_version()}
        claim_output_dir(out, {"command": "train-iql", **identity}, overwrite, inputs=data)
        sampler = _Sampler(data, mix, settings.batch_size, settings.seed, device=algo_device(device),
                           check=check_data)
        lay, manifest = sampler.layout, sampler.manifest
        kwargs = manifest["env_kwargs"]
        world = world_of(kwargs)
        env_config = env_config_of(kwargs)
        algo = make_iql(settings, lay.horizon, lay.slate_size, lay.dim, device, sampler.reward_norm)
        state = _State(out, identity)
        history = state.restore(algo, sampler) or {"losses": [], "evaluations": [], "seconds": 0.0, "step": 0}
        agent = IQLAgent.from_algo(algo, world, env_config, one_per_category=settings.one_per_category)
        if not history["evaluations"]:  # the untrained network, and the references on the same users
            history["evaluations"].append({"step": 0, **evaluate_agent(agent, settings.eval_episodes, eval_seed,
                                                                       world, env_config)})
            history["references"] = reference_returns(settings.eval_episodes, eval_seed, world, env_config)
        bar = tqdm(total=settings.steps, initial=history["step"], unit="step", desc="training iql",
                   disable=not progress, leave=False)
        t0, step0 = time.perf_counter(), history["step"]
        updating, t_update = 0.0, time.perf_counter()
        sums: dict[str, Any] = {}
        try:
            for step in range(history["step"] + 1, settings.steps + 1):
                for k, v in update(algo, sampler.sample(), settings.train_actor, settings.belief_loss).items():
                    sums[k] = sums[k] + v if k in sums else v  # tensors stay on the device until logged
                if step % settings.log_every == 0:
                    history["losses"].append({"step": step, **{k: float(v) / settings.log_every
                                                               for k, v in sums.items()}})  # waits for the device
                    updating += time.perf_counter() - t_update
                    sums = {}
                    bar.set_postfix(critic=f"{history['losses'][-1].get('critic_loss', float('nan')):.3g}")
                if (settings.eval_every and step % settings.eval_every == 0) or step == settings.steps:
                    ev = evaluate_agent(agent, settings.eval_episodes, eval_seed, world, env_config)
                    history["evaluations"].append({"step": step, **ev})
                    bar.set_postfix(ret=f"{ev['return_mean']:.2f}")
                    history["step"] = step
                    history["seconds"] += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    state.save(algo, sampler, history)
                if step % settings.log_every == 0:
                    t_update = time.perf_counter()
                bar.update(1)
        finally:
            bar.close()
        trained = history["step"] - step0
        history["steps_per_second"] = trained / history["seconds"] if history["seconds"] else None
        logged = (history["step"] // settings.log_every - step0 // settings.log_every) * settings.log_every
        #: Gradient steps per second of the updates alone (the logged windows: evaluations and saving left out).
        history["update_steps_per_second"] = logged / updating if updating else None
        _write_model(out, algo, lay, world, manifest, settings, mix, data, history)
        state.clear()
    return history


def _data_identity(folder: str | Path) -> dict[str, Any]:
    m = load(folder).manifest
    return {"dataset_id": m["dataset_id"], "episodes": m["episodes"],
            "arrays": hashlib.sha256(json.dumps(m["arrays"], sort_keys=True).encode()).hexdigest()[:16]}


class _State:
    """Training progress in ``out/.state``: weights and optimisers, the sampler's generator, the history."""

    def __init__(self, out: Path, identity: dict[str, Any]):
        self.dir, self.identity = out / ".state", identity

    def restore(self, algo, sampler: _Sampler) -> dict[str, Any] | None:
        if not (self.dir / "history.json").is_file():
            return None
        try:
            saved = json.loads((self.dir / "identity.json").read_text())
            history = json.loads((self.dir / "history.json").read_text())
            rng_state = json.loads((self.dir / "rng.json").read_text())
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"{self.dir}: damaged training state ({exc}); delete it to start over") from exc
        if saved != self.identity:
            raise ValueError(f"{self.dir} holds the progress of a training with other data or settings; delete "
                             "it (or choose another --out) to start over")
        try:
            digest = json.loads((self.dir / "weights.json").read_text())["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FileFormatError(f"{self.dir}: damaged training state (no weights checksum); delete it to start "
                                  "over") from exc
        load_weights(algo, self.dir / "weights.pt", digest)
        algo.set_grad_step(history["step"])
        sampler.rng.bit_generator.state = rng_state
        return history

    def save(self, algo, sampler: _Sampler, history: dict[str, Any]) -> None:
        tmp = self.dir.with_name(".state.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write_json(tmp / "weights.json", {"sha256": save_weights(algo, tmp / "weights.pt")})
        write_json(tmp / "rng.json", sampler.rng.bit_generator.state)
        write_json(tmp / "identity.json", self.identity)
        write_json(tmp / "history.json", history)  # last: a state without it is ignored
        old = self.dir.with_name(".state.old")
        shutil.rmtree(old, ignore_errors=True)
        if self.dir.exists():
            self.dir.rename(old)
        tmp.rename(self.dir)
        shutil.rmtree(old, ignore_errors=True)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _write_model(out: Path, algo, lay, world: World, manifest: dict, settings: IQLSettings, mix, data,
                 history: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    digest = save_weights(algo, out / "weights.pt")
    with atomic_path(out / "model.d3") as tmp:
        algo.save(tmp)
    meta = {
        "format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "code_version": code_version(),
        "weights_sha256": digest,
        "d3rlpy_config": json.loads(algo.config.serialize()),
        "observation_shape": list(algo.impl.observation_shape), "action_size": int(algo.impl.action_size),
        "observation_keys": list(OBSERVATION_KEYS),
        "acting": {"one_per_category": settings.one_per_category, "critic": settings.critic},
        "layout": {"horizon": lay.horizon, "slate_size": lay.slate_size, "dim": lay.dim,
                   "num_candidates": lay.num_candidates, "categories": list(world.candidates.categories)},
        "world": manifest["world"], "settings": asdict(settings), "mix": list(mix),
        "data": [str(d) for d in data], "final_evaluation": history["evaluations"][-1] if history["evaluations"]
        else None,
    }
    write_json(out / "history.json", history)
    plot_history(history, out / "curves.png")
    write_json(out / "model.json", meta)  # last: it marks a finished model


def plot_history(history: dict[str, Any], path: str | Path, references: dict[str, float] | None = None) -> None:
    """Learning curves: evaluation return (with 95% CI, the untrained network at step 0) and the losses
    (critic's TD loss, value function's expectile loss) against gradient steps, as an image.

    ``references``: returns drawn as horizontal lines (default: the
    history's ``references``, lmm, popular and bayes on the same users).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check_output_file(path, "plot")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ev = history["evaluations"]
    if ev:
        steps = [e["step"] for e in ev]
        mean = np.array([e["return_mean"] for e in ev])
        half = np.array([e["return_ci95"] for e in ev])
        ax1.plot(steps, mean, marker="o", label="iql")
        ax1.fill_between(steps, mean - half, mean + half, alpha=0.2)
    if references is None:
        references = {k: v["return_mean"] for k, v in history.get("references", {}).items()}
    styles = iter(["--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1))])
    for name, value in references.items():
        ax1.axhline(value, linestyle=next(styles, "--"), linewidth=1.2, color="0.35", label=name)
    ax1.set_xlabel("gradient steps")
    ax1.set_ylabel("mean return (95% CI)")
    ax1.grid(alpha=0.3)
    if ax1.lines:
        ax1.legend(fontsize="small")
    losses = history["losses"]
    if losses:
        steps = [x["step"] for x in losses]
        labels = {"q_loss": "critic (TD)", "v_loss": "value (expectile)", "actor_loss": "actor",
                  "belief_nll": "belief (-log-lik per history)"}
        for key, label in labels.items():
            if key in losses[0]:
                ax2.plot(steps, [x[key] for x in losses], label=label)
        ax2.set_yscale("log")
    ax2.set_xlabel("gradient steps")
    ax2.set_ylabel("loss")
    ax2.grid(alpha=0.3)
    if ax2.lines:
        ax2.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


