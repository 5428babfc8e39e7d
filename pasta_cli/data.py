"""Commands for trajectory datasets and the world's assets: ``generate``, ``dataset info|verify``, ``build-assets``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pasta_cli.common import (
    Parser,
    add_backend_arguments,
    add_command,
    add_reward_argument,
    add_world_arguments,
    agent_list,
    backend,
    checked_world_options,
    finite_float,
    positive,
)
from simulators.atomic import dumps

#: ``--format`` of the commands that print a report.
FORMATS = ("text", "json")


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate an offline-RL dataset of PastaT2I episodes (Minari HDF5 + Parquet); rerun to resume."""
    from agents import make_agent
    from pasta_env.config import EnvConfig
    from pasta_env.datasets import DatasetSpec, generate

    agent_list(args.policy, "--policy")
    positive(episodes=args.episodes, chunk=args.chunk)
    if args.prompts is not None and not Path(args.prompts).is_file():
        raise ValueError(f"--prompts {args.prompts!r} is not a file")
    options = checked_world_options(args)
    spec = DatasetSpec(episodes=args.episodes, policy=args.policy, seed=args.seed, epsilon=args.epsilon,
                       world=args.world, prompts=args.prompts, config=EnvConfig(reward=args.reward),
                       chunk=args.chunk, precision=args.precision, dataset_id=args.dataset_id,
                       world_options=options)
    manifest = generate(args.out, spec, progress=not args.quiet, overwrite=args.overwrite, make_policy=make_agent,
                        backend=backend(args))
    print_info(dataset_info(args.out))
    if "timings" in manifest:
        print("timings: " + ", ".join(f"{k} {v:.1f}" for k, v in manifest["timings"].items()))
    return 0


def dataset_info(folder: str) -> dict:
    """What :func:`pasta_env.datasets.info` says of ``folder``."""
    from pasta_env.datasets import info

    return info(folder)


def print_info(info: dict) -> None:
    """A dataset's summary in a few lines."""
    if not info["complete"]:
        print(f"{info['folder']}: unfinished ({info['chunks_done']} chunks done, {info['bytes'] / 1e6:.1f} MB); "
              f"{info['hint']}")
        return
    r = info["returns"]
    print(f"{info['folder']}: {info['dataset_id']}, {info['episodes']} episodes ({info['steps']} steps), "
          f"policy {info['policy']}" + (f" with epsilon {info['epsilon']:g}" if info["epsilon"] else "")
          + f", world {info['world']}, seed {info['seed']}, {info['precision']} embeddings")
    print(f"  return {r['mean']:.3f} ± {r['ci95']:.3f} (95% CI; std {r['std']:.3f}, min {r['min']:.3f}, "
          f"max {r['max']:.3f}); per turn " + " ".join(f"{x:.3f}" for x in r["per_turn_mean"]))
    print(f"  {info['bytes'] / 1e6:.1f} MB on disk: " + ", ".join(
        f"{k} {v / 1e6:.1f} MB" for k, v in info["files"].items() if v > 1e5))
    print(f"  made {info['created']} by pasta-t2i {info['code_version']}")


def cmd_dataset_info(args: argparse.Namespace) -> int:
    """Size, episodes, policy, world and returns of a dataset."""
    info = dataset_info(args.folder)
    if args.format == "json":
        print(dumps(info, indent=2))
    else:
        print_info(info)
    return 0


def cmd_dataset_verify(args: argparse.Namespace) -> int:
    """Check a dataset: counts, alignment, checksums, Minari's view, the Parquet export, the world, a replay.

    Exit status 0 when it is sound, 1 when a check fails, 2 on bad input.
    """
    from pasta_env.datasets import verify

    if args.replay < 0:
        raise ValueError(f"--replay must be >= 0, got {args.replay}")
    if not Path(args.folder).is_dir():
        raise ValueError(f"{args.folder!r} is not a folder; give a dataset folder made by `pasta generate`")
    report = verify(args.folder, replay=args.replay, seed=args.seed)
    print(dumps(report.to_dict(), indent=2) if args.format == "json" else report.text())
    return 0 if report.ok else 1


def cmd_build_assets(args: argparse.Namespace) -> int:
    """Rebuild the synthetic world's embedding tables from all-MiniLM-L6-v2 (needs pasta-t2i[build])."""
    from simulators.build_assets import ASSETS, build

    positive(corpus_size=args.corpus_size)
    print(dumps(build(args.corpus_size, args.seed, args.out or ASSETS), indent=2))
    return 0


def register(sub: Any) -> None:
    """Add this group's commands to the ``pasta`` parser's subcommands."""
    gen = add_command(sub, "generate", cmd_generate)
    gen.add_argument("--episodes", type=int, default=30000, help="episodes to generate")
    gen.add_argument("--policy", default="lmm", help="behaviour policy: a registered agent name, or iql:MODEL")
    gen.add_argument("--seed", type=int, default=0, help="episode e uses env seed SEED+e")
    gen.add_argument("--epsilon", type=finite_float, default=0.0,
                     help="probability that a turn's slate is uniformly random instead of the policy's")
    add_reward_argument(gen)
    gen.add_argument("--precision", default="float16", choices=("float16", "float32"),
                     help="how embeddings are stored")
    add_world_arguments(gen)
    gen.add_argument("--chunk", type=int, default=1024,
                     help="episodes per chunk (users simulated at once; with Ray, a shard)")
    gen.add_argument("--dataset-id", default=None,
                     help="Minari dataset id namespace/name-vN (default pasta-t2i/POLICY-v0)")
    gen.add_argument("--out", required=True, help="the dataset folder to write")
    gen.add_argument("--overwrite", action="store_true",
                     help="replace the folder's contents when it holds another run's files")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_arguments(gen)

    ds = sub.add_parser("dataset", help="inspect and check a generated dataset: info, verify",
                        description="Inspect and check a generated dataset.")
    actions = ds.add_subparsers(dest="action", required=True, parser_class=Parser)
    di = add_command(actions, "info", cmd_dataset_info)
    di.add_argument("folder", help="dataset folder")
    di.add_argument("--format", default="text", choices=FORMATS, help="print text or JSON")
    dv = add_command(actions, "verify", cmd_dataset_verify)
    dv.add_argument("folder", help="dataset folder")
    dv.add_argument("--replay", type=int, default=32, help="episodes replayed from their seeds (0: none)")
    dv.add_argument("--seed", type=int, default=0, help="seed of the replay sample")
    dv.add_argument("--format", default="text", choices=FORMATS, help="print the report as text or JSON")

    ba = add_command(sub, "build-assets", cmd_build_assets)
    ba.add_argument("--corpus-size", type=int, default=6000, help="prompts embedded to fit the slot weights")
    ba.add_argument("--seed", type=int, default=0, help="seed of the corpus")
    ba.add_argument("--out", default=None, help="folder to write (default: the package's own assets folder)")
