"""Property-based tests: any env argument, action or CLI input gets a result or a named error, never a crash."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pasta_cli.main import main
from pasta_env import EpisodeEndedError, PastaT2IEnv
from simulators.errors import PastaError
from tests.conftest import ENV_ID

ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.floats(allow_nan=True),
                      st.text(max_size=8), st.lists(st.integers(0, 30), max_size=3))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["num_candidates", "slate_size", "images_per_prompt", "horizon",
                                        "reward", "render_mode", "world", "prompts"]), ANY_VALUE, max_size=3))
def test_any_env_arguments_build_an_env_or_name_the_problem(kwargs):
    try:
        env = PastaT2IEnv(**kwargs)
    except (ValueError, TypeError, FileNotFoundError, PastaError) as exc:
        assert str(exc), "an error must say what is wrong"
        return
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)


ACTIONS = st.one_of(
    st.lists(st.integers(-5, 30), min_size=0, max_size=6).map(np.array),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4).map(np.array),
    st.lists(st.booleans(), min_size=4, max_size=4).map(np.array),
    st.text(max_size=5),
    st.lists(st.lists(st.integers(0, 24), min_size=4, max_size=4), min_size=1, max_size=2).map(np.array),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACTIONS)
def test_any_action_is_taken_or_refused_without_losing_the_episode(action):
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=1)
    try:
        obs, reward, term, trunc, info = env.step(action)
    except ValueError as exc:
        assert "slate" in str(exc)
        obs, *_ , info = env.step(np.array([0, 5, 10, 15]))  # the episode goes on
        assert obs["turn"] == 1
        return
    assert obs["turn"] == 1 and np.isfinite(reward)
    assert len(set(info["slate"].tolist())) == 4


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 24), min_size=4, max_size=4))
def test_stepping_after_the_end_is_a_named_error(slate):
    env = gym.make(ENV_ID, horizon=1)
    env.reset(seed=0)
    env.step(np.array(slate))
    try:
        env.step(np.array(slate))
    except EpisodeEndedError as exc:
        assert "call reset()" in str(exc)
    else:  # pragma: no cover - the env must refuse
        raise AssertionError("stepping after the end was accepted")


OPTION_VALUES = st.one_of(st.integers(-3, 5).map(str), st.sampled_from(["", "x", "1e9", "nan", "-0", "0.5"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["--episodes", "--num-envs", "--seed", "--agents", "--reward"]), OPTION_VALUES)
def test_any_cli_option_value_runs_or_fails_in_one_line(capsys, option, value):
    try:
        code = main(["evaluate", "--quiet", "--episodes", "3", "--num-envs", "3", option, value])
    except SystemExit as exc:  # argparse's refusal of an option value
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code in (0, 2)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def _numeric_and_choice_options():
    """``(command words, option, kind)`` of every numeric or choice option of every command."""
    import argparse

    from pasta_cli.common import finite_float
    from pasta_cli.main import build_parser

    out = []
    commands = build_parser()._subparsers._group_actions[0].choices
    for name, parser in commands.items():
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        targets = [((name, sub), p) for a in subs for sub, p in a.choices.items()] if subs else [((name,), parser)]
        for words, p in targets:
            for action in p._actions:
                if not action.option_strings or action.option_strings[0] == "-h":
                    continue
                kind = "choice" if action.choices else "int" if action.type is int else \
                    "float" if action.type is finite_float else None
                if kind:
                    out.append((words, action.option_strings[0], kind))
    return out


HOSTILE = {"int": ["nan", "1.5", "x", "", "1e309", "0x10"], "float": ["nan", "inf", "-inf", "x", "", "1e999"],
           "choice": ["bogus", "", "NONE"]}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(_numeric_and_choice_options()), st.integers(0, 5))
def test_every_command_refuses_a_hostile_number_or_choice_in_one_line(capsys, target, pick):
    words, option, kind = target
    value = HOSTILE[kind][pick % len(HOSTILE[kind])]
    try:
        code = main([*words, option, value])
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2, (words, option, value)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
