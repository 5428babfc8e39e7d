"""The rating app on loopback: sessions over HTTP, concurrent raters, a killed server, access rules, the report.

A real server (``pasta serve`` in a child process, uvicorn) is driven by
HTTP clients; simulated raters (:mod:`pasta_app.simulated`) see the prompt
cards a person sees and choose with the world's user model.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from pasta_app.simulated import Chooser, Rater, Server, cards, crowd, play, turn_token  # noqa: E402

#: How the tests start the app (the command line's ``pasta serve``).
SERVE = [sys.executable, "-m", "pasta_cli.main", "serve"]


@pytest.fixture(scope="module")
def world():
    from pasta_env.worlds import make_world

    return make_world("synthetic")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("serve") / "data", "--agents", "bayes,random",
                 command=SERVE, raters=60)
    yield srv
    srv.kill()


REQUESTS = ["a red fox in a snowy forest", "a lighthouse at dusk", "a bowl of ramen", "a city street in the rain"]


def records(data: Path) -> list[dict]:
    return [json.loads(line) for line in (data / "choices.jsonl").read_text().splitlines()]


def test_a_session_played_over_http_is_recorded_turn_by_turn_and_trains_the_user_model(server, world, tmp_path):
    rater = Rater(server, server.links["rater-0001"])
    log: list = []
    sid = play(rater, world, 2, "a red fox <b>in</b> a snowy forest", log)
    assert 'id="finished"' in rater.page(sid)
    assert rater.choose(sid, 0, "Same") == 400  # a finished session takes no more turns
    mine = [r for r in records(server.data) if r["trajectory_id"] == sid]
    assert [(r["trajectory_id"], r["turn"], r["chosen"], r["answer"]) for r in mine] == log
    assert all(r["user_id"] == "rater-0001" and len(r["prompts"]) == 4 and len(r["images"][0]) == 4 for r in mine)
    assert mine[0]["answer"] is None and all(r["answer"] in ("Better", "Same", "Worse") for r in mine[1:])
    from simulators.preferences.data import read_dataset

    data = read_dataset(server.data)  # the preference format: the user model trains on it as it is
    assert len(data.choices["chosen"]) >= 5 and data.dim == 64
    out = tmp_path / "model.npz"
    proc = subprocess.run([sys.executable, "-m", "pasta_cli.main", "train-user-model", "--data", str(server.data),
                           "--k", "2", "--epochs", "2", "--inits", "1", "--quiet", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and out.is_file(), proc.stderr


def test_fifty_concurrent_raters_lose_and_mix_no_record(server, world):
    run = crowd(server, world, [f"rater-{i + 10:04d}" for i in range(50)], 20.0, REQUESTS)
    assert not run["errors"], run["errors"][:3]
    recorded = records(server.data)
    for name, log in run["logs"].items():
        mine = [(r["trajectory_id"], r["turn"], r["chosen"], r["answer"]) for r in recorded if r["user_id"] == name]
        assert mine == log, name  # every posted turn on disk, in order, under its own rater
    assert sum(len(v) for v in run["logs"].values()) >= 50  # every rater got turns in
    by_session: dict[str, list[int]] = {}
    for r in recorded:
        by_session.setdefault(r["trajectory_id"], []).append(r["turn"])
    assert all(turns == list(range(len(turns))) for turns in by_session.values())


def test_a_server_killed_mid_session_restarts_with_every_completed_turn_and_the_session_continues(tmp_path, world):
    data = tmp_path / "data"
    first = Server(data, "--agent", "bayes", command=SERVE, raters=1)
    link = first.links["rater-0001"]
    rater = Rater(first, link)
    sid = rater.start("a lighthouse at dusk")
    chooser = Chooser(world, 3, "a lighthouse at dusk")
    log = []
    for t in range(2):
        column, answer = chooser.pick(cards(rater.page(sid)))
        assert rater.choose(sid, column, answer) == 303
        log.append((sid, t, column, answer))
    shown = cards(rater.page(sid))
    first.kill()
    assert [(r["trajectory_id"], r["turn"], r["chosen"], r["answer"]) for r in records(data)] == log
    second = Server(data, command=SERVE)  # a restart makes no rater, prints the same admin link, old links work
    assert set(second.links) == {"admin"} and second.links["admin"].split("/join/")[1] == \
        first.links["admin"].split("/join/")[1]
    assert list(json.loads((data / "access.json").read_text())["raters"]) == ["rater-0001"]
    rater = Rater(second, link)
    assert cards(rater.page(sid)) == shown  # rebuilt by replay: the same slate as before the kill
    for t in range(2, 5):
        column, answer = chooser.pick(cards(rater.page(sid)))
        assert rater.choose(sid, column, answer) == 303
        log.append((sid, t, column, answer))
    assert [(r["trajectory_id"], r["turn"], r["chosen"], r["answer"]) for r in records(data)] == log
    second.kill()
    third = Server(data, command=SERVE)  # a finished session stays finished across restarts
    try:
        assert 'id="finished"' in Rater(third, link).page(sid)
    finally:
        third.kill()


def test_requests_without_a_token_or_for_another_raters_session_are_refused_and_markup_is_escaped(server):
    anon = httpx.Client(base_url=server.base, follow_redirects=False)
    assert anon.get("/").status_code == 401
    assert anon.post("/sessions", data={"prompt": "x"}).status_code == 401
    assert anon.get("/join/not-a-token").status_code == 403
    assert anon.get("/admin/export").status_code == 401
    alice, bob = Rater(server, server.links["rater-0002"]), Rater(server, server.links["rater-0003"])
    sid = alice.start('<script>alert("x")</script><img src=x onerror=alert(1)>')
    page = alice.page(sid)
    assert "<script>alert" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "script-src" not in page.split("</head>")[0]
    assert alice.http.get(f"/s/{sid}").headers["content-security-policy"].startswith("default-src 'none'")
    assert bob.http.get(f"/s/{sid}").status_code == 404  # another rater's session is not found
    assert bob.choose(sid, 0, None) == 404
    assert alice.choose(sid, 7, None) == 400  # not a column
    assert alice.http.post("/sessions", data={"prompt": "x" * 5000}).status_code == 413
    assert alice.http.post("/sessions", data={"prompt": "x" * 400}).status_code == 400  # over 300 characters
    assert alice.http.post("/sessions", data={"prompt": "a\x00b"}).status_code == 400
    chunked = alice.http.post("/sessions", content=iter([b"prompt=abc"]),
                              headers={"content-type": "application/x-www-form-urlencoded"})
    assert chunked.status_code == 411
    assert alice.http.get("/admin/export").status_code == 403
    admin = httpx.Client(base_url=server.base, follow_redirects=False)
    assert admin.get("/join/" + server.links["admin"].rsplit("/join/", 1)[1]).status_code == 303
    export = admin.get("/admin/export")
    assert export.status_code == 200 and export.content[:2] == b"PK"
    flood = [bob.http.get("/").status_code for _ in range(120)]
    assert 429 in flood and flood[0] == 200  # bursts are bounded per client


def test_the_report_of_simulated_raters_ranks_the_agents_as_the_evaluation_does(server, world, tmp_path):
    from agents.evaluation import evaluate
    from pasta_app.report import markdown, plot, report

    data = tmp_path / "data"
    srv = Server(data, "--agents", "bayes,random", "--rate", "1000", "--seed", "0",
                 command=SERVE, raters=16)
    try:
        log: list = []
        rng = np.random.default_rng(0)
        for i in range(16):  # 96 sessions, about half with each agent (blind assignment)
            rater = Rater(srv, srv.links[f"rater-{i + 1:04d}"])
            k = int(rng.integers(8))
            for j in range(6):
                play(rater, world, k, REQUESTS[(i + j) % len(REQUESTS)], log)
    finally:
        srv.kill()
    rep = report(data)
    expected = evaluate(["bayes", "random"], episodes=400, seed=0, num_envs=200, progress=False).ranking()
    assert rep["ranking"] == expected == ["bayes", "random"]
    pair = rep["paired_better"][0]
    assert pair["a"] == "bayes" and pair["difference"] - pair["ci95"] > 0, pair  # with --seed 0: +21 ± 9 pp
    text = markdown(rep)
    assert "| bayes |" in text and "paired difference" in text
    plot(rep, tmp_path / "report.png")
    assert (tmp_path / "report.png").stat().st_size > 1000


def test_the_clip_world_shows_each_column_as_images_and_records_their_embeddings(tmp_path):
    pytest.importorskip("open_clip")
    pytest.importorskip("diffusers")
    from benchmarks import tiny_models

    options = tiny_models.tiny_clip_world_options(tmp_path / "models")
    data = tmp_path / "data"
    srv = Server(data, "--agent", "lmm", "--world", "clip",
                 *[f"--world-option={k}={json.dumps(v)}" for k, v in options.items()], command=SERVE, raters=1)
    try:
        rater = Rater(srv, srv.links["rater-0001"])
        sid = rater.start("a bowl of ramen")
        page = rater.page(sid)
        assert len(re.findall(r'<img alt="image \d of column \d" src="data:image/png;base64,', page)) == 16
        for t in range(5):
            assert rater.choose(sid, t % 4, None if t == 0 else "Same") == 303
        second = rater.start("a lighthouse at dusk")  # a new request reuses the loaded models
        assert len(cards(rater.page(second))) == 4
    finally:
        srv.kill()
    from simulators.preferences.data import read_dataset

    prefs = read_dataset(data)
    assert prefs.dim == 32 and len(prefs.choices["chosen"]) == 5  # the tiny CLIP's space


def test_serve_says_what_is_missing_and_binds_to_loopback_unless_told(tmp_path, monkeypatch, capsys):
    from pasta_cli.main import main

    assert main(["serve", "--data", str(tmp_path / "d"), "--host", "0.0.0.0"]) == 2
    assert "add --public" in capsys.readouterr().err
    assert main(["serve", "--data", str(tmp_path / "d"), "--agents", "bayes,nobody"]) == 2
    assert "unknown agent 'nobody'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the extra were not installed
    assert main(["serve", "--data", str(tmp_path / "d")]) == 2
    assert "pip install 'pasta-t2i[serve]'" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    with pytest.raises(FileNotFoundError):
        from pasta_app.report import report

        report(tmp_path)


def test_ctrl_c_stops_the_server_cleanly_with_status_130(tmp_path):
    import signal

    srv = Server(tmp_path / "data", command=SERVE, raters=1)
    srv.proc.send_signal(signal.SIGINT)
    srv.proc.wait(timeout=60)
    err = srv.proc.stderr.read() if srv.proc.stderr else ""
    assert srv.proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err


def test_posts_from_another_site_are_refused_and_record_nothing(server):
    """A form elsewhere carrying the rater's cookie (Origin or Sec-Fetch-Site say so) gets 403; the app's own
    pages (same origin, or a client that sends neither) go through."""
    from pasta_app.server import cross_site

    rater = Rater(server, server.links["rater-0005"])
    sid = rater.start("a lighthouse at dusk")
    own = server.base.rstrip("/")
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
                    {"Origin": own.replace("127.0.0.1", "localhost") + "1"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
        r = rater.http.post(f"/s/{sid}/choose", data={"column": "0"}, headers=headers)
        assert r.status_code == 403 and "nothing was recorded" in r.text, headers
        assert rater.http.post("/sessions", data={"prompt": "planted"}, headers=headers).status_code == 403
    assert 'Turn 1 of 5' in rater.page(sid)  # nothing moved
    rater.page(sid)
    r = rater.http.post(f"/s/{sid}/choose", data={"column": "0", "turn": rater.tokens[sid]},
                        headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 303 and 'Turn 2 of 5' in rater.page(sid)
    assert not cross_site({"host": "a:1"}, "http") and not cross_site({"sec-fetch-site": "none"}, "http")


def test_a_form_sent_twice_records_once_and_the_second_gets_the_current_page(server):
    rater = Rater(server, server.links["rater-0006"])
    sid = rater.start("a bowl of ramen")
    rater.page(sid)
    assert rater.choose(sid, 1, None) == 303
    form = {"column": "2", "answer": "Better", "turn": turn_token(rater.page(sid))}
    assert rater.http.post(f"/s/{sid}/choose", data=form).status_code == 303
    before = len(records(server.data))
    again = rater.http.post(f"/s/{sid}/choose", data=form)  # the turn-2 form once more
    assert again.status_code == 409 and "not recorded" in again.text and "Turn 3 of 5" in again.text
    assert turn_token(again.text) not in (None, form["turn"])  # the page it gets is the current slate's
    forged = rater.http.post(f"/s/{sid}/choose", data={"column": "0", "answer": "Same"})  # no token at all
    assert forged.status_code == 409 and len(records(server.data)) == before
    mine = [(r["turn"], r["chosen"]) for r in records(server.data) if r["trajectory_id"] == sid]
    assert mine == [(0, 1), (1, 2)]


def test_following_another_raters_invite_asks_before_switching_identity(server):
    alice = Rater(server, server.links["rater-0007"])
    bob_token = server.links["rater-0008"].rsplit("/join/", 1)[1]
    asked = alice.http.get(f"/join/{bob_token}")
    assert asked.status_code == 409 and "signed in as <b>rater-0007</b>" in asked.text
    assert "Signed in as rater-0007" in alice.http.get("/").text  # nothing changed yet
    # A link followed from another site: the SameSite=Strict cookie stays behind, the Lax marker comes along.
    marker = httpx.Client(base_url=server.base, follow_redirects=False, cookies={"pasta_who": "rater-0007"})
    assert marker.get(f"/join/{bob_token}").status_code == 409
    switched = alice.http.post(f"/join/{bob_token}", headers={"Sec-Fetch-Site": "same-origin"})
    assert switched.status_code == 303 and "Signed in as rater-0008" in alice.http.get("/").text
    planted = alice.http.post(f"/join/{server.links['rater-0007'].rsplit('/join/', 1)[1]}",
                              headers={"Sec-Fetch-Site": "cross-site"})
    assert planted.status_code == 403 and "Signed in as rater-0008" in alice.http.get("/").text
    assert alice.http.get(f"/join/{bob_token}").status_code == 303  # one's own invite again: no question


def test_a_new_request_while_a_session_is_open_resumes_it(server):
    rater = Rater(server, server.links["rater-0009"])
    # The agent is drawn at random per request: 24 requests see both agents but with probability 2**-23.
    sids = [rater.start("a red fox in a snowy forest") for _ in range(24)]
    assert len(set(sids)) == 2  # bayes and random: one open session each, the rest resumed
    r = rater.http.post("/sessions", data={"prompt": "a red fox in a snowy forest"})
    assert r.headers["location"].endswith("?resumed=1")
    assert "finish it before starting another" in rater.http.get(r.headers["location"]).text


def test_errors_are_pages_that_say_what_to_do_next(server):
    rater = Rater(server, server.links["rater-0060"])
    for response in (rater.http.get("/no/such/page"), rater.http.post("/sessions", data={}),
                     rater.http.get("/s/unknown"), rater.http.delete("/"), rater.http.get("/admin"),
                     httpx.get(server.base + "/")):
        assert response.headers["content-type"].startswith("text/html"), response
        assert 'id="next"' in response.text and response.status_code in (400, 401, 403, 404, 405), response
    sid = rater.start("a bowl of ramen")
    for t in range(5):
        assert rater.choose(sid, t % 4, None if t == 0 else "Worse") == 303
    end = rater.page(sid)
    code = re.search(r'id="code">([A-Z2-7]{4}-[A-Z2-7]{4})<', end).group(1)
    assert rater.page(sid).count(code) == 1  # the same code each time the end page is seen
    gone = rater.http.post(f"/s/{sid}/choose", data={"column": "0", "answer": "Same", "turn": "x"})
    assert gone.status_code == 400 and "finished" in gone.text


def test_the_organisers_dashboard_shows_progress_manages_invites_and_exports_codes(server):
    import io
    import zipfile

    admin = httpx.Client(base_url=server.base, follow_redirects=False)
    assert admin.get("/join/" + server.links["admin"].rsplit("/join/", 1)[1]).status_code == 303
    rater = Rater(server, server.links["rater-0004"])
    sid = rater.start("a city street in the rain")
    for t in range(5):
        assert rater.choose(sid, 0, None if t == 0 else "Better") == 303
    code = re.search(r'id="code">([^<]+)<', rater.page(sid)).group(1)
    page = admin.get("/admin").text
    for part in ('id="answers"', 'id="agents"', 'id="raters"', 'id="export"', "Wilson", code):
        assert part in page, part
    made = admin.post("/admin/invites", data={"count": "2"})
    links = re.findall(r"(http://[^<]+/join/[^<]+)</td>", made.text)
    assert made.status_code == 200 and len(links) == 2
    newcomer = httpx.Client(base_url=server.base, follow_redirects=False)
    assert newcomer.get("/join/" + links[0].rsplit("/join/", 1)[1]).status_code == 303
    assert newcomer.get("/").status_code == 200
    name = re.search(r"<td>(rater-\d+)</td><td class=\"link\">" + re.escape(links[0]), made.text).group(1)
    assert admin.post("/admin/revoke", data={"rater": name}).status_code == 303
    assert newcomer.get("/").status_code == 401  # a revoked invite opens nothing
    assert f"<td>{name}</td><td>revoked</td>" in admin.get("/admin").text
    assert admin.post("/admin/invites", data={"count": "100000"}).status_code == 400
    assert rater.http.post("/admin/invites", data={"count": "1"}).status_code == 403
    with zipfile.ZipFile(io.BytesIO(admin.get("/admin/export").content)) as zf:
        codes = zf.read("completion_codes.csv").decode()
        assert f"{sid},rater-" in codes and code in codes and "access.json" not in zf.namelist()


def test_invites_are_made_by_their_own_command_never_by_starting_the_server(tmp_path, capsys):
    from pasta_app.records import DataFolder
    from pasta_cli.main import main

    data = tmp_path / "d"
    assert main(["serve", "invite", "--data", str(data), "--raters", "2", "--url", "https://study.example",
                 "--out", str(tmp_path / "links.csv")]) == 0
    out = capsys.readouterr().out
    links = re.findall(r"^(rater-\d+|admin): (https://study.example/join/\S+)$", out, re.M)
    assert [who for who, _ in links] == ["admin", "rater-0001", "rater-0002"]
    folder = DataFolder.open(data)
    assert [folder.who(link.rsplit("/", 1)[1]) for _, link in links] == ["admin", "rater-0001", "rater-0002"]
    assert (tmp_path / "links.csv").read_text().count("https://study.example/join/") == 2
    assert oct((data / "access.json").stat().st_mode & 0o777) == "0o600"
    assert main(["serve", "invite", "--data", str(data), "--raters", "1", "--out", str(tmp_path / "links.csv")]) == 2
    assert "exists" in capsys.readouterr().err  # the earlier links are not overwritten
    assert main(["serve", "--data", str(data), "--raters", "3"]) == 2
    assert "pasta serve invite" in capsys.readouterr().err
    assert main(["serve", "invite", "--data", str(data)]) == 2
    assert main(["serve", "invite", "--data", str(data), "--raters", "0"]) == 0  # prints the admin's link again
    assert capsys.readouterr().out.strip() == links[0][0] + ": " + links[0][1].replace("https://study.example",
                                                                                      "http://127.0.0.1:8000")
    assert list(folder.raters()) == ["rater-0001", "rater-0002"]


def test_a_data_folder_that_is_a_file_is_refused_in_one_line(tmp_path, capsys):
    from pasta_cli.main import main

    (tmp_path / "f").write_text("x")
    assert main(["serve", "invite", "--data", str(tmp_path / "f"), "--raters", "1"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and (tmp_path / "f").read_text() == "x"
