"""An offline candidate generator on free text: PASTA's five categories from the shipped phrase lists.

:class:`TemplateCandidateGenerator` expands any prompt text (a researcher's
own, or a language model's) without a model: it is the clip world's default
generator when no language model is given, and the source that fills the gap
when a language model returns too few, duplicate or malformed candidates.

The prompt is read as the synthetic world reads a request
(:func:`simulators.text.requests.parse_request`: subject, setting, style,
lighting, ...), so the categories follow the same rules:

============== ======================================================
category       what it does to the prompt's parts
============== ======================================================
rephrase       rewords one part (:func:`~simulators.text.requests.paraphrases`);
               a framing phrase in front only when too few rewordings exist
add detail     adds a setting, lighting, mood, palette, composition or
               detail phrase of a kind the prompt does not state
change style   replaces the prompt's style (or adds one): never two
change subject a related subject (nearest by embedding), the rest kept
creative leap  the subject in a new setting and a new style
============== ======================================================

Deterministic given the turn's uniform and the text; candidates of a turn
are distinct.
"""

from __future__ import annotations

import functools
import re

import numpy as np

from simulators.candidates.synthetic import CATEGORIES
from simulators.contract import PromptEncoder, Prompts, TextPrompts, seeds_from_uniforms, text_hash
from simulators.text import vocabulary as V
from simulators.text.encoders import normalize
from simulators.text.requests import paraphrases, parse_request

_SUBJECTS = tuple(p for group in V.SUBJECTS.values() for p in group)
#: Kinds "add detail" may add, with their phrases.
_ADDABLE: dict[str, tuple[str, ...]] = {"setting": V.SETTINGS, "lighting": V.LIGHTING, "mood": V.MOODS,
                                         "palette": V.PALETTES, "composition": V.COMPOSITIONS, "detail": V.DETAILS}
_ORDER = ("style", "lighting", "mood", "palette", "composition", "detail", "extra")


def clean_text(text: str) -> str:
    """One line, single spaces, no stray punctuation at the ends."""
    return " ".join(str(text).split()).strip(" ,;")


def render_parts(parts: dict[str, str]) -> str:
    """A prompt from its parts, in the synthetic world's order: framing, subject, setting, then the modifiers."""
    head = " ".join(p for p in (parts.get("framing", ""), parts.get("base", ""), parts.get("setting", "")) if p)
    return ", ".join([head, *(parts[k] for k in _ORDER if parts.get(k))])


def request_core(text: str) -> str:
    """The subject of a request, lower-case: what must survive in later prompts."""
    return parse_request(text).parts["base"].lower()


class TemplateCandidateGenerator:
    """``k`` free-text expansions in each of PASTA's five categories, embedded by ``encoder``.

    Args:
        encoder: Embeds the candidate texts in the world's space.
        per_category: Candidates per category ``k``.
    """

    categories = CATEGORIES
    uniforms_per_turn = 1

    def __init__(self, encoder: PromptEncoder, per_category: int = 5):
        if not 1 <= per_category <= 8:
            raise ValueError(f"candidates per category must be in 1..8, got {per_category}")
        self.encoder, self.per_category = encoder, per_category
        self.num_candidates = per_category * len(CATEGORIES)
        self.category_of = np.repeat(np.arange(len(CATEGORIES)), per_category).astype(np.int64)

    def identity(self) -> dict:
        return {"kind": "templates", "per_category": self.per_category}

    @functools.cached_property
    def _subjects(self) -> tuple[np.ndarray, np.ndarray]:
        """The vocabulary subjects' mean embedding and their centred unit embeddings (encoded once)."""
        emb = self.encoder.encode(list(_SUBJECTS))
        mean = emb.mean(axis=0)
        return mean, normalize(emb - mean)

    def _related(self, subject: str) -> list[str]:
        """The vocabulary subjects nearest ``subject`` (centred cosine of the encoder's embeddings), best first."""
        mean, subjects = self._subjects
        sim = subjects @ normalize(self.encoder.encode([subject])[0] - mean)
        return [_SUBJECTS[i] for i in np.argsort(-sim) if _SUBJECTS[i].lower() != subject.lower()]

    def expand_text(self, text: str, rng: np.random.Generator, taken: set[str] | None = None) -> list[list[str]]:
        """``k`` new texts per category for one prompt, distinct from each other and from ``taken``."""
        k = self.per_category
        parts = parse_request(clean_text(text)).parts
        seen = {clean_text(text).lower()} | (taken or set())
        rewordings = [render_parts(parts | {kind: alt}) for kind, part in parts.items() if kind != "framing"
                      for alt in paraphrases(part)]
        rng.shuffle(rewordings)
        related = self._related(parts["base"])[:12]
        open_kinds = [kind for kind in _ADDABLE if kind not in parts] or ["detail"]

        def reword() -> str:
            if rewordings:
                return rewordings.pop()
            return render_parts(parts | {"framing": _pick(rng, V.FRAMINGS, exclude=parts.get("framing", ""))})

        def detail() -> str:
            kind = open_kinds[int(rng.integers(len(open_kinds)))]
            return render_parts(parts | {kind: _pick(rng, _ADDABLE[kind], exclude_in=clean_text(text).lower())})

        makers = [
            reword,
            detail,
            lambda: render_parts(parts | {"style": _pick(rng, V.STYLES, exclude=parts.get("style", ""))}),
            lambda: render_parts(parts | {"base": _pick(rng, related)}),
            lambda: render_parts({"base": parts["base"], "setting": _pick(rng, V.SETTINGS, exclude=parts.get(
                "setting", "")), "style": _pick(rng, V.STYLES, exclude=parts.get("style", ""))}),
        ]
        out = []
        for make in makers:
            got: list[str] = []
            for _ in range(50 * k):
                if len(got) == k:
                    break
                t = clean_text(make())
                if t and t.lower() not in seen:
                    seen.add(t.lower())
                    got.append(t)
            while len(got) < k:  # tiny phrase lists only: number the rest
                t = f"{text}, variation {len(got) + 1}"
                seen.add(t.lower())
                got.append(t)
            out.append(got)
        return out

    def generate(self, current: Prompts, uniforms: np.ndarray) -> TextPrompts:
        """``(B, C)`` candidates of ``(B,)`` current prompts (the world contract's call)."""
        texts = current.texts().reshape(-1)
        rows = []
        for b, text in enumerate(texts):
            rng = np.random.default_rng(int(seeds_from_uniforms(uniforms[b, 0], salt=text_hash(str(text)))))
            rows.append([t for block in self.expand_text(str(text), rng) for t in block])
        return embed_rows(self.encoder, rows)

    def keeps_request(self, current: Prompts, request: Prompts) -> np.ndarray:
        """``(B,)`` whether the request's subject still appears in the current prompt."""
        cur, req = current.texts().reshape(-1), request.texts().reshape(-1)
        return np.array([bool(request_core(r)) and request_core(r) in str(c).lower() for c, r in zip(cur, req)])

    @staticmethod
    def ranking_scores(candidates: np.ndarray, request: np.ndarray, current: np.ndarray) -> np.ndarray:
        """Fidelity to the request, then to the current prompt (as the synthetic generator ranks)."""
        return np.einsum("ncd,nd->nc", candidates, request + 0.1 * current)


def embed_rows(encoder: PromptEncoder, rows: list[list[str]]) -> TextPrompts:
    """``(B, C)`` prompts from ``B`` rows of ``C`` candidate texts, embedded in one batch."""
    emb = encoder.encode([t for row in rows for t in row]).reshape(len(rows), len(rows[0]), -1)
    return TextPrompts(np.array(rows, dtype=object).reshape(emb.shape[:2]), emb)


def _pick(rng: np.random.Generator, options, exclude: str = "", exclude_in: str = "") -> str:
    pool = [o for o in options if o != exclude and (not exclude_in or not re.search(re.escape(o), exclude_in))]
    pool = pool or list(options)
    return str(pool[int(rng.integers(len(pool)))])
