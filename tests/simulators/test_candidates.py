"""Free-text candidate generators: the offline templates, a language model's replies repaired, Gemini's client."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simulators.candidates.gemini import GeminiChat, GeminiError
from simulators.candidates.language_model import (
    LanguageModelCandidateGenerator,
    build_messages,
    parse_reply,
)
from simulators.candidates.synthetic import CATEGORIES
from simulators.candidates.templates import TemplateCandidateGenerator
from simulators.contract import TextPrompts, check_candidates
from simulators.text import vocabulary as V
from simulators.text.encoders import StaticTextEncoder
from simulators.text.requests import parse_request


@pytest.fixture(scope="module")
def encoder():
    return StaticTextEncoder.load()  # the shipped offline encoder: real embeddings, no model


def _current(encoder, texts):
    return TextPrompts(list(texts), encoder.encode(texts))


def test_templates_make_distinct_candidates_that_follow_their_category(encoder):
    gen = TemplateCandidateGenerator(encoder)
    texts = ["a red fox in a snowy forest, oil painting", "my own strange request", "a bowl of ramen"]
    cands = gen.generate(_current(encoder, texts), np.random.default_rng(0).random((3, 1)))
    check_candidates(gen, cands, 3, encoder.dim)
    for b, text in enumerate(texts):
        row = cands.texts()[b].tolist()
        assert len(set(row)) == 25 and text not in row
        parts = parse_request(text).parts
        rephrase, detail, style, subj, leap = (row[i * 5:(i + 1) * 5] for i in range(5))
        for t in rephrase:  # one part reworded (or, lacking rewordings, a framing in front)
            new = parse_request(t).parts
            changed = {k for k in set(parts) | set(new) if parts.get(k) != new.get(k)}
            assert len(changed) == 1, (t, changed)
        for t in detail:  # a part of a kind the request does not state is added, the rest kept
            new = parse_request(t).parts
            assert all(new.get(k) == v for k, v in parts.items()) and len(new) == len(parts) + 1, t
        for t in style:  # one style, not two
            new = parse_request(t).parts
            assert new.get("style") in V.STYLES and new.get("style") != parts.get("style"), t
        for t in subj:  # a vocabulary subject; the rest of the request kept
            new = parse_request(t).parts
            assert new["base"] in gen._related(parts["base"])[:12]
            assert {k: v for k, v in new.items() if k != "base"} == {k: v for k, v in parts.items() if k != "base"}
        for t in leap:  # the request's subject in a new setting and style
            new = parse_request(t).parts
            assert new["base"] == parts["base"] and new["style"] in V.STYLES and new["setting"] in V.SETTINGS
    assert gen.keeps_request(cands[:, 5], _current(encoder, texts)).all()  # added detail keeps the subject
    assert not gen.keeps_request(cands[:, 15], _current(encoder, texts)).any()  # a new subject does not


def test_templates_are_deterministic_given_the_uniforms(encoder):
    gen = TemplateCandidateGenerator(encoder)
    cur, u = _current(encoder, ["a lighthouse"]), np.array([[0.25]])
    assert gen.generate(cur, u).texts().tolist() == gen.generate(cur, u).texts().tolist()
    assert gen.generate(cur, u).texts().tolist() != gen.generate(cur, np.array([[0.75]])).texts().tolist()


class Scripted:
    """A chat model that replies from a script (and records what it was asked)."""

    def __init__(self, reply):
        self.reply, self.asked = reply, []

    def complete(self, messages, seed):
        self.asked.append((messages, seed))
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


def _good_reply(k=5, prefix=""):
    return json.dumps({c: [f"{prefix}{c} idea {i}" for i in range(k)] for c in CATEGORIES})


def test_a_well_formed_reply_is_used_as_it_is(encoder):
    chat = Scripted("Here you go:\n```json\n" + _good_reply() + "\n```")
    gen = LanguageModelCandidateGenerator(chat, encoder)
    cands = gen.generate(_current(encoder, ["a cat"]), np.array([[0.5]]))
    assert cands.texts()[0].tolist() == [f"{c} idea {i}" for c in CATEGORIES for i in range(5)]
    assert cands.notes.tolist() == [None]
    messages, seed = chat.asked[0]
    assert "Current prompt: a cat" in messages[-1]["content"] and all(c in messages[-1]["content"]
                                                                     for c in CATEGORIES)
    np.testing.assert_allclose(cands.embeddings[0], encoder.encode(cands.texts()[0].tolist()), atol=1e-6)


def test_malformed_replies_are_repaired_from_the_offline_generator_and_said_so(encoder):
    reply = {"rephrase": ["a cat, photographed", "a cat, photographed", "", "a cat", 42],
             "Add_Detail": ["a cat on a sofa"] + ["x" * 400],
             "change style": "a cat, watercolor",
             "creative leap": [f"leap {i}" for i in range(9)]}  # no "change subject"; too many leaps
    gen = LanguageModelCandidateGenerator(Scripted(json.dumps(reply)), encoder)
    cands = gen.generate(_current(encoder, ["a cat"]), np.array([[0.5]]))
    row = cands.texts()[0].tolist()
    assert len(row) == 25 and len(set(row)) == 25 and "a cat" not in row
    assert row[0] == "a cat, photographed" and row[5] == "a cat on a sofa" and row[10] == "a cat, watercolor"
    assert row[20:25] == [f"leap {i}" for i in range(5)]
    note = cands.notes[0]
    assert "filled 17 of 25" in note and "no 'change subject' list" in note and "non-text" in note


@pytest.mark.parametrize("reply", ["no json here", "{not json", "[1, 2]", RuntimeError("model crashed")])
def test_unusable_replies_or_failed_calls_never_crash_the_turn(encoder, reply):
    gen = LanguageModelCandidateGenerator(Scripted(reply), encoder)
    cands = gen.generate(_current(encoder, ["a lighthouse", "a bowl of soup"]), np.array([[0.1], [0.2]]))
    assert cands.shape == (2, 25) and all(len(set(r)) == 25 for r in cands.texts().tolist())
    assert all("filled 25 of 25" in n for n in cands.notes)
    if isinstance(reply, Exception):
        assert "model crashed" in cands.notes[0]


def test_parse_reply_reports_what_is_wrong():
    found, problems = parse_reply('{"rephrase": ["a"], "change style": {"x": 1}}')
    assert found == {"rephrase": ["a"]}
    assert "'change style' is not a list" in problems and "no 'add detail' list" in problems
    assert "Write 3 new prompts" in build_messages("a cat", 3)[-1]["content"]


class FakeTransport:
    """Answers Gemini requests from a list of ``(status, payload)`` and records them."""

    def __init__(self, answers):
        self.answers, self.requests = list(answers), []

    def __call__(self, url, headers, body, timeout):
        self.requests.append((url, headers, json.loads(body)))
        status, payload = self.answers.pop(0)
        return status, json.dumps(payload).encode()


def _gemini_ok(text):
    return 200, {"candidates": [{"content": {"parts": [{"text": text}]}}]}


def test_gemini_client_sends_the_key_seed_and_system_prompt_and_retries_rate_limits(encoder):
    transport = FakeTransport([(429, {"error": {"message": "slow down"}}), _gemini_ok(_good_reply(prefix="g "))])
    chat = GeminiChat("gemini-1.5-flash", api_key="k-123", transport=transport, backoff=0.0)
    gen = LanguageModelCandidateGenerator(chat, encoder)
    cands = gen.generate(_current(encoder, ["a cat"]), np.array([[0.5]]))
    assert cands.texts()[0, 0] == "g rephrase idea 0" and cands.notes.tolist() == [None]
    url, headers, body = transport.requests[-1]
    assert url.endswith("/models/gemini-1.5-flash:generateContent") and headers["x-goog-api-key"] == "k-123"
    assert isinstance(body["generationConfig"]["seed"], int) and "JSON" in body["systemInstruction"]["parts"][0]["text"]
    assert len(transport.requests) == 2


def test_gemini_errors_name_the_problem(monkeypatch):
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(GeminiError, match="GEMINI_API_KEY"):
        GeminiChat()
    monkeypatch.setenv("GEMINI_API_KEY", "from-env")
    refused = GeminiChat(transport=FakeTransport([(400, {"error": {"message": "API key not valid"}})]))
    with pytest.raises(GeminiError, match="HTTP 400.*API key not valid"):
        refused.complete([{"role": "user", "content": "hi"}], 0)
    down = GeminiChat(transport=FakeTransport([(503, {})] * 3), retries=2, backoff=0.0)
    with pytest.raises(GeminiError, match="kept failing"):
        down.complete([{"role": "user", "content": "hi"}], 0)
