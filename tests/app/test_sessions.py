"""Sessions in process: turn tokens, caps per rater and server, expiry, lazy rebuilding after a restart."""

from __future__ import annotations

import time

import pytest

from pasta_app.records import DataFolder
from pasta_app.sessions import SessionError, SessionLimit, Sessions, StaleTurn


def play_turn(sessions: Sessions, session, column: int = 0) -> None:
    sessions.choose(session, column, None if session.turn == 0 else "Same", session.token)


def test_a_choice_needs_the_shown_slates_token_and_a_replayed_one_records_nothing(tmp_path):
    folder = DataFolder.open(tmp_path)
    sessions = Sessions(folder, ["bayes"], seed=0)
    session, resumed = sessions.start("rater-0001", "a lighthouse at dusk")
    assert not resumed and session.turn == 0
    first = session.token
    play_turn(sessions, session, 1)
    second = session.token
    assert second != first and len(second) == 16
    for stale in (first, None, "", "X" * 16):  # the turn-1 form again, no token, a made-up one
        with pytest.raises(StaleTurn, match="not recorded"):
            sessions.choose(session, 2, "Better", stale)
    assert session.turn == 1 and len(folder.turns()) == 1
    sessions.choose(session, 2, "Better", second)
    assert session.turn == 2 and [t["chosen"] for t in folder.turns()] == [1, 2]
    assert session.previous is not None and session.previous[0] == folder.turns()[-1]["prompts"][2]


def test_a_restart_reads_the_records_only_and_rebuilds_a_session_with_the_same_slate_and_token(tmp_path):
    folder = DataFolder.open(tmp_path)
    sessions = Sessions(folder, ["bayes", "random"], seed=1)
    session, _ = sessions.start("rater-0001", "a bowl of ramen")
    play_turn(sessions, session, 3)
    slate, token, texts = list(session.slate), session.token, session.texts()
    again = Sessions(DataFolder.open(tmp_path), ["bayes", "random"], seed=1)
    assert not again.live and again.index[session.id].turns == 1  # nothing built at start
    rebuilt = again.get("rater-0001", session.id)
    assert list(rebuilt.slate) == slate and rebuilt.texts() == texts
    assert rebuilt.token == token  # a page open before the restart still posts
    assert rebuilt.previous is not None and rebuilt.previous[0] == folder.turns()[0]["prompts"][3]
    with pytest.raises(SessionError, match="no such session"):
        again.get("rater-0002", session.id)  # another rater's session is not found


def test_a_rater_has_one_open_session_per_agent_and_a_new_request_resumes_it(tmp_path):
    sessions = Sessions(DataFolder.open(tmp_path), ["bayes"], seed=0)
    first, resumed = sessions.start("rater-0001", "a red fox")
    again, resumed_again = sessions.start("rater-0001", "something else")
    assert resumed_again and again is first and not resumed
    assert len(sessions.index) == 1 and len(sessions.open_of("rater-0001")) == 1
    for _ in range(5):
        play_turn(sessions, first)
    third, resumed = sessions.start("rater-0001", "something else")  # the first is finished: a new one
    assert not resumed and third.id != first.id and third.prompt == "something else"
    two = Sessions(DataFolder.open(tmp_path / "two"), ["bayes", "random"], seed=0)
    opened = set()
    for _ in range(20):  # with two agents a rater holds at most two open sessions, one per agent
        s, _ = two.start("rater-0001", "a red fox")
        opened.add((s.id, s.agent_name))
    assert len(opened) == 2 and {a for _, a in opened} == {"bayes", "random"}


def test_caps_per_rater_and_per_server_refuse_new_sessions_with_a_reason(tmp_path):
    sessions = Sessions(DataFolder.open(tmp_path), ["bayes"], seed=0, max_per_rater=2, max_open=2)
    for _ in range(2):
        s, _ = sessions.start("rater-0001", "a red fox")
        for _ in range(5):
            play_turn(sessions, s)
    with pytest.raises(SessionLimit, match="started the 2 sessions"):
        sessions.start("rater-0001", "a red fox")
    sessions.start("rater-0002", "a red fox")
    sessions.start("rater-0003", "a red fox")
    with pytest.raises(SessionLimit, match="limit of open sessions"):
        sessions.start("rater-0004", "a red fox")
    assert len(sessions.index) == 4  # the refused requests left nothing behind


def test_an_abandoned_session_expires_and_stops_counting_against_the_caps(tmp_path):
    hours = 0.2 / 3600  # 0.2 s
    sessions = Sessions(DataFolder.open(tmp_path), ["bayes"], seed=0, max_open=1, expire_hours=hours)
    old, _ = sessions.start("rater-0001", "a red fox")
    with pytest.raises(SessionLimit):
        sessions.start("rater-0002", "a red fox")
    time.sleep(0.3)
    with pytest.raises(SessionError, match="expired"):
        sessions.get("rater-0001", old.id)
    assert old.id not in sessions.live and not sessions.open_of("rater-0001")
    fresh, resumed = sessions.start("rater-0001", "a red fox")  # not resumed: the old one expired
    assert not resumed and fresh.id != old.id
    restarted = Sessions(DataFolder.open(tmp_path), ["bayes"], seed=0, expire_hours=hours)
    time.sleep(0.3)
    assert all(restarted.expired(e) for e in restarted.index.values())  # expiry is read from the records


def test_idle_sessions_are_let_go_and_rebuilt_on_their_next_request(tmp_path):
    sessions = Sessions(DataFolder.open(tmp_path), ["bayes", "random"], seed=2, idle_minutes=0.1 / 60)
    a, _ = sessions.start("rater-0001", "a red fox")
    play_turn(sessions, a, 2)
    token, slate = a.token, list(a.slate)
    time.sleep(0.2)
    b, _ = sessions.start("rater-0002", "a lighthouse")  # a start sweeps idle sessions out of memory
    assert a.id not in sessions.live and b.id in sessions.live
    with pytest.raises(StaleTurn):  # the let-go object takes no turn: its rebuilt successor does
        sessions.choose(a, 0, "Same", token)
    again = sessions.get("rater-0001", a.id)
    assert again is not a and list(again.slate) == slate and again.token == token
    sessions.choose(again, 0, "Same", token)
    assert [t["turn"] for t in sessions.folder.turns() if t["trajectory_id"] == a.id] == [0, 1]


def test_completion_codes_are_stable_and_differ_between_sessions_and_folders(tmp_path):
    one = Sessions(DataFolder.open(tmp_path / "one"), ["bayes"])
    other = Sessions(DataFolder.open(tmp_path / "other"), ["bayes"])
    code = one.code("abc")
    assert code == Sessions(DataFolder.open(tmp_path / "one"), ["bayes"]).code("abc")
    assert len(code) == 9 and code[4] == "-" and code != one.code("abd") and code != other.code("abc")
