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
    """Serve the rating app (``pasta serve``), or make rater invites (``pasta serve invite --raters N``)."""
    from simulators.backends import require

    if args.action == "invite":
        return _invite(args)
    require("fastapi", "pasta serve")
    require("uvicorn", "pasta serve")
    if args.raters is not None:
        raise ValueError(f"the server does not make raters; invite them first with `pasta serve invite --data "
                         f"{args.data} --raters {args.raters}` (or from the admin page), then run `pasta serve` "
                         "without --raters")
    from pasta_app.server import serve
    from pasta_env.worlds import read_prompts

    options = checked_world_options(args)
    agents = agent_list(args.agents or args.agent)  # before the data folder is made
    if not 1 <= args.port <= 65535 or not 1 <= args.horizon <= 20 or not args.rate > 0:
        raise ValueError("--port must be in 1..65535, --horizon in 1..20 and --rate > 0")
    if min(args.max_open, args.max_sessions_per_rater) < 1 or not args.expire_hours > 0:
        raise ValueError("--max-open and --max-sessions-per-rater must be >= 1 and --expire-hours > 0")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.public:
        raise ValueError(f"--host {args.host} opens the app beyond this machine; add --public if you mean it")
    prompts = read_prompts(args.prompts) if args.prompts else None
    limits = {"max_open": args.max_open, "max_per_rater": args.max_sessions_per_rater,
              "expire_hours": args.expire_hours}
    serve(args.data, agents, args.world, options, args.host, args.port, prompts, args.horizon, args.rate,
          args.seed, limits)
    return 0


def _invite(args: argparse.Namespace) -> int:
    """``pasta serve invite``: new rater invites, their links printed once (and the admin's)."""
    from pasta_app.server import invite

    if args.raters is None or not 0 <= args.raters <= 10000:
        raise ValueError("give the number of invites to make: pasta serve invite --data DIR --raters N "
                         "(0 to 10000; 0 prints the admin's link)")
    if args.out:
        from pathlib import Path

        if Path(args.out).exists():
            raise ValueError(f"--out {args.out} exists and may hold links that cannot be made again; "
                             "give a new file name")
        outputs(out=args.out)
    url = args.url or f"http://{args.host if ':' not in args.host else f'[{args.host}]'}:{args.port}"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--url must start with http:// or https://, got {url!r}")
    invite(args.data, args.raters, url, args.out)
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
    sv.add_argument("action", nargs="?", choices=("run", "invite"), default="run",
                    help="run (the default): serve the app; invite: make --raters N invite links and exit")
    sv.add_argument("--data", required=True, help="folder the records go to (and the tokens live in)")
    add_world_arguments(sv, prompts=False)
    sv.add_argument("--agent", default="bayes", help="the agent that proposes slates: NAME or NAME:MODEL")
    sv.add_argument("--agents", default=None,
                    help="several agents, comma-separated, for a blind comparison: one per session at random")
    sv.add_argument("--prompts", default=None, help="requests to offer raters (one pre-filled at random)")
    sv.add_argument("--raters", type=int, default=None,
                    help="with invite: make this many rater invite links (printed once; only their hashes are kept)")
    sv.add_argument("--url", default=None,
                    help="with invite: the address raters reach the app at (default: http://HOST:PORT)")
    sv.add_argument("--out", default=None, help="with invite: also write the new links as CSV to this file")
    sv.add_argument("--horizon", type=int, default=5, help="turns per session")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (loopback unless --public)")
    sv.add_argument("--public", action="store_true", help="allow binding beyond loopback")
    sv.add_argument("--port", type=int, default=8000, help="port to listen on")
    sv.add_argument("--seed", type=int, default=None,
                    help="seed the agent assignment and the episode seeds (a reproducible study; default: random)")
    sv.add_argument("--max-open", type=int, default=1000, help="open sessions the server holds at most")
    sv.add_argument("--max-sessions-per-rater", type=int, default=100,
                    help="sessions a rater may start in all (a rater has one open session per agent at most)")
    sv.add_argument("--expire-hours", type=finite_float, default=24.0,
                    help="an open session with no choice for this many hours expires")
    sv.add_argument("--rate", type=finite_float, default=20.0,
                    help="requests per second allowed per rater (bursts of twice that); more get 429")

    he = add_command(sub, "human-eval-report", cmd_human_eval_report)
    he.add_argument("folder", help="the --data folder of `pasta serve`")
    he.add_argument("--json", default=None, help="write the report as JSON to this file")
    he.add_argument("--plot", default=None, help="write the Better/Same/Worse bars to this file (PNG, PDF, SVG)")
