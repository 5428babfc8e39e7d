"""Mini-batch EM for the user model (PASTA's Algorithm 1), in torch.

All records of a user share one latent type. Each iteration takes a
mini-batch of users and

* **E-step**: computes each user's posterior over types,
  ``r_uk ∝ pi_k exp(sum of the user's record log-likelihoods under type k)``
  (held fixed, no gradient);
* **M-step**: takes a gradient step on the posterior-weighted
  log-likelihood ``sum_u sum_k r_uk log p(records_u | k)`` and moves the
  mixing weights ``pi`` towards the batch's mean posterior.

The record log-likelihoods, each with its own weight:

* pairs, Bradley-Terry with ties: ``y log s(Δ) + (1 - y) log s(-Δ)``, where
  ``Δ = s_k(p, a) - s_k(p, b)`` and ``y`` the label (0.5 for a tie);
* ratings, Gaussian regression: ``-(r - s_k(p, I))^2 / (2 sigma^2)``;
* multi-turn choices: ``log softmax(tau * U_k)[chosen]``, with ``U_k`` the
  aggregated image scores of each slate column against the session's
  request ``p0`` and ``tau`` learned.

Several random initialisations are trained briefly and the best (highest
log-likelihood) is trained to the end. The state is checkpointed after each
epoch, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from simulators.backends import check_torch_device, require
from simulators.files import FileFormatError, code_version, fingerprint
from simulators.preferences.data import PreferenceData
from simulators.users.neural import TrunkHeadsUserModel
from simulators.users.user_model import AGGREGATIONS

require("torch", "training the user model", extra="em")
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402


@dataclass(frozen=True)
class EMConfig:
    """Settings of the user model and its EM training.

    Attributes:
        num_types: Number of latent user types ``K``.
        hidden: Hidden units of the shared trunk.
        aggregation: ``mean``, ``max`` or ``softmax`` over a column's images.
        epochs: Passes over all users (initialisation epochs included).
        users_per_batch: Users per EM iteration.
        lr: Adam learning rate.
        pair_weight, rating_weight, choice_weight: Weights of the three losses.
        reward_weight: Weight of a choice's reward, where a choice record
            carries one (a trajectory dataset's turns): the log density of
            the experienced reward, Gumbel with location the slate's
            inclusive value less ``gamma / tau`` and scale ``1 / tau``
            (:mod:`pasta_env.rewards`).
        rating_noise: ``sigma`` of the rating regression.
        num_inits: Random initialisations tried.
        init_epochs: Epochs each initialisation is trained before the best is kept.
        prior_step: Step size of the mixing-weight update per iteration.
        init_scale: Norm of each head's initial image weights: distinct, confident
            initial types break the symmetry between types.
        revive_below: After each epoch, a type whose weight is below
            ``revive_below / K`` is re-seeded by splitting the heaviest type
            (a perturbed copy of its head, half its weight): EM's usual cure
            for empty clusters.
        seed: Seed of initialisation and batching.
        device: Torch device, e.g. ``"cpu"`` or ``"cuda"``.
    """

    num_types: int = 8
    hidden: int = 32
    aggregation: str = "mean"
    epochs: int = 20
    users_per_batch: int = 16
    lr: float = 3e-2
    pair_weight: float = 1.0
    rating_weight: float = 1.0
    choice_weight: float = 1.0
    reward_weight: float = 1.0
    rating_noise: float = 1.0
    num_inits: int = 3
    init_epochs: int = 3
    prior_step: float = 0.1
    init_scale: float = 5.0
    revive_below: float = 0.1
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        for name in ("num_types", "epochs", "users_per_batch", "num_inits"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("hidden", "init_epochs", "revive_below", "pair_weight", "rating_weight", "choice_weight",
                     "reward_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "rating_noise", "init_scale"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)}")
        if not 0 < self.prior_step <= 1:
            raise ValueError(f"prior_step must be in (0, 1], got {self.prior_step}")
        if self.pair_weight + self.rating_weight + self.choice_weight <= 0:
            raise ValueError("at least one of pair_weight, rating_weight and choice_weight must be positive")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, "
                             f"got {self.aggregation!r}")


#: Marks a resume state written by this trainer (the file holds tensors and plain data only).
STATE_FORMAT = "pasta-em-state-1"


class TorchUserModel(nn.Module):
    """The trunk-and-heads user model in torch (see :mod:`simulators.users.neural`)."""

    log_prior: torch.Tensor  # a buffer: log mixing weights

    def __init__(self, dim: int, num_types: int, hidden: int = 32, aggregation: str = "mean",
                 temperature: float = 1.0):
        super().__init__()
        self.aggregation = aggregation
        self.trunk = nn.Linear(2 * dim, hidden)
        self.heads = nn.Linear(2 * dim + hidden, num_types)
        self.log_tau = nn.Parameter(torch.tensor(math.log(temperature)))
        self.register_buffer("log_prior", torch.full((num_types,), -math.log(num_types)))

    def scores(self, prompts: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Scores ``(..., K)`` of images ``(..., d)`` for prompts ``(..., d)`` (broadcast)."""
        x = torch.cat([images, images * prompts], dim=-1)
        return self.heads(torch.cat([x, F.relu(self.trunk(x))], dim=-1))

    def aggregate(self, s: torch.Tensor, dim: int) -> torch.Tensor:
        """Aggregate image scores over ``dim``."""
        if self.aggregation == "mean":
            return s.mean(dim)
        if self.aggregation == "max":
            return s.amax(dim)
        return (torch.softmax(s, dim) * s).sum(dim)

    def to_numpy(self, type_names=(), info=None) -> TrunkHeadsUserModel:
        """The same model as a numpy :class:`TrunkHeadsUserModel`."""
        def arr(t):
            return t.detach().cpu().numpy().astype(np.float32)

        prior = np.exp(arr(self.log_prior).astype(np.float64))
        return TrunkHeadsUserModel(
            prior=prior / prior.sum(), temperature=float(self.log_tau.detach().exp()), aggregation=self.aggregation,
            type_names=tuple(type_names), trunk_w=arr(self.trunk.weight), trunk_b=arr(self.trunk.bias),
            head_w=arr(self.heads.weight), head_b=arr(self.heads.bias), info=dict(info or {}))

    @classmethod
    def from_numpy(cls, model: TrunkHeadsUserModel) -> TorchUserModel:
        """A torch copy of a numpy model (to fine-tune or resume)."""
        out = cls(model.dim, model.num_types, model.hidden, model.aggregation, model.temperature)
        with torch.no_grad():
            out.trunk.weight.copy_(torch.from_numpy(model.trunk_w))
            out.trunk.bias.copy_(torch.from_numpy(model.trunk_b))
            out.heads.weight.copy_(torch.from_numpy(model.head_w))
            out.heads.bias.copy_(torch.from_numpy(model.head_b))
            out.log_prior.copy_(torch.from_numpy(np.log(model.prior)))
        return out


class _Tensors:
    """The dataset as tensors on the training device."""

    def __init__(self, data: PreferenceData, device: str):
        def t(x, dtype=torch.long):
            return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)

        self.prompt = t(data.prompt_emb, torch.float32)
        self.image = t(data.image_emb, torch.float32)
        self.records = {
            kind: {k: t(v, torch.float32 if k in ("label", "rating", "reward") else torch.long)
                   for k, v in getattr(data, kind).items()}
            for kind in ("pairs", "ratings", "choices")
        }
        self.num_users = data.num_users
        self.num_records = len(data)


def record_loglik(model: TorchUserModel, tensors: _Tensors, kind: str, rec: dict,
                  config: EMConfig) -> torch.Tensor:
    """``(n, K)`` weighted log-likelihood of each record under each type."""
    P, I = tensors.prompt, tensors.image
    if kind == "pairs":
        p = P[rec["prompt"]]
        delta = model.scores(p, I[rec["image_a"]]) - model.scores(p, I[rec["image_b"]])
        y = rec["label"][:, None]
        ll = y * F.logsigmoid(delta) + (1 - y) * F.logsigmoid(-delta)
        return config.pair_weight * ll
    if kind == "ratings":
        s = model.scores(P[rec["prompt"]], I[rec["image"]])
        ll = -0.5 * ((rec["rating"][:, None] - s) / config.rating_noise) ** 2
        return config.rating_weight * (ll - math.log(config.rating_noise * math.sqrt(2 * math.pi)))
    p = P[rec["request"]][:, None, None, :]  # (n, 1, 1, d): the session's request, for every column
    util = model.aggregate(model.scores(p, I[rec["image"]]), dim=2)  # (n, L, K)
    rewarded = "reward" in rec and config.reward_weight > 0
    choice, reward = slate_log_likelihoods(model.log_tau, util, rec["chosen"], rec["reward"] if rewarded else None)
    ll = config.choice_weight * choice
    return ll if reward is None else ll + config.reward_weight * reward


def slate_log_likelihoods(log_tau: torch.Tensor, util: torch.Tensor, chosen: torch.Tensor,
                          reward: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each type's log-likelihood of a slate's choice and, if given, of its experienced reward.

    Args:
        log_tau: ``log tau`` of the choice softmax.
        util: ``(..., L, K)`` each type's utility of the shown columns.
        chosen: ``(...)`` the chosen columns.
        reward: ``(...)`` the rewards, or ``None``.

    Returns:
        ``(choice, reward)``, each ``(..., K)`` (``reward`` ``None`` without
        rewards): ``log softmax(tau u)[chosen]``, and the reward's Gumbel log
        density with location ``IV - gamma / tau`` and scale ``1 / tau``
        (``IV`` the columns' inclusive value; :mod:`pasta_env.rewards`).
    """
    z = log_tau.exp() * util
    index = chosen.long()[..., None, None].expand(*chosen.shape, 1, util.shape[-1])
    choice = torch.log_softmax(z, dim=-2).gather(-2, index)[..., 0, :]
    if reward is None:
        return choice, None
    g = log_tau.exp() * reward[..., None] - torch.logsumexp(z, dim=-2) + float(np.euler_gamma)
    return choice, log_tau - g - torch.exp(-g.clamp(min=-50.0))


def user_loglik(model, tensors, records_by_kind, local_user, num_users, config) -> torch.Tensor:
    """``(num_users, K)`` summed record log-likelihoods of each user of a batch."""
    K = model.log_prior.shape[0]
    total = torch.zeros(num_users, K, device=tensors.image.device)
    for kind, rec in records_by_kind.items():
        if len(rec["user"]):
            ll = record_loglik(model, tensors, kind, rec, config)
            total = total.index_add(0, local_user[rec["user"]], ll)
    return total


class EMTrainer:
    """Fits a :class:`TorchUserModel` to preference data by mini-batch EM.

    Args:
        data: Training records.
        config: Model and training settings.
        checkpoint: Path of the resumable training state (``None``: no checkpointing).
    """

    def __init__(self, data: PreferenceData, config: EMConfig = EMConfig(),
                 checkpoint: str | os.PathLike | None = None):
        if len(data) == 0:
            raise ValueError("the training data holds no record")
        check_torch_device(config.device)
        self.data, self.config = data, config
        self.tensors = _Tensors(data, config.device)
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.history: list[dict] = []
        #: What a resume state must match: the data, the settings and the code.
        self.identity = {"data": data_fingerprint(data), "config": asdict(config), "code_version": code_version()}

    def _new_model(self, seed: int) -> tuple[TorchUserModel, torch.optim.Optimizer]:
        c = self.config
        with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's torch RNG
            torch.manual_seed(seed)
            model = TorchUserModel(self.data.dim, c.num_types, c.hidden, c.aggregation)
            with torch.no_grad():  # each type starts as a random taste direction of norm init_scale
                d = self.data.dim
                w = torch.randn(c.num_types, d)
                model.heads.weight[:, :d] = c.init_scale * w / w.norm(dim=1, keepdim=True)
        model = model.to(c.device)
        return model, torch.optim.Adam(model.parameters(), lr=c.lr)

    def _batches(self, rng: np.random.Generator):
        U, B = self.tensors.num_users, self.config.users_per_batch
        perm = rng.permutation(U)
        batch_of = np.empty(U, np.int64)
        batch_of[perm] = np.arange(U) // B
        local = np.empty(U, np.int64)
        local[perm] = np.arange(U) % B
        nb = -(-U // B)
        split = {}
        for kind, rec in self.tensors.records.items():
            b = batch_of[rec["user"].cpu().numpy()]
            by_batch = np.argsort(b, kind="stable")
            bounds = np.searchsorted(b[by_batch], np.arange(nb + 1))
            split[kind] = (torch.as_tensor(by_batch, device=self.config.device), bounds)
        local_t = torch.as_tensor(local, device=self.config.device)
        for i in range(nb):
            recs = {}
            for kind, (order, bounds) in split.items():
                idx = order[bounds[i]:bounds[i + 1]]
                recs[kind] = {k: v[idx] for k, v in self.tensors.records[kind].items()}
            yield recs, local_t, min(B, U - i * B)

    def _epoch(self, model, opt, rng) -> None:
        c = self.config
        for recs, local, n_users in self._batches(rng):
            ll = user_loglik(model, self.tensors, recs, local, n_users, c)
            with torch.no_grad():  # E-step
                post = torch.softmax(model.log_prior + ll, dim=1)
            n_rec = sum(len(r["user"]) for r in recs.values())
            loss = -(post * ll).sum() / max(n_rec, 1)  # M-step
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                prior = (1 - c.prior_step) * model.log_prior.exp() + c.prior_step * post.mean(0)
                model.log_prior.copy_(torch.log(prior.clamp_min(1e-8) / prior.sum()))

    @torch.no_grad()
    def _revive(self, model: TorchUserModel, rng: np.random.Generator) -> int:
        """Re-seed near-empty types by splitting the heaviest one; return how many."""
        K = model.log_prior.shape[0]
        prior = model.log_prior.exp()
        revived = 0
        for k in torch.nonzero(prior < self.config.revive_below / K).flatten().tolist():
            j = int(prior.argmax())
            noise = torch.as_tensor(rng.standard_normal(model.heads.weight.shape[1]), dtype=torch.float32,
                                    device=prior.device)
            d = self.data.dim
            noise[d:] = 0
            scale = 0.5 * self.config.init_scale / math.sqrt(d)
            model.heads.weight[k] = model.heads.weight[j] + scale * noise
            model.heads.weight[j] -= scale * noise
            model.heads.bias[k] = model.heads.bias[j]
            prior[k] = prior[j] = prior[j] / 2
            revived += 1
        model.log_prior.copy_(torch.log(prior / prior.sum()))
        return revived

    @torch.no_grad()
    def posterior(self, model: TorchUserModel) -> tuple[np.ndarray, float]:
        """Every user's posterior ``(U, K)`` and the mean log-likelihood per record."""
        U = self.tensors.num_users
        local = torch.arange(U, device=self.config.device)
        ll = user_loglik(model, self.tensors, self.tensors.records, local, U, self.config)
        joint = model.log_prior + ll
        total = torch.logsumexp(joint, dim=1).sum().item()
        return torch.softmax(joint, dim=1).cpu().numpy(), total / self.tensors.num_records

    @torch.no_grad()
    def refit_prior(self, model: TorchUserModel, iterations: int = 5) -> None:
        """Set the mixing weights to their full-data EM update, the mean posterior over all users.

        During training the weights follow a moving average of mini-batch
        posteriors, which leaves them off by the last batches' noise; a few
        full E-step/M-step rounds on the weights alone fix that.
        """
        for _ in range(iterations):
            post, _ = self.posterior(model)
            prior = torch.as_tensor(post.mean(axis=0), dtype=torch.float32, device=model.log_prior.device)
            model.log_prior.copy_(torch.log(prior.clamp_min(1e-8) / prior.sum()))

    def _save_state(self, model, opt, epoch, rng) -> None:
        if self.checkpoint is None:
            return
        from simulators.atomic import atomic_path

        state = {"format": STATE_FORMAT, "identity": self.identity, "model": model.state_dict(),
                 "opt": opt.state_dict(), "epoch": epoch, "history": self.history,
                 "rng": rng.bit_generator.state}
        with atomic_path(self.checkpoint, suffix=".tmp") as tmp:
            torch.save(state, tmp)

    def _load_state(self):
        """The resume state, loaded without unpickling code and checked against this run."""
        path = self.checkpoint
        if path is None or not path.exists():
            return None
        fix = "delete it or rerun with --no-resume to start over"
        if path.is_dir():
            raise FileFormatError(f"resume state {str(path)!r} is a folder; {fix}")
        try:
            state = torch.load(path, map_location=self.config.device, weights_only=True)
        except Exception as exc:  # truncated, foreign, or a pickle with code: never executed
            raise FileFormatError(f"{path}: not a training resume state ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:200]}); {fix}") from exc
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise FileFormatError(f"{path}: not a training resume state of this version; {fix}")
        theirs = state.get("identity", {})
        for key, what in (("data", "other training data"), ("config", "other settings"),
                          ("code_version", "another pasta-t2i version")):
            if theirs.get(key) != self.identity[key]:
                raise FileFormatError(f"{path} belongs to a run with {what}; rerun with the same arguments "
                                      f"to resume it, or with --no-resume to start over")
        return state

    def fit(self, progress: bool = True) -> TorchUserModel:
        """Run EM; return the trained model. Resumes from the checkpoint if one exists."""
        c = self.config
        rng = np.random.default_rng(c.seed)
        state = self._load_state()
        if state is not None:
            model, opt = self._new_model(c.seed)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            rng.bit_generator.state = state["rng"]
            self.history, start = state["history"], state["epoch"]
        else:
            model, opt, start = self._initialise(rng, progress)
        bar = _bar(c.epochs, start, progress)
        for epoch in range(start, c.epochs):
            t0 = time.perf_counter()
            self._epoch(model, opt, rng)
            revived = self._revive(model, rng) if epoch + 1 < c.epochs else 0
            _, ll = self.posterior(model)
            self.history.append({"epoch": epoch + 1, "log_likelihood_per_record": ll, "revived": revived,
                                 "seconds": round(time.perf_counter() - t0, 3),
                                 "prior": model.log_prior.exp().cpu().numpy().round(4).tolist()})
            self._save_state(model, opt, epoch + 1, rng)
            bar.set_postfix(loglik=f"{ll:.4f}")
            bar.update(1)
        bar.close()
        return model

    def _initialise(self, rng, progress):
        c = self.config
        best = None
        epochs = min(c.init_epochs, c.epochs) if c.num_inits > 1 else 0
        for i in range(c.num_inits):
            model, opt = self._new_model(c.seed + 1000 * i)
            for _ in range(epochs):
                self._epoch(model, opt, rng)
            _, ll = self.posterior(model)
            self.history.append({"init": i, "epochs": epochs, "log_likelihood_per_record": ll})
            if best is None or ll > best[0]:
                best = (ll, model, opt)
        return best[1], best[2], epochs


def _bar(total, initial, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="epoch", desc="EM", disable=not enabled, leave=False)


def name_types(posterior: np.ndarray, true_types: np.ndarray | None, names: tuple[str, ...]) -> tuple:
    """Name each learned type after the true type most of its users have.

    Falls back to ``type-k`` where the data has no true types (or a learned
    type has no user).
    """
    K = posterior.shape[1]
    out = [f"type-{k}" for k in range(K)]
    if true_types is None or not names:
        return tuple(out)
    mapped = posterior.argmax(axis=1)
    used: dict[str, int] = {}
    for k in range(K):
        members = true_types[(mapped == k) & (true_types >= 0)]
        if len(members):
            name = names[int(np.bincount(members).argmax())]
            used[name] = used.get(name, 0) + 1
            out[k] = name if used[name] == 1 else f"{name}-{used[name]}"
    return tuple(out)


def train_user_model(data: PreferenceData, config: EMConfig = EMConfig(), progress: bool = True,
                     checkpoint: str | os.PathLike | None = None,
                     true_type_names: tuple[str, ...] = (),
                     out: str | os.PathLike | None = None) -> tuple[TrunkHeadsUserModel, list[dict]]:
    """Train by EM and return the numpy model and the training history.

    Args:
        data: Training records.
        config: Model and training settings.
        progress: Show a progress bar.
        checkpoint: Resumable training state, written after every epoch and
            resumed from when it matches this run (data, settings, code).
        true_type_names: Names of the data's true types, used to name learned types.
        out: Where to save the model. The resume state is removed only
            after the model is safely written there, so a failure at the end
            loses nothing; without ``out`` the state is kept.
    """
    trainer = EMTrainer(data, config, checkpoint)
    t0 = time.perf_counter()
    model = trainer.fit(progress)
    trainer.refit_prior(model)
    posterior, ll = trainer.posterior(model)
    names = name_types(posterior, data.true_types, true_type_names or data.type_names)
    info = {"config": asdict(config), "train_records": data.counts(), "train_users": data.num_users,
            "train_log_likelihood_per_record": ll, "rating_noise": config.rating_noise,
            "train_seconds": round(time.perf_counter() - t0, 2), "run": run_identity(data, config)}
    result = model.to_numpy(names, info)
    if out is not None:
        result.save(out)
        if trainer.checkpoint is not None and trainer.checkpoint.is_file():
            trainer.checkpoint.unlink()
    return result, trainer.history


def run_identity(data: PreferenceData, config: EMConfig) -> dict:
    """What a training run is: its data (fingerprinted) and settings; the checkpoint's header records it."""
    return {"command": "train-user-model", "data": data_fingerprint(data), "config": asdict(config)}


def data_fingerprint(data: PreferenceData) -> str:
    """A short hash of every record and embedding of ``data`` (what a resume must match)."""
    arrays = [data.prompt_emb, data.image_emb]
    for kind in ("pairs", "ratings", "choices"):
        arrays += [v for _, v in sorted(getattr(data, kind).items())]
    return fingerprint(arrays)
