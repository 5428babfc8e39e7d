"""Evaluate any user model on held-out users' preference records (numpy).

Protocol: each held-out user's records are split at random into a
*context* half, from which the user's posterior over types is inferred, and
a *query* half, which the posterior-weighted model predicts. Metrics:

* ``pairwise_accuracy``: predicted preference agrees with the label (ties left out);
* ``rating_spearman``: rank correlation of predicted and given ratings;
* ``choice_accuracy``: the most likely column is the chosen one;
* ``loglik_per_record``: mean log predictive probability (density for ratings) of a query record;
* ``adjusted_rand_index``: MAP types from all records against the true types, where known.
"""

from __future__ import annotations

import numpy as np

from simulators.preferences.data import KINDS, PreferenceData
from simulators.users.user_model import UserModel

CHUNK = 4096


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def _scores(model: UserModel, prompts, images):
    return model.scores(prompts, images[..., None, :])[..., 0, :]


def record_loglik(model: UserModel, data: PreferenceData, kind: str, rating_noise: float = 1.0):
    """``(n, K)`` log-likelihood of each record of ``kind`` under each type, and extra predictions.

    Returns:
        ``(loglik, extra)``: ``extra`` holds ``(n, K)`` arrays used for
        predictions: ``p_a`` for pairs (P(a preferred)), ``score`` for ratings,
        ``probs`` ``(n, L, K)`` for choices.
    """
    rec = getattr(data, kind)
    n = len(rec["user"])
    P, I = data.prompt_emb, data.image_emb
    out, extra = [], []
    for a in range(0, n, CHUNK):
        sl = slice(a, a + CHUNK)
        if kind == "pairs":
            p = P[rec["prompt"][sl]]
            delta = _scores(model, p, I[rec["image_a"][sl]]) - _scores(model, p, I[rec["image_b"][sl]])
            y = rec["label"][sl, None]
            out.append(y * _log_sigmoid(delta) + (1 - y) * _log_sigmoid(-delta))
            extra.append(np.exp(_log_sigmoid(delta)))
        elif kind == "ratings":
            s = _scores(model, P[rec["prompt"][sl]], I[rec["image"][sl]])
            z = (rec["rating"][sl, None] - s) / rating_noise
            out.append(-0.5 * z**2 - np.log(rating_noise * np.sqrt(2 * np.pi)))
            extra.append(s)
        else:
            images = I[rec["image"][sl]]  # (n, L, M, d)
            requests = np.broadcast_to(P[rec["request"][sl]][:, None, :], images.shape[:2] + images.shape[3:])
            util = model.utilities(requests, images)  # (n, L, K)
            z = model.temperature * util
            logp = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
            chosen = rec["chosen"][sl]
            out.append(logp[np.arange(len(chosen)), chosen])
            extra.append(np.exp(logp))
    K = model.num_types
    if not out:
        shape = (0, data.choices["prompt"].shape[1] if kind == "choices" else 0, K)
        return np.zeros((0, K)), np.zeros(shape[:1] + shape[2:] if kind != "choices" else shape)
    return np.concatenate(out), np.concatenate(extra)


def user_loglik(model: UserModel, data: PreferenceData, rating_noise: float = 1.0) -> np.ndarray:
    """``(U, K)``: each user's summed record log-likelihood under each type."""
    total = np.zeros((data.num_users, model.num_types))
    for kind in KINDS:
        ll, _ = record_loglik(model, data, kind, rating_noise)
        np.add.at(total, getattr(data, kind)["user"], ll)
    return total


def posterior(model: UserModel, data: PreferenceData, rating_noise: float = 1.0) -> np.ndarray:
    """``(U, K)`` posterior over types of every user given their records."""
    joint = np.log(np.maximum(model.prior, 1e-300)) + user_loglik(model, data, rating_noise)
    return np.exp(joint - np.logaddexp.reduce(joint, axis=1, keepdims=True))


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks starting at 1, ties given their average rank."""
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (nan for fewer than 2 values)."""
    if len(a) < 2:
        return float("nan")
    ra, rb = rankdata(a), rankdata(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings of the same items."""
    a, b = np.asarray(a), np.asarray(b)
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)

    def pairs(x):
        return (x * (x - 1) / 2).sum()

    n = len(a)
    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / (n * (n - 1) / 2) if n > 1 else 0.0
    top = (rows + cols) / 2 - expected
    return float((index - expected) / top) if top else 1.0


def evaluate_user_model(model: UserModel, data: PreferenceData, context_fraction: float = 0.5,
                        rating_noise: float | None = None, seed: int = 0) -> dict:
    """Metrics of ``model`` on the users of ``data`` (see the module docstring).

    Args:
        model: Any :class:`UserModel` of the data's embedding dimension.
        data: Held-out users' records.
        context_fraction: Share of each user's records used to infer their type.
        rating_noise: ``sigma`` of ratings; default: the model's training value, else 1.
        seed: Seed of the context/query split.
    """
    if model.dim != data.dim:
        raise ValueError(f"the model takes {model.dim}-d embeddings but the data has {data.dim}-d ones")
    if rating_noise is None:
        rating_noise = float(getattr(model, "info", {}).get("rating_noise", 1.0))
    context, query = data.split_records(context_fraction, seed)
    post = posterior(model, context, rating_noise)
    out: dict = {"users": data.num_users, "query_records": query.counts()}
    total_ll, total_n = 0.0, 0
    for kind in KINDS:
        ll, extra = record_loglik(model, query, kind, rating_noise)
        rec = getattr(query, kind)
        if not len(ll):
            continue
        w = post[rec["user"]]
        total_ll += float(np.logaddexp.reduce(np.log(np.maximum(w, 1e-300)) + ll, axis=1).sum())
        total_n += len(ll)
        if kind == "pairs":
            p_a = (w * extra).sum(1)
            decided = rec["label"] != 0.5
            out["pairwise_accuracy"] = float(((p_a > 0.5) == (rec["label"] > 0.5))[decided].mean())
        elif kind == "ratings":
            out["rating_spearman"] = spearman((w * extra).sum(1), rec["rating"])
        else:
            probs = np.einsum("nlk,nk->nl", extra, w)
            out["choice_accuracy"] = float((probs.argmax(1) == rec["chosen"]).mean())
    out["loglik_per_record"] = total_ll / max(total_n, 1)
    if data.true_types is not None and (data.true_types >= 0).any():
        known = data.true_types >= 0
        mapped = posterior(model, data, rating_noise).argmax(1)
        out["adjusted_rand_index"] = adjusted_rand_index(mapped[known], data.true_types[known])
    return out
