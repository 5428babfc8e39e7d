"""The core's compiled kernels (numba): the user's choice with the turn's record, and the slate fill.

Like the world parts' kernels (:mod:`simulators.kernels`) they compute each
row from that row alone in a fixed order, release the interpreter lock and
are compiled once and cached on disk (:func:`simulators.jit.compiled`);
this module imports numba and is imported on the first step.
"""

from __future__ import annotations

import numpy as np

from pasta_env.rewards import EULER_GAMMA
from simulators.jit import compiled


@compiled()
def record_turn(t, probs, util, u_choice, u_reward, forced, slate_emb, images, reward_kind, temperature, choice,
                reward, hist_prompts, hist_images, hist_choices, hist_mask, hist_slate_prompts, hist_slate_images,
                hist_rewards, hist_rated, current):  # pragma: no cover - compiled
    """Draw each user's column and reward and write turn ``t`` into the history.

    Args:
        t: The turn.
        probs, util: ``(B, L)`` choice probabilities and column utilities.
        u_choice: ``(B,)`` the choice's uniforms: the chosen column is the
            number of cumulative probabilities below it (at most ``L - 1``).
        u_reward: ``(B,)`` the reward's uniforms (the ``"experienced"`` reward's Gumbel draw).
        forced: ``(B,)`` a column chosen from outside (a person), or -1 to draw it.
        slate_emb: ``(B, L, d)`` shown prompts.
        images: ``(B, L, M, d)`` their images.
        reward_kind: Index in :data:`pasta_env.rewards.REWARDS`: 0 experienced
            (``IV(u) + (g - gamma) / tau``, ``g`` standard Gumbel), 1 the
            chosen column's utility, 2 its expectation under ``probs``.
        temperature: ``tau`` of the user's choice.
        choice, reward: ``(B,)`` outputs (rewards are float32 values).
        hist_*: The history arrays; row ``t`` is written (a forced column's
            turn is recorded unrated: reward 0, rated 0).
        current: ``(B, d)`` the chosen prompt's embedding (the new current prompt).
    """
    B, L, M, d = images.shape
    scale = np.float32(1.0 / M)
    for b in range(B):
        acc = np.float32(0.0)
        c = 0
        for j in range(L):
            acc += probs[b, j]
            if acc < u_choice[b]:
                c += 1
        c = min(c, L - 1)
        if forced[b] >= 0:
            c = forced[b]
        choice[b] = c
        if reward_kind == 0:
            top = -np.inf
            for j in range(L):
                top = max(top, temperature * np.float64(util[b, j]))
            total = 0.0
            for j in range(L):
                total += np.exp(temperature * np.float64(util[b, j]) - top)
            v = np.float64(u_reward[b]) + 2.0 ** -25
            shock = -np.log(-np.log(v))
            r = np.float32((top + np.log(total)) / temperature + (shock - EULER_GAMMA) / temperature)
        elif reward_kind == 1:
            r = util[b, c]
        else:
            r = np.float32(0.0)
            for j in range(L):
                r += probs[b, j] * util[b, j]
        reward[b] = r
        for j in range(L):
            means = hist_slate_images[b, t, j]
            img = images[b, j]
            for i in range(d):
                means[i] = img[0, i]
            for m in range(1, M):
                for i in range(d):
                    means[i] += img[m, i]
            for i in range(d):
                means[i] *= scale
            hist_slate_prompts[b, t, j, :] = slate_emb[b, j]
        hist_prompts[b, t, :] = slate_emb[b, c]
        hist_images[b, t, :] = hist_slate_images[b, t, c]
        hist_choices[b, t] = c
        hist_mask[b, t] = 1
        rated = forced[b] < 0
        hist_rewards[b, t] = r if rated else np.float32(0.0)
        hist_rated[b, t] = 1 if rated else 0
        current[b, :] = slate_emb[b, c]


@compiled()
def distinct_slates(slates, num_candidates, out):  # pragma: no cover - compiled
    """Copy ``slates`` ``(N, L)`` into ``out`` with repeated indices filled (see spaces.distinct_slates).

    Returns:
        The number of slates that had a repeat.
    """
    N, L = slates.shape
    used = np.zeros(num_candidates, np.bool_)
    changed = 0
    for r in range(N):
        row = slates[r]
        repeat = False
        for j in range(1, L):
            for i in range(j):
                if row[i] == row[j]:
                    repeat = True
        out[r, :] = row
        if not repeat:
            continue
        changed += 1
        used[:] = False
        for j in range(L):
            used[row[j]] = True
        free = 0
        for j in range(1, L):
            earlier = False
            for i in range(j):
                if row[i] == row[j]:
                    earlier = True
            if earlier:
                while used[free]:
                    free += 1
                out[r, j] = free
                free += 1
    return changed
