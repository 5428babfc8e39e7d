"""People in the loop: ``serve`` (the rating app) and ``human-eval-report``."""

from __future__ import annotations

import argparse
from typing import Any

from pasta_cli.common import (
    add_command,
    add_world_arguments,
    agent_list,
    checked_world_options,
    finite_float,
    outputs,
)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the rating app: raters play sessions with an agent; every turn is recorded to --data."""
    from pasta_app.server import serve
    from pasta_env.worlds import read_prompts
    from simulators.backends import require

    require("fastapi", "pasta serve")
    require("uvicorn", "pasta serve")
    options = checked_world_options(args)
    agents = agent_list(args.agents or args.agent)  # before the data folder is made
    if args.raters < 0 or not 1 <= args.port <= 65535 or not 1 <= args.horizon <= 20 or not args.rate > 0:
        raise ValueError("--raters must be >= 0, --port in 1..65535, --horizon in 1..20 and --rate > 0")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.public:
        raise ValueError(f"--host {args.host} opens the app beyond this machine; add --public if you mean it")
    prompts = read_prompts(args.prompts) if args.prompts else None
    serve(args.data, agents, args.world, options, args.host, args.port, prompts, args.raters, args.horizon,
          args.rate, args.seed)
    return 0


def cmd_human_eval_report(args: argparse.Namespace) -> int:
    """The human evaluation: Better / Same / Worse per agent and turn, 95% CIs, paired differences."""
    from pasta_app import report as human
    from simulators.atomic import write_json

    outputs(json=args.json, plot=args.plot)
    rep = human.report(args.folder)
    print(human.markdown(rep))
    if args.json:
        write_json(args.json, rep)
        print(f"wrote {args.json}")
    if args.plot:
        human.plot(rep, args.plot)
        print(f"wrote {args.plot}")
    return 0


def register(sub: Any) -> None:
    """Add this group's commands to the ``pasta`` parser's subcommands."""
    sv = add_command(sub, "serve", cmd_serve)
    sv.add_argument("--data", required=True, help="folder the records go to (and the tokens live in)")
    add_world_arguments(sv, prompts=False)
    sv.add_argument("--agent", default="bayes", help="the agent that proposes slates: NAME or NAME:MODEL")
    sv.add_argument("--agents", default=None,
                    help="several agents, comma-separated, for a blind comparison: one per session at random")
    sv.add_argument("--prompts", default=None, help="requests to offer raters (one pre-filled at random)")
    sv.add_argument("--raters", type=int, default=0,
                    help="make this many rater invite links (printed once; only their hashes are kept)")
    sv.add_argument("--horizon", type=int, default=5, help="turns per session")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (loopback unless --public)")
    sv.add_argument("--public", action="store_true", help="allow binding beyond loopback")
    sv.add_argument("--port", type=int, default=8000, help="port to listen on")
    sv.add_argument("--seed", type=int, default=None,
                    help="seed the agent assignment and the episode seeds (a reproducible study; default: random)")
    sv.add_argument("--rate", type=finite_float, default=20.0,
                    help="requests per second allowed per rater (bursts of twice that); more get 429")

    he = add_command(sub, "human-eval-report", cmd_human_eval_report)
    he.add_argument("folder", help="the --data folder of `pasta serve`")
    he.add_argument("--json", default=None, help="write the report as JSON to this file")
    he.add_argument("--plot", default=None, help="write the Better/Same/Worse bars to this file (PNG, PDF, SVG)")
