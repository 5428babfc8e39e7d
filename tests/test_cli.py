"""Smoke runs of every ``pasta`` command."""

from __future__ import annotations

import json

from pasta_cli.main import main


def test_evaluate_writes_json_and_plot(tmp_path, capsys):
    out, png = tmp_path / "e.json", tmp_path / "e.png"
    code = main(["evaluate", "--agents", "random,greedy", "--episodes", "30", "--seed", "1",
                 "--json", str(out), "--plot", str(png), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "| greedy |" in text and "paired differences" in text
    assert json.loads(out.read_text())["settings"]["episodes"] == 30
    assert png.stat().st_size > 1000


def test_evaluate_unknown_agent(capsys):
    assert main(["evaluate", "--agents", "random,nope", "--episodes", "5"]) == 2
    assert "unknown agent 'nope'; known agents:" in capsys.readouterr().err


def test_evaluate_missing_prompt_file(tmp_path, capsys):
    assert main(["evaluate", "--prompts", str(tmp_path / "x.txt"), "--episodes", "5", "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_demo_prints_every_turn(capsys):
    assert main(["demo", "--seed", "2", "--agent", "oracle"]) == 0
    text = capsys.readouterr().out
    assert "hidden user type:" in text and "turn 5/5" in text and "return" in text


def test_bench_writes_json(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["bench", "--steps", "300", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert {r["num_envs"] for r in payload["rows"]} == {1, 64, 1024}
    assert payload["observation_bytes"]["total"] > 0
