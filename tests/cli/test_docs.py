"""The README and the docs: their code runs, every link and every command exists, the env spec is the docstring."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings."""
    out = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_quick_start_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    section = text.split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_prompts.txt").write_text("a lighthouse in a storm\nmy grandmother's garden\n")
    exec(compile(code, "README quick start", "exec"), {})
    out = capsys.readouterr().out
    assert out.count("\n") >= 2


def test_the_readme_is_a_landing_page():
    assert len(README.read_text().splitlines()) < 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_exists(page):
    from pasta_cli.main import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    text = page.read_text()
    used = set(re.findall(r"\bpasta ([a-z][a-z-]+)", text)) - {"t2i"}
    assert used <= set(commands), used - set(commands)
    actions = commands["dataset"]._subparsers._group_actions[0].choices
    assert set(re.findall(r"\bpasta dataset ([a-z]+)", text)) <= set(actions)
    for module in re.findall(r"python -m ((?:simulators|pasta_env|agents|pasta_app|benchmarks|pasta_cli)[\w.]*)", text):
        assert module == "pasta_cli.main", f"{page.name}: `python -m {module}` is not a command; use `pasta ...`"


def test_the_environment_page_shows_the_envs_own_docstring():
    from pasta_env import PastaT2IEnv

    page = (ROOT / "docs" / "environment.md").read_text()
    shown = re.search(r"<!-- spec: pasta_env.PastaT2IEnv -->\n```text\n(.*?)\n```\n<!-- /spec -->", page, re.S)
    assert shown, "docs/environment.md lost its spec block"
    assert shown.group(1) == inspect.getdoc(PastaT2IEnv), (
        "docs/environment.md shows another spec than PastaT2IEnv's docstring; paste the output of "
        "python -c 'import inspect, pasta_env; print(inspect.getdoc(pasta_env.PastaT2IEnv))' between its markers")


def test_dataset_snippet_runs(tmp_path, monkeypatch):
    pytest.importorskip("d3rlpy")
    from agents import make_agent
    from pasta_env.datasets import DatasetSpec, generate

    section = (ROOT / "docs" / "datasets.md").read_text()
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    generate("data/lmm", DatasetSpec(episodes=8, chunk=4), progress=False, make_policy=make_agent)
    scope: dict = {}
    exec(compile(code, "docs/datasets.md snippet", "exec"), scope)
    assert scope["ep"].observations["history_prompts"].shape == (6, 5, 64)
    assert scope["ep"].observations["history_rewards"].shape == (6, 5)
    assert len(scope["mdp"].episodes) == 8
