"""The model-based agents' compiled kernel (numba): the exhaustive search for the best slate under a belief.

Imported on the first search (:data:`agents.model_based.kernels`), so
``import agents`` stays light; compiled once and cached on disk like the
env's kernels (:func:`simulators.jit.compiled`).
"""

from __future__ import annotations

import math

import numpy as np

from simulators.jit import compiled


@compiled()
def search_slates(e, g, belief, categories, one_per_category, temperature, inclusive, prune, floor,
                  out):  # pragma: no cover - compiled
    """For each user, the slate of ``L`` distinct candidates with the highest belief-weighted objective.

    With ``E_k(S) = sum_{j in S} e[k, j]`` and ``G_k(S) = sum_{j in S} g[k, j]``
    the objective is ``sum_k b_k (G_k / E_k + [inclusive] log(E_k) / tau)``:
    for ``e = exp(tau (u - max u))`` and ``g = e f`` that is the inclusive
    value (less a constant per type) plus the choice-weighted ``f``; for
    ``g = e (u + f)`` the choice-weighted ``u + f``. Every ``L``-subset is
    tried, in lexicographic order (the first best wins a tie).

    With ``prune`` (only sound for the inclusive value alone, ``g = 0``, and
    no category rule) candidates that ``L`` others dominate are left out
    first: ``c'`` dominates ``c`` when every type weighed gives it at least
    ``c``'s utility (``e``), more for one type or, all equal, a lower index.
    Such a ``c`` is never needed: in a slate holding it, one of its
    dominators is missing, and swapping it in raises no type's inclusive
    value less than nothing. That leaves about 14 of 25 candidates (a
    tenth of the slates) before any choice, fewer as the belief narrows.

    Args:
        e, g: ``(N, K, C)`` per-candidate numbers (float64).
        belief: ``(N, K)`` probability of each type; types at or below
            ``floor`` are skipped (their weight cannot move the objective).
        categories: ``(N, C)`` category of each candidate.
        one_per_category: Skip slates with two candidates of one category.
        temperature: ``tau``.
        inclusive: Add ``log(E_k) / tau`` (the inclusive value).
        prune: Leave out dominated candidates first (see above).
        floor: Belief below which a type is skipped.
        out: ``(N, L)`` the chosen slates, ascending candidate indices.
    """
    N, K, C = e.shape
    L = out.shape[1]
    active = np.empty(K, np.intp)
    kept = np.empty(C, np.intp)
    pos = np.empty(L, np.intp)
    best_pos = np.empty(L, np.intp)
    for n in range(N):
        na = 0
        for k in range(K):
            if belief[n, k] > floor:
                active[na] = k
                na += 1
        m = 0
        for c in range(C):
            dominated_by = 0
            if prune:
                for o in range(C):
                    if o == c:
                        continue
                    at_least = True
                    better = False
                    for a in range(na):
                        k = active[a]
                        if e[n, k, o] < e[n, k, c]:
                            at_least = False
                            break
                        if e[n, k, o] > e[n, k, c]:
                            better = True
                    if at_least and (better or o < c):
                        dominated_by += 1
            if dominated_by < L:
                kept[m] = c
                m += 1
        if m < L:  # cannot happen (each type's top L are kept); searched in full if it did
            for c in range(C):
                kept[c] = c
            m = C
        for j in range(L):
            pos[j] = j
            best_pos[j] = j
        best = -np.inf
        while True:
            clash = False
            if one_per_category:
                for j in range(1, L):
                    for i in range(j):
                        if categories[n, kept[pos[i]]] == categories[n, kept[pos[j]]]:
                            clash = True
            if not clash:
                objective = 0.0
                for a in range(na):
                    k = active[a]
                    total = 0.0
                    gain = 0.0
                    for j in range(L):
                        c = kept[pos[j]]
                        total += e[n, k, c]
                        gain += g[n, k, c]
                    if total > 0.0:
                        v = gain / total
                        if inclusive:
                            v += math.log(total) / temperature
                    else:
                        v = -np.inf
                    objective += belief[n, k] * v
                if objective > best:
                    best = objective
                    for j in range(L):
                        best_pos[j] = pos[j]
            j = L - 1  # the next subset in lexicographic order
            while j >= 0 and pos[j] == m - L + j:
                j -= 1
            if j < 0:
                break
            pos[j] += 1
            for i in range(j + 1, L):
                pos[i] = pos[i - 1] + 1
        for j in range(L):
            out[n, j] = kept[best_pos[j]]
