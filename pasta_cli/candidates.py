"""The candidates a world proposes: ``candidates`` (print them), ``build-candidates`` (a language model's bank)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pasta_cli.common import add_command, add_world_arguments, checked_world_options, finite_float, outputs, positive


def cmd_candidates(args: argparse.Namespace) -> int:
    """Print requests with the candidates of their first turn, by category, for anyone to judge."""
    from benchmarks.candidates import first_turn
    from pasta_env.worlds import build_world, read_prompts
    from simulators.atomic import write_json

    positive(n=args.n)
    outputs(json=args.json)
    options = checked_world_options(args)
    if args.candidates:
        options["candidates"] = args.candidates
    texts = read_prompts(args.prompts) if args.prompts else None
    world = build_world(args.world, texts, 25, options)
    n = min(args.n, len(world.initial_prompts))
    shown = first_turn(world, n, args.seed)
    for request, cats in shown:
        print(f"request: {request}")
        for cat, cands in cats.items():
            print(f"  {cat}:")
            for text in cands:
                print(f"    - {text}")
        print()
    if args.json:
        write_json(args.json, [{"request": r, "candidates": c} for r, c in shown])
        print(f"wrote {args.json}")
    return 0


def cmd_build_candidates(args: argparse.Namespace) -> int:
    """Ask a language model for every request's first-turn candidates; write a bank the synthetic world reads."""
    from tqdm.auto import tqdm

    from pasta_env.worlds import read_prompts
    from simulators.candidates.bank import build_bank
    from simulators.candidates.language_model import LanguageModelCandidateGenerator
    from simulators.text.encoders import LazyStaticTextEncoder, PhraseTable

    positive(per_category=args.per_category)
    if not 1 <= args.per_category <= 5:
        raise ValueError(f"--per-category must be in 1..5 (the synthetic world proposes up to 5), got "
                         f"{args.per_category}")
    outputs(out=args.out)
    texts = read_prompts(args.prompts)
    chat = _chat(args.generator, args.device, args.temperature)
    generator = LanguageModelCandidateGenerator(chat, LazyStaticTextEncoder(PhraseTable.load().dim),
                                                per_category=args.per_category)
    bar = tqdm(total=len(texts), unit="request", desc="asking", disable=args.quiet)

    def step(done: int, total: int) -> None:
        bar.n = done
        bar.refresh()

    try:
        bank = build_bank(texts, generator, args.out, seed=args.seed, progress=step)
    finally:
        bar.close()
    repaired = sum(r["note"] is not None for r in bank["requests"])
    print(f"wrote {args.out}: {len(bank['requests'])} requests, {repaired} replies repaired from the offline "
          f"generator; use it with gym.make('PastaT2I-v0', prompts={str(args.prompts)!r}, "
          f"candidates={str(args.out)!r})")
    return 0


def _chat(spec: str, device: str | None, temperature: float):
    """The chat model a ``--generator`` names: ``transformers:MODEL`` or ``gemini[:MODEL]``."""
    kind, _, model = spec.partition(":")
    if kind == "transformers" and model:
        from simulators.backends import require
        from simulators.candidates.language_model import TransformersChat

        require("transformers", "pasta build-candidates --generator transformers:MODEL")
        if not Path(model).exists() and "/" not in model:
            raise ValueError(f"--generator transformers:{model}: give a hub id (org/name) or a local folder")
        try:
            return TransformersChat(model, device=device, temperature=temperature)
        except OSError as exc:
            raise ValueError(f"--generator transformers:{model}: the model could not be loaded ({exc}); without "
                             "a network, download it first or give the folder it was saved to") from exc
    if kind == "gemini":
        from simulators.candidates.gemini import GeminiChat

        return GeminiChat(model or "gemini-1.5-flash", temperature=temperature)
    raise ValueError(f"--generator {spec!r}: expected transformers:MODEL (a hub id or a local folder) or "
                     "gemini[:MODEL] (needs GEMINI_API_KEY)")


def cmd_bench_candidates(args: argparse.Namespace) -> int:
    """How a world's first-turn candidates treat real requests: rewording, what is kept, stacked styles."""
    from benchmarks import candidates

    positive(limit=args.limit, examples=args.examples)
    if not -1.0 <= args.close <= 1.0:
        raise ValueError(f"--close is a cosine, in -1..1; got {args.close}")
    outputs(json=args.json)
    options = checked_world_options(args)
    candidates.run(args.prompts, args.limit, args.seed, args.close, args.examples, args.json, args.world, options)
    return 0


def register(sub: Any) -> None:
    """Add this group's commands to the ``pasta`` parser's subcommands."""
    ca = add_command(sub, "candidates", cmd_candidates)
    add_world_arguments(ca)
    ca.add_argument("--candidates", default=None, help="a candidate bank made for --prompts (build-candidates)")
    ca.add_argument("--n", type=int, default=3, help="requests to show (the first N)")
    ca.add_argument("--seed", type=int, default=0, help="seed of the turn's draws")
    ca.add_argument("--json", default=None, help="also write them as JSON to this file")

    bc = add_command(sub, "build-candidates", cmd_build_candidates)
    bc.add_argument("--prompts", required=True, help="the requests: a text file (one per line) or a CSV/TSV "
                                                     "with a Prompt column")
    bc.add_argument("--generator", required=True,
                    help="transformers:MODEL (a hub id or local folder, e.g. Qwen/Qwen2.5-1.5B-Instruct) or "
                         "gemini[:MODEL] (GEMINI_API_KEY in the environment)")
    bc.add_argument("--out", required=True, help="the bank file to write (resumed if it exists for these requests)")
    bc.add_argument("--per-category", type=int, default=5, help="candidates per category")
    bc.add_argument("--seed", type=int, default=0, help="request i's reply is sampled with seed SEED+i")
    bc.add_argument("--temperature", type=finite_float, default=0.8, help="sampling temperature")
    bc.add_argument("--device", default=None, help="torch device of a transformers model (default: cuda if any)")
    bc.add_argument("--quiet", action="store_true", help="no progress bar")

    bn = add_command(sub, "bench-candidates", cmd_bench_candidates)
    bn.add_argument("--prompts", required=True, help="the requests to measure on (text file, or CSV/TSV with a "
                                                     "Prompt column)")
    add_world_arguments(bn, prompts=False)
    bn.add_argument("--limit", type=int, default=500, help="requests drawn from the file")
    bn.add_argument("--seed", type=int, default=0, help="seed of the draw and of the turn")
    bn.add_argument("--close", type=finite_float, default=0.8,
                    help="cosine to the request a rephrase must keep (the world's encoder on both texts)")
    bn.add_argument("--examples", type=int, default=3, help="requests whose candidates are kept in the JSON")
    bn.add_argument("--json", default="results/candidates.json", help="write the figures as JSON to this file")
