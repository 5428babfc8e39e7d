"""PASTA's agent on the command line: ``train-iql``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pasta_cli.common import add_command, cpu_count, finite_float, positive, shares, torch_threads


def cmd_train_iql(args: argparse.Namespace) -> int:
    """Train PASTA's agent (IQL on d3rlpy, decomposed slate value) on datasets; rerun to resume."""
    from agents.offline.iql import IQLSettings, train_iql

    mix = shares(args.mix, len(args.data)) if args.mix else None
    positive(steps=args.steps, batch_size=args.batch_size, eval_episodes=args.eval_episodes, threads=args.threads)
    if args.belief_types < 0:
        raise ValueError(f"--belief-types must be >= 0, got {args.belief_types}")
    if args.belief_loss < 0 or args.belief_lr <= 0:
        raise ValueError(f"--belief-loss must be >= 0 and --belief-lr positive, got {args.belief_loss} and "
                         f"{args.belief_lr}")
    if args.critic == "mixture" and not (args.belief_types or args.user_model):
        raise ValueError("--critic mixture needs a belief over user types: give --user-model MODEL (fitted to the "
                         "data by `pasta train-user-model --data`) or --belief-types K (learned from scratch; add "
                         "--belief-loss 1 --belief-lr 0.03)")
    if args.user_model is not None and not Path(args.user_model).is_file():
        raise ValueError(f"--user-model {args.user_model!r} is not a file; fit one to the training data with `pasta "
                         "train-user-model --data DATASET --out MODEL.npz`")
    torch_threads(args.threads)
    settings = IQLSettings(steps=args.steps, batch_size=args.batch_size, expectile=args.expectile,
                           gamma=args.gamma, hidden=args.hidden, critic_lr=args.lr, eval_every=args.eval_every,
                           eval_episodes=args.eval_episodes, seed=args.seed, compile_graph=args.compile,
                           critic=args.critic, belief_types=args.belief_types, user_model=args.user_model,
                           one_per_category=not args.any_category, train_actor=args.train_actor,
                           belief_loss=args.belief_loss, belief_lr=args.belief_lr)
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
    ti.add_argument("--critic", choices=("mean", "mixture"), default=iql.critic,
                    help="slate critic: mean (PASTA's decomposed value, mean of per-prompt values) or mixture "
                         "(the belief-weighted inclusive value of the slate; needs a belief)")
    ti.add_argument("--belief-types", type=int, default=iql.belief_types,
                    help="latent user types of the history encoder's belief (0: none; default: the --user-model's)")
    ti.add_argument("--user-model", default=None,
                    help="start the belief from this user-model checkpoint (fit it to the same data with `pasta "
                         "train-user-model --data DATASET`)")
    ti.add_argument("--belief-loss", type=finite_float, default=iql.belief_loss,
                    help="weight of the belief's own loss (minus the log-likelihood of the batch histories' choices "
                         "and rewards); 0: the belief learns from the TD loss alone")
    ti.add_argument("--belief-lr", type=finite_float, default=iql.belief_lr,
                    help="learning rate of the belief's user model")
    ti.add_argument("--any-category", action="store_true",
                    help="act with the critic's best slate over all of them, not one prompt per category (PASTA's "
                         "rule)")
    ti.add_argument("--train-actor", action="store_true",
                    help="also train IQL's actor each step as d3rlpy does (the agent never uses it)")
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
