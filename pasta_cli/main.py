"""The ``pasta`` command: evaluate agents, play a demo episode, run benchmarks.

Examples::

    pasta evaluate --agents random,lmm,greedy,oracle --episodes 2000 --seed 0 \\
        --json results/eval.json --plot results/eval.png
    pasta demo --seed 3 --agent greedy
    pasta bench
"""

from __future__ import annotations

import argparse
import sys

DEFAULT_AGENTS = "random,random-diverse,lmm,greedy,oracle"


def _threads() -> None:
    """Keep BLAS to one thread: the batched core runs small matrices, and 2 cores oversubscribe."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - optional
        pass


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Compare agents on the same users; print a table, write JSON and a plot."""
    from agents import AGENTS
    from agents.evaluation import evaluate, plot_per_turn
    from simulators.atomic import write_json

    names = [a.strip() for a in args.agents.split(",") if a.strip()]
    unknown = [n for n in names if n not in AGENTS]
    if unknown:
        print(f"pasta evaluate: unknown agent {unknown[0]!r}; known agents: {', '.join(sorted(AGENTS))}",
              file=sys.stderr)
        return 2
    result = evaluate(names, episodes=args.episodes, seed=args.seed, prompts=args.prompts,
                      num_envs=args.num_envs, progress=not args.quiet, reward=args.reward)
    s = result.settings
    print(f"PastaT2I-v0, world {s['world']}, {s['episodes']} episodes per agent, seed {s['seed']}, "
          f"reward {s['reward']}; mean return with 95% CI, mean utility per turn, choice entropy (nats)\n")
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


def cmd_demo(args: argparse.Namespace) -> int:
    """Play one episode with an agent and print every turn."""
    import gymnasium as gym

    import pasta_env  # noqa: F401
    from agents import make_agent

    env = gym.make("PastaT2I-v0", render_mode="ansi", expose_user_type=True, prompts=args.prompts)
    agent = make_agent(args.agent, env.unwrapped.world, env.unwrapped.config, args.seed)
    obs, info = env.reset(seed=args.seed)
    print(f"hidden user type: {info['user_type_name']}")
    print(env.render())
    total, done = 0.0, False
    while not done:
        obs, reward, done, _, info = env.step(agent.act(obs, info))
        total += reward
        print(env.render())
    print(f"return {total:.3f}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the throughput benchmark."""
    from benchmarks import throughput

    throughput.main(["--steps", str(args.steps), "--json", args.json])
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pasta``."""
    parser = argparse.ArgumentParser(prog="pasta", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help=cmd_evaluate.__doc__)
    ev.add_argument("--agents", default=DEFAULT_AGENTS, help=f"comma-separated (default {DEFAULT_AGENTS})")
    ev.add_argument("--episodes", type=int, default=2000, help="episodes per agent (default 2000)")
    ev.add_argument("--seed", type=int, default=0, help="episode e uses env seed SEED+e (default 0)")
    ev.add_argument("--prompts", default=None,
                    help="initial prompts: a text file (one per line) or a CSV/TSV with a Prompt column")
    ev.add_argument("--reward", default="chosen", choices=("chosen", "expected"))
    ev.add_argument("--num-envs", type=int, default=1024, help="users simulated at once (default 1024)")
    ev.add_argument("--json", default=None, help="write the results as JSON here")
    ev.add_argument("--plot", default=None, help="write per-turn utility curves here (PNG, PDF, SVG)")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=cmd_evaluate)

    demo = sub.add_parser("demo", help=cmd_demo.__doc__)
    demo.add_argument("--agent", default="greedy")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--prompts", default=None)
    demo.set_defaults(func=cmd_demo)

    bench = sub.add_parser("bench", help=cmd_bench.__doc__)
    bench.add_argument("--steps", type=int, default=20000)
    bench.add_argument("--json", default="results/throughput.json")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pasta`` console script."""
    args = build_parser().parse_args(argv)
    _threads()
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"pasta {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
