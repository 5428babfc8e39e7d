"""The README's quick start runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_quick_start_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    section = text.split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_prompts.txt").write_text("a lighthouse in a storm\nmy grandmother's garden\n")
    exec(compile(code, "README quick start", "exec"), {})
    out = capsys.readouterr().out
    assert out.count("\n") >= 2


def test_readme_names_existing_commands():
    from pasta_cli.main import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    used = set(re.findall(r"\bpasta ([a-z][a-z-]+)", README.read_text()))
    assert used - {"t2i"} <= commands, used - commands


def test_dataset_snippet_runs(tmp_path, monkeypatch):
    import pytest

    pytest.importorskip("d3rlpy")
    from pasta_env.datasets import DatasetSpec, generate

    section = README.read_text().split("## Offline-RL datasets", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    generate("data/lmm", DatasetSpec(episodes=8, chunk=4), progress=False)
    scope: dict = {}
    exec(compile(code, "README dataset snippet", "exec"), scope)
    assert scope["ep"].observations["history_prompts"].shape == (6, 5, 64)
    assert len(scope["mdp"].episodes) == 8
