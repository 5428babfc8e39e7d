"""Commands that compare agents: ``evaluate``, ``validate-world`` and ``demo``."""

from __future__ import annotations

import argparse
from typing import Any, cast

from pasta_cli.common import (
    add_backend_arguments,
    add_command,
    add_reward_argument,
    add_world_arguments,
    agent_list,
    backend,
    checked_world_options,
    outputs,
    positive,
)

DEFAULT_AGENTS = "random,lmm,popular,greedy,bayes,oracle"


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Compare agents on the same users; print a table, write JSON and a plot."""
    from agents.evaluation import evaluate, plot_per_turn
    from simulators.atomic import write_json

    names = agent_list(args.agents)
    positive(episodes=args.episodes, num_envs=args.num_envs)
    outputs(json=args.json, plot=args.plot)
    options = checked_world_options(args)
    result = evaluate(names, episodes=args.episodes, seed=args.seed, prompts=args.prompts,
                      num_envs=args.num_envs, progress=not args.quiet, backend=backend(args), reward=args.reward,
                      world=args.world, world_kwargs=options)
    s = result.settings
    print(f"PastaT2I-v0, world {s['world']}, {s['episodes']} episodes per agent, seed {s['seed']}, "
          f"reward {s['reward']}; mean return with 95% CI, mean reward per turn, choice entropy (nats)\n")
    print(result.table())
    print("\npaired differences (same users):")
    for c in result.comparisons():
        mark = "" if c["significant"] else "  (within CI)"
        print(f"  {c['a']} - {c['b']}: {c['mean_difference']:+.3f} ± {c['ci95']:.3f}{mark}")
    print(f"\n{result.elapsed_s:.1f} s")
    if args.json:
        write_json(args.json, result.to_dict())
        print(f"wrote {args.json}")
    if args.plot:
        plot_per_turn(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_validate_world(args: argparse.Namespace) -> int:
    """Check that a world is a benchmark: agents bracket it, gaps, exploits, the feedback channel, intent.

    Exit status 0 when every check passes, 1 when one fails, 2 on bad input.
    """
    from agents import validity
    from simulators.atomic import write_json

    if args.episodes < 2:
        raise ValueError(f"--episodes must be at least 2 (confidence intervals need two), got {args.episodes}")
    positive(num_envs=args.num_envs)
    outputs(json=args.json)
    options = checked_world_options(args)
    report = validity.run(args.world, args.prompts, args.episodes, args.seed, args.num_envs,
                          progress=not args.quiet, world_kwargs=options, reward=args.reward)
    print(validity.markdown(report))
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0 if report["passed"] else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """Play one episode with an agent and print every turn."""
    import gymnasium as gym

    from agents import make_agent
    from agents.evaluation import public_info
    from pasta_env import PastaT2IEnv

    agent_list(args.agent, "--agent")
    env = gym.make("PastaT2I-v0", render_mode="ansi", expose_user_type=True, prompts=args.prompts)
    base = cast(PastaT2IEnv, env.unwrapped)
    agent = make_agent(args.agent, base.world, base.config, args.seed)
    obs, info = env.reset(seed=args.seed)
    print(f"hidden user type: {info['user_type_name']}")
    print(env.render())
    total, done = 0.0, False
    while not done:
        obs, reward, done, _, info = env.step(agent.act(obs, info if agent.privileged else public_info(info)))
        total += float(reward)
        print(env.render())
    print(f"return {total:.3f}")
    return 0


def register(sub: Any) -> None:
    """Add this group's commands to the ``pasta`` parser's subcommands."""
    ev = add_command(sub, "evaluate", cmd_evaluate)
    ev.add_argument("--agents", default=DEFAULT_AGENTS, help="comma-separated agents: NAME or NAME:MODEL")
    ev.add_argument("--episodes", type=int, default=2000, help="episodes per agent")
    ev.add_argument("--seed", type=int, default=0, help="episode e uses env seed SEED+e")
    add_reward_argument(ev)
    ev.add_argument("--num-envs", type=int, default=1024, help="users simulated at once")
    ev.add_argument("--json", default=None, help="write the results as JSON to this file")
    ev.add_argument("--plot", default=None, help="write per-turn reward curves to this file (PNG, PDF, SVG)")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    add_world_arguments(ev)
    add_backend_arguments(ev)

    vw = add_command(sub, "validate-world", cmd_validate_world)
    vw.add_argument("--episodes", type=int, default=2000, help="episodes per agent")
    vw.add_argument("--seed", type=int, default=0, help="episode e uses env seed SEED+e")
    vw.add_argument("--num-envs", type=int, default=1024, help="users simulated at once")
    add_reward_argument(vw, "; the deterministic ones are expected to fail the report")
    vw.add_argument("--json", default=None, help="write the report as JSON to this file")
    vw.add_argument("--quiet", action="store_true", help="no progress bar")
    add_world_arguments(vw)

    demo = add_command(sub, "demo", cmd_demo)
    demo.add_argument("--agent", default="bayes", help="agent name")
    demo.add_argument("--seed", type=int, default=0, help="episode seed")
    demo.add_argument("--prompts", default=None, help="initial prompts file")
