"""How the candidates of a world's first turn treat real requests: rewording, what is kept, stacked styles.

Usage::

    pasta bench-candidates --prompts PartiPrompts.tsv [--limit 500] [--json results/candidates.json]

For each request (``--limit`` of them, drawn with ``--seed``), the world
proposes its first turn's candidates; reported, per category:

* **rephrase**: the share whose wording differs from the request beyond a
  framing put in front of it ("a view of ...") while their embedding (the
  world's encoder on both texts) stays within cosine ``--close`` of the
  request's;
* **change subject**: among requests that state a part beside their
  subject (a setting, a style, a lighting...), the share of candidates that
  keep one of those parts word for word;
* **creative leap**: the share that keep the request's subject or one of
  its stated parts word for word;
* **change style**: among requests that state a style, the share of
  candidates that name two styles or more (:func:`style_count`);
* **add detail**: among requests, the share of candidates that add a part
  of a kind the request already states (a second setting, lighting...);
* **distinct lists**: under one random draw for every request (as
  episodes of one seed), the share of request pairs (each with its next 19)
  whose change-subject lists differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.common import machine, write_json
from simulators.text.requests import framing_of, parse_request

#: Parts of a request a change of subject should keep (all but the subject and framing).
STATED = ("setting", "style", "lighting", "mood", "palette", "composition", "detail", "extra")


def strip_framing(text: str) -> str:
    """``text`` without a framing phrase in front ("a view of ...")."""
    framing = framing_of(text)
    return text[len(framing) + 1:] if framing else text


def style_count(text: str) -> int:
    """How many parts of ``text`` name a style (:func:`~simulators.text.requests.parse_request`'s style parts)."""
    style = parse_request(text).parts.get("style", "")
    return len([p for p in style.split(",") if p.strip()])


def first_turn(world, n: int, seed: int, same_draw: bool = False) -> list[tuple[str, dict[str, list[str]]]]:
    """``[(request, {category: [candidate texts]})]`` of the world's first turn for its first ``n`` requests.

    With ``same_draw`` every request gets the same random draw (as episodes of one seed do).
    """
    prompts = world.initial_prompts[np.arange(n)]
    u = np.random.default_rng(seed).random((1 if same_draw else n, world.candidates.uniforms_per_turn), np.float32)
    u = np.broadcast_to(u, (n, u.shape[1])).copy()
    cands = world.candidates.generate(prompts, u)
    texts = cands.texts()
    k = len(world.candidates.category_of) // len(world.categories)
    out = []
    for b, request in enumerate(prompts.texts()):
        out.append((str(request), {cat: [str(t) for t in texts[b, i * k:(i + 1) * k]]
                                   for i, cat in enumerate(world.categories)}))
    return out


def measure(world, n: int, seed: int = 0, close: float = 0.8) -> dict[str, Any]:
    """The figures above for the world's first ``n`` requests."""
    turns = first_turn(world, n, seed)
    enc = world.encoder

    def share(hits: list[bool]) -> dict[str, Any]:
        return {"share": round(float(np.mean(hits)), 3) if hits else None, "n": len(hits)}

    reworded, subject_kept, leap_kept, two_styles, added_twice = [], [], [], [], []
    reph_cos: list[float] = []
    for request, cats in turns:
        parts = parse_request(request).parts
        stated = [parts[k] for k in STATED if k in parts]
        reph = cats.get("rephrase", [])
        if reph:
            e = enc.encode([request, *reph])
            cos = e[1:] @ e[0]
            reph_cos += cos.tolist()
            for text, c in zip(reph, cos):
                differs = strip_framing(text).strip().lower() != request.strip().lower()
                reworded.append(bool(differs and c >= close))
        if stated:
            subject_kept += [any(s.lower() in t.lower() for s in stated) for t in cats.get("change subject", [])]
        leap_kept += [any(s.lower() in t.lower() for s in [parts["base"], *stated])
                      for t in cats.get("creative leap", [])]
        if "style" in parts:
            two_styles += [style_count(t) >= 2 for t in cats.get("change style", [])]
        for t in cats.get("add detail", []):
            new = parse_request(t).parts
            added_twice.append(any(k in parts and new.get(k, "").lower() != parts[k].lower() and
                                   parts[k].lower() in new.get(k, "").lower() for k in STATED))
    lists = [tuple(c.get("change subject", [])) for _, c in first_turn(world, n, seed, same_draw=True)]
    pairs = [(i, j) for i in range(len(lists)) for j in range(i + 1, min(len(lists), i + 20))]
    return {"requests": len(turns), "close": close,
            "rephrase_reworded_and_close": share(reworded),
            "rephrase_cosine": {"median": round(float(np.median(reph_cos)), 3) if reph_cos else None,
                                "p10": round(float(np.percentile(reph_cos, 10)), 3) if reph_cos else None},
            "change_subject_keeps_a_stated_part": share(subject_kept),
            "creative_leap_keeps_subject_or_a_part": share(leap_kept),
            "change_style_leaves_two_styles": share(two_styles),
            "add_detail_adds_a_fixed_kind": share(added_twice),
            "distinct_change_subject_lists": share([lists[i] != lists[j] for i, j in pairs])}


def run(prompts: str, limit: int = 500, seed: int = 0, close: float = 0.8, examples: int = 3,
        json_path: str | None = "results/candidates.json", world: str = "synthetic",
        world_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measure on ``limit`` requests of the file ``prompts`` (drawn with ``seed``); print and write the figures."""
    from pasta_env.worlds import build_world, read_prompts

    texts = read_prompts(prompts)
    rng = np.random.default_rng(seed)
    picked = [texts[i] for i in sorted(rng.choice(len(texts), min(limit, len(texts)), replace=False))]
    w = build_world(world, picked, 25, dict(world_options or {}))
    f = measure(w, len(picked), seed, close)
    result = {"machine": machine(), "prompts": str(prompts), "figures": f,
              "examples": [{"request": r, "candidates": c} for r, c in first_turn(w, examples, seed)]}
    print(f"{f['requests']} requests from {prompts}")
    for key, value in f.items():
        if isinstance(value, dict) and "share" in value:
            print(f"  {key.replace('_', ' ')}: {value['share']} (n={value['n']})")
    print(f"  rephrase cosine to the request: median {f['rephrase_cosine']['median']}, "
          f"10th percentile {f['rephrase_cosine']['p10']} (threshold {close})")
    if json_path:
        write_json(json_path, result)
        print(f"wrote {json_path}")
    return result
