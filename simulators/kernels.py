"""Compiled kernels of the synthetic world's parts and the EM user model (numba).

Each kernel is the one implementation of its computation: the synthetic
candidate generator, the synthetic image model and the trunk-and-heads user
model call them for a batch of any size, the single environment being a
batch of one. Every kernel loops over the batch rows and computes a row from
that row alone, in a fixed order, so a user's numbers do not depend on how
many users share the call (single env == vector env, bit for bit) and the
kernels release the interpreter lock (the vector env's worker threads run
them in parallel).

Compilation happens on first call and is cached on disk next to this file
(or in numba's user cache when that is read-only), so only the first run on
a machine pays for it. Importing this module imports numba; the parts import
it when they first compute, so ``import pasta_env`` stays light.
"""

from __future__ import annotations

import math

import numpy as np

from simulators.jit import compiled

_jit = compiled(fastmath=False)
#: Small helpers are inlined into the kernels that call them (numba's IR-level inlining).
_helper = compiled(fastmath=False, inline="always")


@_helper
def unit_row(x, out):  # pragma: no cover - compiled
    """Write the 1-D vector ``x`` scaled to unit length into ``out`` (may be ``x``; a zero vector stays zero).

    The squares are summed in float32 over eight interleaved partial sums: a
    fixed order whatever the batch, and vectorisable.
    """
    d = x.shape[0]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
    n8 = d - d % 8
    for i in range(0, n8, 8):
        s0 += x[i] * x[i]
        s1 += x[i + 1] * x[i + 1]
        s2 += x[i + 2] * x[i + 2]
        s3 += x[i + 3] * x[i + 3]
        s4 += x[i + 4] * x[i + 4]
        s5 += x[i + 5] * x[i + 5]
        s6 += x[i + 6] * x[i + 6]
        s7 += x[i + 7] * x[i + 7]
    for i in range(n8, d):
        s0 += x[i] * x[i]
    ss = ((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7))
    scale = np.float32(1.0 / math.sqrt(max(float(ss), 1e-16)))
    for i in range(d):
        out[i] = x[i] * scale


@_helper
def same(x, y):  # pragma: no cover - compiled
    """Whether two 1-D vectors are equal element by element (no allocation)."""
    for i in range(x.shape[0]):
        if x[i] != y[i]:
            return False
    return True


@_helper
def dot(x, y):  # pragma: no cover - compiled
    """``<x, y>`` of two 1-D float32 vectors, in float32 over four interleaved partial sums."""
    d = x.shape[0]
    s0 = s1 = s2 = s3 = np.float32(0.0)
    i = 0
    while i + 4 <= d:
        s0 += x[i] * y[i]
        s1 += x[i + 1] * y[i + 1]
        s2 += x[i + 2] * y[i + 2]
        s3 += x[i + 3] * y[i + 3]
        i += 4
    while i < d:
        s0 += x[i] * y[i]
        i += 1
    return (s0 + s1) + (s2 + s3)


@_helper
def compose(prompt, weighted, out):  # pragma: no cover - compiled
    """``out`` = the unnormalised embedding of one ``(S,)`` prompt: its phrases' weighted rows summed by slot."""
    out[:] = 0.0
    for s in range(prompt.shape[0]):
        if prompt[s] >= 0:  # an empty slot's row is zero
            row = weighted[s, prompt[s]]
            for i in range(out.shape[0]):
                out[i] += row[i]


@_jit
def expand_candidates(cur, rows, k, n_reph, opt_slot, opt_rank, opt_gate, opt_kind, replaceable,
                      order_bank, detail_bank, excl_bank, excl_slot, canonical, neighbours, related, related_bank,
                      weighted,
                      style_slot, base_slot, setting_slot, detail_a, detail_b,
                      cands, emb):  # pragma: no cover - compiled
    """The synthetic generator's turn for ``B`` users (see :class:`SyntheticCandidateGenerator`).

    Option kinds: 0 reword a filled slot that has a rewording of that rank, 1 the framing (allowed
    only when fewer than ``k`` options of kind 0 are), 2 add detail. Writes ``cands`` ``(B, C, S)``
    and their unit embeddings ``emb`` ``(B, C, d)``; a candidate's embedding is the current
    prompt's composed embedding with the edited slot's phrase swapped, normalised.
    """
    B, S = cur.shape
    d = emb.shape[2]
    n = opt_slot.shape[0]
    empty_row = weighted.shape[1] - 1
    allowed = np.empty(n, np.bool_)
    picks = np.empty(2 * k, np.intp)
    vals = np.empty((excl_bank.shape[1], k), np.int32)
    base = np.empty(d, np.float32)
    raw = np.empty(d, np.float32)
    for b in range(B):
        row = rows[b]
        c = cur[b]
        compose(c, weighted, base)
        # Which options apply to this prompt.
        n_add = 0
        n_reword = 0
        for o in range(n):
            kind = opt_kind[o]
            at = c[opt_slot[o]]
            if kind == 1:
                ok = False  # decided below
            elif kind == 0:
                ok = at >= 0 and neighbours[at, opt_rank[o]] >= 0
                if ok:
                    n_reword += 1
            else:
                ok = at < 0 and c[opt_gate[o]] >= 0
                if ok:
                    n_add += 1
            allowed[o] = ok
        if n_reword < k:  # too few rewordings: a framing may change or appear
            for o in range(n):
                if opt_kind[o] == 1:
                    allowed[o] = True
        if n_add < k:  # every detail slot is used: replace a detail phrase instead
            for o in range(n_reph, n):
                v = detail_bank[row, o - n_reph]
                allowed[o] = replaceable[o] and v != c[detail_a] and v != c[detail_b]
        # The first k options of each block in the row's ranking: allowed ones, then (if too few) the others.
        for block in range(2):
            lo, hi = (0, n_reph) if block == 0 else (n_reph, n)
            j = 0
            for pass_ in range(2):
                for r in range(lo, hi):
                    if j == k:
                        break
                    o = order_bank[row, r]
                    if allowed[o] == (pass_ == 0):
                        picks[block * k + j] = o
                        j += 1
        # Style and leap draws: the first k values of each ranking, skipping the excluded one.
        for e in range(excl_bank.shape[1]):
            ex = c[excl_slot[e]]
            if ex >= 0:
                ex = canonical[ex]  # a paraphrase of the current phrase is the current phrase
            skip = False
            for j in range(k):
                if excl_bank[row, e, j] == ex:
                    skip = True
                vals[e, j] = excl_bank[row, e, j + 1] if skip else excl_bank[row, e, j]
        # Single-slot edits: rephrase, add detail, change style, change subject.
        for ci in range(4 * k):
            if ci < 2 * k:
                o = picks[ci]
                s = opt_slot[o]
                old = c[s]
                if ci < k:
                    new = neighbours[old if old >= 0 else empty_row, opt_rank[o]]
                else:
                    new = detail_bank[row, o - n_reph]
            elif ci < 3 * k:
                s = style_slot
                old = c[s]
                new = vals[0, ci - 2 * k]
            else:
                s = base_slot
                old = c[s]
                new = related[old, related_bank[row, ci - 3 * k]]
            out = cands[b, ci]
            for i in range(S):
                out[i] = c[i]
            out[s] = new
            w_new = weighted[s, new]
            w_old = weighted[s, old if old >= 0 else empty_row]
            for i in range(d):
                raw[i] = (w_new[i] - w_old[i]) + base[i]
            unit_row(raw, emb[b, ci])
        # Creative leap: the subject in a new setting and a new style; nothing else.
        for j in range(k):
            ci = 4 * k + j
            out = cands[b, ci]
            for i in range(S):
                out[i] = -1
            out[base_slot] = c[base_slot]
            out[style_slot] = vals[1, j]
            out[setting_slot] = vals[2, j]
            compose(out, weighted, raw)
            unit_row(raw, emb[b, ci])


@_jit
def render_images(prompts, u, keep_bank, noise_bank, weighted, drop_per_phrase, free_phrases, min_keep,
                  counted_slots, out):  # pragma: no cover - compiled
    """The synthetic image model for ``(B, L, S)`` prompts and ``(B, L, M)`` uniforms into ``out`` ``(B, L, M, d)``.

    Each image keeps every phrase of its prompt with the prompt's keep
    probability (the base always), sums the kept phrases' weighted
    embeddings, normalises, adds a row of the noise bank and normalises again.
    Images of a prompt that keep the same phrases share the normalised sum
    (computed once: the same numbers, less work; short prompts keep all).
    """
    B, L, S = prompts.shape
    M = u.shape[2]
    d = out.shape[3]
    bank = keep_bank.shape[0]
    clean = np.empty((M, d), np.float32)
    masks = np.empty(M, np.int64)
    noisy = np.empty(d, np.float32)
    for b in range(B):
        for li in range(L):
            p = prompts[b, li]
            n = 0
            for s in range(counted_slots):
                if p[s] >= 0:
                    n += 1
            q = min(max(1.0 - drop_per_phrase * (n - free_phrases), min_keep), 1.0)
            for m in range(M):
                r = int(u[b, li, m] * bank)
                mask = 0
                for s in range(S):
                    if p[s] >= 0 and keep_bank[r, s] < q:
                        mask |= 1 << s
                masks[m] = mask
                c = clean[m]
                same = -1
                for e in range(m):
                    if masks[e] == mask:
                        same = e
                        break
                if same >= 0:
                    c[:] = clean[same]
                else:
                    c[:] = 0.0
                    for s in range(S):
                        if mask & (1 << s):
                            row = weighted[s, p[s]]
                            for i in range(d):
                                c[i] += row[i]
                    unit_row(c, c)
                noise = noise_bank[r]
                for i in range(d):
                    noisy[i] = c[i] + noise[i]
                unit_row(noisy, out[b, li, m])


@_jit
def trunk_heads_scores(requests, images, types, w_img, w_agree, trunk_b, a, c, h, head_b,
                       out):  # pragma: no cover - compiled
    """Scores ``(B, L, M)`` of the trunk-and-heads user model, one type per row (see TrunkHeadsUserModel).

    ``s = <I, a_k + p * c_k> + <relu(I W_I + (p * I) W_P + b), h_k> + bias_k``, with
    ``I W_I + (p * I) W_P = I (W_I + diag(p) W_P)``: the request's weights are
    formed once per request and shared by its images, which go through them
    four at a time.
    """
    B, L, M, d = images.shape
    hn = trunk_b.shape[0]
    w = np.empty((d, hn), np.float32)
    acc = np.empty((4, hn), np.float32)
    v = np.empty(d, np.float32)
    for bi in range(B):
        k = types[bi]
        hk = h[k]
        for li in range(L):
            p = requests[bi, li]
            if li == 0 or not same(p, requests[bi, li - 1]):
                for i in range(d):
                    pi = p[i]
                    wi, wa, wo = w_img[i], w_agree[i], w[i]
                    for j in range(hn):
                        wo[j] = wi[j] + pi * wa[j]
                    v[i] = a[k, i] + pi * c[k, i]
            m = 0
            while m < M:
                n = 4 if m + 4 <= M else 1
                a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
                for j in range(hn):
                    a0[j] = trunk_b[j]
                    a1[j] = trunk_b[j]
                    a2[j] = trunk_b[j]
                    a3[j] = trunk_b[j]
                if n == 4:
                    x0, x1, x2, x3 = images[bi, li, m], images[bi, li, m + 1], images[bi, li, m + 2], \
                        images[bi, li, m + 3]
                    for i in range(d):
                        wi = w[i]
                        y0, y1, y2, y3 = x0[i], x1[i], x2[i], x3[i]
                        for j in range(hn):
                            wj = wi[j]
                            a0[j] += y0 * wj
                            a1[j] += y1 * wj
                            a2[j] += y2 * wj
                            a3[j] += y3 * wj
                else:
                    x0 = images[bi, li, m]
                    for i in range(d):
                        wi = w[i]
                        y0 = x0[i]
                        for j in range(hn):
                            a0[j] += y0 * wi[j]
                for q in range(n):
                    aq = acc[q]
                    for j in range(hn):
                        aq[j] = max(aq[j], np.float32(0.0))
                    out[bi, li, m + q] = (dot(images[bi, li, m + q], v) + dot(aq, hk)) + head_b[k]
                m += n
