"""Candidates from a language model: a prompt asking for PASTA's five categories, JSON parsing, and repair.

:class:`LanguageModelCandidateGenerator` is the clip world's
:class:`~simulators.contract.CandidateGenerator` over any :class:`ChatModel`:
:class:`TransformersChat` (any chat model by hub id or local folder, e.g.
``Qwen/Qwen2.5-1.5B-Instruct``) or :class:`~simulators.candidates.gemini.GeminiChat`
(PASTA used Gemini 1.5 Flash). It asks for ``k`` expansions in each
category as JSON and repairs what comes back: missing, empty, overlong,
duplicate (within the turn or equal to the current prompt) or non-text
candidates, an unparsable reply, or a failed call never crash the episode;
the gap is filled from the offline
:class:`~simulators.candidates.templates.TemplateCandidateGenerator`, and the
returned prompts carry a note per row saying what was filled and why (the
env puts it in ``info["candidate_notes"]``).

Randomness: each row's sampling seed comes from the turn's uniform and the
prompt text (:func:`~simulators.contract.seeds_from_uniforms`); the model's
global random state is saved and restored around each call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from simulators.backends import require, torch_device, torch_dtype
from simulators.candidates.synthetic import CATEGORIES
from simulators.candidates.templates import TemplateCandidateGenerator, clean_text, embed_rows
from simulators.contract import PromptEncoder, Prompts, TextPrompts, seeds_from_uniforms, text_hash

#: What each category asks for, in the prompt to the model.
CATEGORY_HINTS = {
    "rephrase": "the same image described in other words",
    "add detail": "the same prompt with one added detail (setting, lighting, mood, colours, composition)",
    "change style": "the same subject in a different artistic style or medium",
    "change subject": "a different subject, keeping the prompt's other qualities",
    "creative leap": "a surprising new idea loosely inspired by the prompt",
}
MAX_CHARS = 300

SYSTEM_PROMPT = ("You help a user refine a text-to-image prompt. You propose prompt expansions in fixed "
                 "categories and answer with JSON only.")


@runtime_checkable
class ChatModel(Protocol):
    """A chat language model: messages in, the reply's text out.

    ``complete(messages, seed)``: ``messages`` are ``{"role", "content"}``
    dicts (roles ``system``, ``user``); ``seed`` fixes the sampling.
    """

    def complete(self, messages: list[dict[str, str]], seed: int) -> str: ...


def build_messages(prompt: str, per_category: int, categories: Sequence[str] = CATEGORIES) -> list[dict[str, str]]:
    """The chat messages asking for ``per_category`` expansions of ``prompt`` in each category."""
    lines = "\n".join(f'- "{c}": {CATEGORY_HINTS.get(c, c)}' for c in categories)
    example = json.dumps({c: [f"... ({per_category} prompts)"] for c in categories})
    user = (f"Current prompt: {prompt}\n\nWrite {per_category} new prompts in each category:\n{lines}\n\n"
            f"Each prompt is one line of at most 40 words, all prompts distinct. Answer with a JSON object "
            f"whose keys are the categories and whose values are lists of {per_category} strings, e.g. "
            f"{example}")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_reply(reply: str, categories: Sequence[str] = CATEGORIES) -> tuple[dict[str, list[str]], list[str]]:
    """The candidate lists a reply holds, and what was wrong with it.

    Accepts a JSON object (inside code fences or surrounding prose too);
    category names match case-insensitively, with ``_``/``-`` as spaces.

    Returns:
        ``(found, problems)``: category -> list of raw strings; problem
        descriptions (empty when the reply was well formed).
    """
    problems: list[str] = []
    text = str(reply or "")
    match = re.search(r"\{.*\}", text, flags=re.S)
    if match is None:
        return {}, ["the reply holds no JSON object"]
    try:
        obj = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        return {}, [f"the reply's JSON does not parse ({exc.msg} at {exc.pos})"]
    if not isinstance(obj, dict):
        return {}, ["the reply's JSON is not an object"]
    norm = {re.sub(r"[\s_\-]+", " ", str(k)).strip().lower(): v for k, v in obj.items()}
    found = {}
    for cat in categories:
        value = norm.get(cat)
        if value is None:
            problems.append(f"no {cat!r} list")
            continue
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            problems.append(f"{cat!r} is not a list")
            continue
        found[cat] = [v for v in value if isinstance(v, str)]
        if len(found[cat]) != len(value):
            problems.append(f"{cat!r} has non-text items")
    return found, problems


class LanguageModelCandidateGenerator:
    """``k`` candidates per category from a chat model, repaired from an offline generator.

    Args:
        chat: The language model.
        encoder: Embeds candidate texts in the world's space.
        per_category: Candidates per category ``k``.
        fallback: Fills what the model did not give well; default a
            :class:`TemplateCandidateGenerator` on ``encoder``.
    """

    categories = CATEGORIES
    uniforms_per_turn = 1

    def __init__(self, chat: ChatModel, encoder: PromptEncoder, per_category: int = 5,
                 fallback: TemplateCandidateGenerator | None = None):
        self.chat, self.encoder, self.per_category = chat, encoder, int(per_category)
        self.fallback = fallback or TemplateCandidateGenerator(encoder, per_category)
        if self.fallback.per_category != self.per_category:
            raise ValueError("the fallback generator must propose as many candidates per category")
        self.num_candidates = self.per_category * len(CATEGORIES)
        self.category_of = np.repeat(np.arange(len(CATEGORIES)), self.per_category).astype(np.int64)

    def identity(self) -> dict:
        identity = getattr(self.chat, "identity", None)
        return {"kind": "language model", "per_category": self.per_category,
                "chat": identity() if callable(identity) else type(self.chat).__qualname__}

    def candidates_for(self, prompt: str, seed: int) -> tuple[list[str], str | None]:
        """The ``C`` candidate texts of one prompt, and a note on what was repaired (``None``: nothing)."""
        k = self.per_category
        try:
            reply = self.chat.complete(build_messages(prompt, k), seed)
            found, problems = parse_reply(reply)
        except Exception as exc:  # a failed call must not end the episode
            found, problems = {}, [f"the language model failed ({type(exc).__name__}: {exc})"]
        seen = {clean_text(prompt).lower()}
        kept: list[list[str]] = []
        dropped = 0
        for cat in CATEGORIES:
            good: list[str] = []
            for raw in found.get(cat, []):
                t = clean_text(raw)
                if not t or len(t) > MAX_CHARS or t.lower() in seen or len(good) == k:
                    dropped += 1
                    continue
                seen.add(t.lower())
                good.append(t)
            kept.append(good)
        missing = sum(k - len(g) for g in kept)
        if missing:
            extra = self.fallback.expand_text(prompt, np.random.default_rng(seed), taken=seen)
            for good, more in zip(kept, extra):
                good.extend(more[:k - len(good)])
        note = None
        if missing:
            why = "; ".join(problems) or "too few usable candidates"
            if dropped:
                why += f"; {dropped} dropped (empty, too long, duplicate or surplus)"
            note = f"filled {missing} of {self.num_candidates} candidates from the offline generator ({why})"
        return [t for good in kept for t in good], note

    def generate(self, current: Prompts, uniforms: np.ndarray) -> TextPrompts:
        """``(B, C)`` candidates of ``(B,)`` prompts; ``.notes`` holds each row's repair note or ``None``."""
        texts = [str(t) for t in current.texts().reshape(-1)]
        rows, notes = [], np.empty(len(texts), dtype=object)
        for b, text in enumerate(texts):
            seed = int(seeds_from_uniforms(uniforms[b, 0], salt=text_hash(text)))
            row, notes[b] = self.candidates_for(text, seed)
            rows.append(row)
        out = embed_rows(self.encoder, rows)
        out.notes = notes
        return out

    def keeps_request(self, current: Prompts, request: Prompts) -> np.ndarray:
        """``(B,)`` whether the request's subject still appears in the current prompt (the templates' rule)."""
        return self.fallback.keeps_request(current, request)

    ranking_scores = staticmethod(TemplateCandidateGenerator.ranking_scores)


class TransformersChat:
    """A chat model on transformers, by hub id or local folder.

    Args:
        model: Hub id or folder of a causal language model with a tokenizer.
        device: ``"cuda"``, ``"cpu"`` or ``None``/``"auto"``.
        dtype: ``"bfloat16"``, ``"float16"``, ``"float32"``; ``None``: bf16 on a
            GPU, fp32 on the CPU.
        max_new_tokens: Reply length limit.
        temperature: Sampling temperature; 0 decodes greedily.
        top_p: Nucleus sampling mass.
        model_obj: A ready model instead of loading ``model``.
        tokenizer: A ready tokenizer instead of loading ``model``'s.

    A tokenizer without a chat template gets the messages as plain text
    (``"system: ...\\nuser: ...\\nassistant:"``).
    """

    def __init__(self, model: str, device: str | None = None, dtype: str | None = None, max_new_tokens: int = 768,
                 temperature: float = 0.8, top_p: float = 0.95, model_obj: Any = None, tokenizer: Any = None):
        transformers = require("transformers", "the transformers candidate generator")
        self.torch = require("torch", "the transformers candidate generator")
        self.device = torch_device(device)
        self.name = str(model)
        if tokenizer is None:
            tokenizer = transformers.AutoTokenizer.from_pretrained(model)
        if model_obj is None:
            model_obj = transformers.AutoModelForCausalLM.from_pretrained(
                model, dtype=torch_dtype(dtype, self.device))
        self.tokenizer, self.model = tokenizer, model_obj.to(self.device).eval()
        self.max_new_tokens, self.temperature, self.top_p = int(max_new_tokens), float(temperature), float(top_p)

    def identity(self) -> dict:
        return {"model": self.name, "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "top_p": self.top_p}

    def _encode(self, messages: list[dict[str, str]]):
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
        return tok(text, return_tensors="pt").to(self.device)

    def complete(self, messages: list[dict[str, str]], seed: int) -> str:
        """The model's reply, sampled with ``seed`` (the global torch random state is restored after)."""
        torch = self.torch
        inputs = self._encode(messages)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        sample = self.temperature > 0
        options: dict[str, Any] = {"do_sample": sample, "max_new_tokens": self.max_new_tokens, "pad_token_id": pad}
        if sample:
            options.update(temperature=self.temperature, top_p=self.top_p)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(int(seed))
            out = self.model.generate(**inputs, **options)
        new = out[0, inputs["input_ids"].shape[1]:]
        return str(self.tokenizer.decode(new, skip_special_tokens=True))
