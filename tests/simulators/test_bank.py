"""Candidate banks: a language model's candidates written once, read offline by the synthetic world."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from simulators.candidates.bank import BankError, build_bank, read_bank
from simulators.candidates.language_model import LanguageModelCandidateGenerator
from simulators.candidates.synthetic import CATEGORIES
from simulators.text.encoders import StaticTextEncoder
from simulators.text.requests import parse_request
from tests.conftest import ENV_ID

REQUESTS = ["a red fox in a snowy forest", "a bowl of ramen, watercolor painting", "a lighthouse at dusk"]


class Replies:
    """A chat model with a reply per request (its candidates written in the world's own order of parts); the
    second request gets a malformed reply. Records the requests it was asked about."""

    def __init__(self, stop_after: int | None = None):
        self.asked: list[str] = []
        self.stop_after = stop_after

    def complete(self, messages, seed):
        if self.stop_after is not None and len(self.asked) == self.stop_after:
            raise KeyboardInterrupt  # as if the run were stopped here
        prompt = messages[-1]["content"].split("Current prompt: ", 1)[1].split("\n", 1)[0]
        self.asked.append(prompt)
        if prompt == REQUESTS[1]:
            return "Sorry, I can only answer in prose."
        subject = prompt.split(" in ")[0]
        return json.dumps({
            "rephrase": [f"{subject} variant {i} in a snowy forest" for i in range(5)],
            "add detail": [f"{subject} in a snowy forest, detail {i}" for i in range(5)],
            "change style": [f"{subject} in a snowy forest, style {i}" for i in range(5)],
            "change subject": [f"an animal {i} in a snowy forest" for i in range(5)],
            "creative leap": [f"{subject} on the moon, leap {i}" for i in range(5)]})

    def identity(self):
        return {"kind": "scripted"}


@pytest.fixture
def generator():
    return LanguageModelCandidateGenerator(Replies(), StaticTextEncoder.load())


def test_a_bank_round_trips_into_the_worlds_first_turn(tmp_path, generator):
    prompts = tmp_path / "requests.txt"
    prompts.write_text("\n".join(REQUESTS) + "\n")
    bank = build_bank(REQUESTS, generator, tmp_path / "bank.json")
    assert [r["note"] is None for r in bank["requests"]] == [True, False, True]  # the prose reply was repaired
    again = read_bank(tmp_path / "bank.json", REQUESTS)
    assert again["requests"] == bank["requests"]
    env = gym.make(ENV_ID, prompts=str(prompts), candidates=str(tmp_path / "bank.json"))
    seen = set()
    for seed in range(8):
        obs, info = env.reset(seed=seed)
        request = str(env.unwrapped.core.request.texts()[0])
        seen.add(request)
        row = next(r for r in bank["requests"] if r["request"] == request)
        want = [t for c in CATEGORIES for t in row["candidates"][c]]
        got = list(info["candidate_texts"])
        # The model's candidates, in its wording (each split into the world's parts: the same parts).
        assert [parse_request(t).parts for t in got] == [parse_request(t).parts for t in want], request
        if request == REQUESTS[0]:  # texts written in the world's order of parts read exactly as written
            assert got == want
        obs, *_, info = env.step(np.array([0, 5, 10, 15]))  # the next turn expands the chosen one by the rules
        assert list(info["candidate_texts"]) != got
    assert seen == set(REQUESTS)


def test_a_bank_for_other_requests_or_a_damaged_one_is_refused_with_the_fix(tmp_path, generator):
    build_bank(REQUESTS, generator, tmp_path / "bank.json")
    other = tmp_path / "other.txt"
    other.write_text("a red fox in a snowy forest\na cup of tea\na lighthouse at dusk\n")
    with pytest.raises(BankError, match=r"request 2 is 'a cup of tea' in the prompts.*pasta build-candidates"):
        gym.make(ENV_ID, prompts=str(other), candidates=str(tmp_path / "bank.json"))
    with pytest.raises(BankError, match="num_candidates=25"):
        read_bank(tmp_path / "bank.json", REQUESTS, per_category=3)
    (tmp_path / "cut.json").write_text((tmp_path / "bank.json").read_text()[:500])
    with pytest.raises(BankError, match="not a candidate bank"):
        read_bank(tmp_path / "cut.json")
    with pytest.raises(BankError, match="belongs to a prompt file"):
        gym.make(ENV_ID, candidates=str(tmp_path / "bank.json"))


def test_an_interrupted_build_resumes_without_asking_again(tmp_path):
    encoder = StaticTextEncoder.load()
    first = Replies(stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        build_bank(REQUESTS, LanguageModelCandidateGenerator(first, encoder), tmp_path / "bank.json", every=1)
    assert not (tmp_path / "bank.json").exists() and (tmp_path / "bank.json.partial").is_file()
    second = Replies()
    bank = build_bank(REQUESTS, LanguageModelCandidateGenerator(second, encoder), tmp_path / "bank.json", every=1)
    assert second.asked == [REQUESTS[2]] and len(bank["requests"]) == 3
    assert not (tmp_path / "bank.json.partial").exists()
    with pytest.raises(BankError, match="other requests"):
        build_bank(REQUESTS[:2], LanguageModelCandidateGenerator(Replies(), encoder), tmp_path / "bank.json")
