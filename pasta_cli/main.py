"""The ``pasta`` command: assembles the command groups and runs one command with one-line errors.

Examples::

    pasta evaluate --agents random,lmm,greedy,oracle --episodes 2000 --seed 0 \\
        --json results/eval.json --plot results/eval.png
    pasta validate-world --episodes 2000 --seed 0 --json results/validity.json
    pasta demo --seed 3 --agent bayes
    pasta generate --episodes 30000 --policy lmm --seed 0 --out data/lmm
    pasta dataset verify data/lmm
    pasta bench

Each group (:mod:`pasta_cli.evaluate`, :mod:`pasta_cli.data`,
:mod:`pasta_cli.candidates`, :mod:`pasta_cli.user_model`, :mod:`pasta_cli.iql`, :mod:`pasta_cli.serve`,
:mod:`pasta_cli.bench`) defines its parsers next to its handlers; this
module only puts them together.
"""

from __future__ import annotations

import argparse
import sys

#: The command groups (modules of this package), in the order ``pasta --help`` lists their commands.
GROUPS = ("evaluate", "data", "candidates", "user_model", "iql", "serve", "bench")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pasta``."""
    import importlib

    from pasta_cli.common import Parser

    parser = Parser(prog="pasta", description="pasta-t2i: evaluate slate policies, check worlds, generate and "
                    "verify datasets, train user simulators and PASTA's agent, run the rating app and benchmarks.")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for group in GROUPS:
        importlib.import_module(f"pasta_cli.{group}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pasta`` console script.

    Every failure prints one line naming the problem and returns 2 (130 on
    Ctrl-C, also while the libraries load); ``pasta --debug ...`` shows the
    traceback instead.
    """
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    command = "pasta"
    try:
        args = build_parser().parse_args(argv)
        command = f"pasta {args.command}"
        from pasta_cli.common import blas_one_thread

        blas_one_thread()
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{command}: interrupted; rerun the same command to continue where it can", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; --debug shows the traceback
        if debug:
            raise
        print(f"{command}: {error_line(exc)}", file=sys.stderr)
        return 2


def error_line(exc: BaseException) -> str:
    """One line that names the problem: the exception's first line (and the file an OS error is about)."""
    from simulators.errors import PastaError

    expected = isinstance(exc, (PastaError, ValueError, OSError, ImportError))
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{exc.filename}: {text}"
    if not expected:
        text = f"unexpected {type(exc).__name__}: {text} (rerun with pasta --debug for the traceback)"
    return text


if __name__ == "__main__":
    sys.exit(main())
