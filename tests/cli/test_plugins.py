"""Worlds, agents and user models another package declares in its entry points work by name."""

from __future__ import annotations

import textwrap

import pytest

import agents
from pasta_cli.main import main
from pasta_env import worlds

PLUGIN = textwrap.dedent('''
    """A package of someone else's: a world, an agent and a user-model loader."""
    from dataclasses import replace

    from agents.baselines import LMMAgent
    from pasta_env.worlds import make_synthetic_world


    def make_world(prompts=None, num_candidates=25, flavour="plain"):
        return replace(make_synthetic_world(prompts=prompts, num_candidates=num_candidates), name="plugin-world")


    class PluginAgent(LMMAgent):
        name = "plugin-agent"


    def load_user_model(path, dim=None):
        from simulators.users.checkpoint import load_user_model as load

        return load(path, dim)
''')

ENTRY_POINTS = textwrap.dedent("""
    [pasta_t2i.worlds]
    plugin-world = pasta_plugin_example:make_world

    [pasta_t2i.agents]
    plugin-agent = pasta_plugin_example:PluginAgent

    [pasta_t2i.user_models]
    plugin-kind = pasta_plugin_example:load_user_model
""")


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The package 'installed' on sys.path with its metadata; the registries restored afterwards."""
    site = tmp_path / "site"
    (site / "pasta_plugin_example-0.1.dist-info").mkdir(parents=True)
    (site / "pasta_plugin_example.py").write_text(PLUGIN)
    (site / "pasta_plugin_example-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pasta-plugin-example\nVersion: 0.1\n")
    (site / "pasta_plugin_example-0.1.dist-info" / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(worlds, "_WORLDS", dict(worlds._WORLDS))
    monkeypatch.setattr(agents, "AGENTS", dict(agents.AGENTS))
    monkeypatch.setattr(agents, "AGENTS_WITH_WEIGHTS", dict(agents.AGENTS_WITH_WEIGHTS))
    return site


def test_a_declared_world_and_agent_run_from_the_command_line(installed, tmp_path, capsys):
    assert "plugin-world" in worlds.world_names() and "plugin-agent" in agents.agent_names()
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--world", "plugin-world", "--world-option", "flavour=spicy", "--agents",
                 "plugin-agent,random", "--episodes", "8", "--num-envs", "8", "--quiet", "--json", str(out)]) == 0
    assert "| plugin-agent |" in capsys.readouterr().out and '"world": "plugin-world"' in out.read_text()
    assert main(["evaluate", "--world", "plugin-world", "--world-option", "spice=1", "--episodes", "2"]) == 2
    assert "world 'plugin-world' takes no option 'spice'; its options are: num_candidates, flavour" in \
        capsys.readouterr().err


def test_a_declared_user_model_kind_loads_by_prefix(installed):
    from importlib import resources

    from simulators.users.checkpoint import load_user_model, user_model_kinds

    assert "plugin-kind" in user_model_kinds()
    with resources.as_file(resources.files("simulators") / "assets" / "user_model.npz") as path:
        model = load_user_model(f"plugin-kind:{path}", dim=64)
    assert model.num_types == 8


def test_without_the_package_the_names_are_unknown():
    assert "plugin-world" not in worlds.world_names()
    with pytest.raises(ValueError, match="unknown agent 'plugin-agent'"):
        agents.check_agent_spec("plugin-agent")
