"""PASTA's agent on the command line: ``train-iql``."""

from __future__ import annotations

import argparse
from typing import Any

from pasta_cli.common import add_command, cpu_count, finite_float, positive, shares, torch_threads


def cmd_train_iql(args: argparse.Namespace) -> int:
    """Train PASTA's agent (IQL on d3rlpy, decomposed slate value) on datasets; rerun to resume."""
    from agents.offline.iql import IQLSettings, train_iql

    mix = shares(args.mix, len(args.data)) if args.mix else None
    positive(steps=args.steps, batch_size=args.batch_size, eval_episodes=args.eval_episodes, threads=args.threads)
    torch_threads(args.threads)
    settings = IQLSettings(steps=args.steps, batch_size=args.batch_size, expectile=args.expectile,
                           gamma=args.gamma, hidden=args.hidden, critic_lr=args.lr, eval_every=args.eval_every,
                           eval_episodes=args.eval_episodes, seed=args.seed, compile_graph=args.compile)
    history = train_iql(args.data, args.out, settings, mix=mix, device=args.device, progress=not args.quiet,
                        overwrite=args.overwrite, check_data=not args.no_check_data)
    last = history["evaluations"][-1]
    print(f"{args.out}: {history['step']} gradient steps, return {last['return_mean']:.3f} ± "
          f"{last['return_ci95']:.3f} on {args.eval_episodes} users; "
          f"{history['steps_per_second']:.1f} steps/s (evaluations included)" if history["steps_per_second"]
          else f"{args.out}: already trained")
    print(f"learning curves: {args.out}/curves.png; compare: pasta evaluate --agents iql:{args.out},bayes,lmm,random")
    return 0


def register(sub: Any) -> None:
    """Add this group's commands to the ``pasta`` parser's subcommands."""
    from agents.offline.settings import IQLSettings  # a plain dataclass: no torch, no d3rlpy

    iql = IQLSettings()
    ti = add_command(sub, "train-iql", cmd_train_iql)
    ti.add_argument("--data", action="append", required=True, help="a dataset folder (repeat for a mix)")
    ti.add_argument("--mix", default=None, help="share of each --data in a batch, e.g. 0.5,0.5 (default: equal)")
    ti.add_argument("--steps", type=int, default=iql.steps, help="gradient steps")
    ti.add_argument("--batch-size", type=int, default=iql.batch_size, help="transitions per gradient step")
    ti.add_argument("--expectile", type=finite_float, default=iql.expectile,
                    help="IQL's expectile of the value function")
    ti.add_argument("--gamma", type=finite_float, default=iql.gamma, help="discount (1: the episode return)")
    ti.add_argument("--hidden", type=int, default=iql.hidden, help="width of the networks' hidden layers")
    ti.add_argument("--lr", type=finite_float, default=iql.critic_lr, help="critic learning rate (Adam)")
    ti.add_argument("--eval-every", type=int, default=iql.eval_every, help="evaluate and save progress every N steps")
    ti.add_argument("--eval-episodes", type=int, default=iql.eval_episodes, help="users per evaluation")
    ti.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1...")
    ti.add_argument("--threads", type=int, default=cpu_count(), help="torch CPU threads (one per core)")
    ti.add_argument("--compile", action="store_true", help="d3rlpy's compile_graph (torch.compile; GPU)")
    ti.add_argument("--seed", type=int, default=iql.seed, help="seed of initialisation and batches")
    ti.add_argument("--out", required=True, help="the model folder to write")
    ti.add_argument("--overwrite", action="store_true",
                    help="replace --out when it holds a model another run (other data or settings) wrote")
    ti.add_argument("--no-check-data", action="store_true",
                    help="skip checking the datasets' arrays against their manifests' SHA-256 (saves seconds)")
    ti.add_argument("--quiet", action="store_true", help="no progress bar")
