"""What every command group shares: the parser with one-line errors, option checks, world and Ray options."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from typing import Any


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem, and where to read more."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_command(sub: Any, name: str, handler: Callable[[argparse.Namespace], int],
                defaults_in_help: bool = True) -> argparse.ArgumentParser:
    """Add subcommand ``name`` run by ``handler``; its help is the handler's docstring.

    argparse %-formats a command's help line (not its description), so a ``%``
    in a docstring's first line (``95% CIs``) is escaped here once, for every
    command.
    """
    doc = (handler.__doc__ or "").strip()
    summary = doc.splitlines()[0] if doc else name
    kwargs: dict[str, Any] = {"help": summary.replace("%", "%%"), "description": doc}
    if defaults_in_help:
        kwargs["formatter_class"] = argparse.ArgumentDefaultsHelpFormatter
    parser = sub.add_parser(name, **kwargs)
    parser.set_defaults(func=handler)
    return parser


def finite_float(text: str) -> float:
    """An argparse type: a finite number (``nan`` and ``inf`` are refused: a run of ``inf`` seconds never ends)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive(**values: int) -> None:
    """Raise a ``ValueError`` naming the first option that is not a positive integer."""
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def outputs(**paths: str | None) -> None:
    """Check output files before the work starts (a folder, an unwritable place)."""
    from simulators.files import check_output_file

    for name, path in paths.items():
        if path:
            check_output_file(path, f"--{name}")


def agent_list(text: str, option: str = "--agents") -> list[str]:
    """Comma-separated agent specs, each checked (``NAME`` or ``NAME:MODEL``) before any work starts."""
    from agents import check_agent_spec

    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        raise ValueError(f"{option} names no agent")
    for name in names:
        check_agent_spec(name)
    return names


def shares(text: str, n: int) -> list[float]:
    """``--mix`` as ``n`` non-negative shares."""
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--mix takes comma-separated numbers, got {text!r}") from None
    if len(values) != n or min(values) < 0 or sum(values) <= 0 or not all(math.isfinite(s) for s in values):
        raise ValueError(f"--mix needs one non-negative share per --data ({n}), got {text!r}")
    return values


def torch_threads(n: int) -> None:
    """Give torch ``n`` CPU threads (one per core is the fastest on small networks)."""
    import torch

    torch.set_num_threads(n)


def blas_one_thread() -> None:
    """Keep BLAS to one thread: the batched core runs small matrices, and 2 cores oversubscribe."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def add_reward_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--reward``: one of the env's rewards, the default first."""
    from pasta_env.rewards import REWARDS

    parser.add_argument("--reward", default=REWARDS[0], choices=REWARDS,
                        help="reward of a turn (see pasta_env.rewards)" + note)


# ------------------------------------------------------------------------------------------- worlds


def add_world_arguments(parser: argparse.ArgumentParser, prompts: bool = True) -> None:
    """``--world``, ``--world-option KEY=VALUE`` (repeatable) and, with ``prompts``, ``--prompts``."""
    parser.add_argument("--world", default="synthetic", help="a registered world (synthetic, clip, or one a "
                                                             "package registers)")
    parser.add_argument("--world-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the world's factory, repeatable: e.g. clip_model=ViT-H-14, "
                             "t2i_model=stabilityai/sdxl-turbo, lmm_model=..., device=cuda")
    if prompts:
        parser.add_argument("--prompts", default=None,
                            help="initial prompts: a text file (one per line) or a CSV/TSV with a Prompt column")


def world_options(pairs: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strings as world options; a value that parses as JSON (numbers, null, true) is taken so.

    Raises:
        ValueError: An item without ``=``.
    """
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--world-option {pair!r}: expected KEY=VALUE, e.g. clip_model=ViT-H-14")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def checked_world_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--world`` and ``--world-option`` arguments checked against the registry; the options."""
    from pasta_env.worlds import check_world_options

    options = world_options(args.world_option)
    check_world_options(args.world, options)
    return options


# ---------------------------------------------------------------------------------------------- Ray


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and the Ray options."""
    from pasta_env.distributed import BACKENDS

    group = parser.add_argument_group("running on Ray (pip install 'pasta-t2i[ray]')")
    group.add_argument("--backend", default="local", choices=BACKENDS,
                       help="local: this process; ray: shards of episodes on Ray workers (same results)")
    group.add_argument("--address", default=None,
                       help="the Ray cluster: auto (the one running here), HOST:PORT, ray://HOST:PORT; "
                            "default: start a local Ray with this machine's cores")
    group.add_argument("--num-workers", type=int, default=None,
                       help="Ray workers (default: as many as the cluster's CPUs, or GPUs, allow)")
    group.add_argument("--gpus-per-worker", type=finite_float, default=0.0,
                       help="GPUs each worker holds; its world loads its models there")
    group.add_argument("--cpus-per-worker", type=finite_float, default=1.0, help="CPUs each worker holds")


def backend(args: argparse.Namespace):
    """The ``RayBackend`` the arguments ask for, or ``None`` (this process)."""
    from pasta_env.distributed import RayBackend

    ray_only = {"--address": args.address is not None, "--num-workers": args.num_workers is not None,
                "--gpus-per-worker": args.gpus_per_worker != 0.0, "--cpus-per-worker": args.cpus_per_worker != 1.0}
    if args.backend == "local":
        given = [k for k, v in ray_only.items() if v]
        if given:
            raise ValueError(f"{given[0]} is for --backend ray; add --backend ray or drop it")
        return None
    from simulators.backends import require

    require("ray", "--backend ray")
    return RayBackend(address=args.address, num_workers=args.num_workers, gpus_per_worker=args.gpus_per_worker,
                      cpus_per_worker=args.cpus_per_worker)


def cpu_count() -> int:
    """This machine's cores (the default of the ``--threads`` options)."""
    return os.cpu_count() or 1


def cli_command() -> list[str]:
    """How to run ``pasta`` in a child process (benchmarks time the command as a whole)."""
    import sys

    return [sys.executable, "-m", "pasta_cli.main"]
