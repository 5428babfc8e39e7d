"""Measurements: ``bench`` (speed of the env), ``bench-iql``, ``bench-iql-speed``, ``bench-dataset``,
``bench-ray``, ``bench-serve``, ``bench-clip-turn`` and ``bench-user-model``; each prints tables and writes JSON."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pasta_cli.common import (
    add_command,
    agent_list,
    cli_command,
    cpu_count,
    finite_float,
    outputs,
    positive,
    torch_threads,
)

DEFAULT_BENCH_JSON = "results/throughput.json"


def cmd_bench(args: argparse.Namespace) -> int:
    """Speed of the env: single env beside SARDINE, the vector env's scaling, start-up, memory, the main job."""
    positive(runs=args.runs)
    if args.device is not None:
        return _bench_device(args)
    if args.sizes is not None or args.agreement_users is not None:
        raise ValueError("--sizes and --agreement-users measure the torch backend: give --device too "
                         "(e.g. --device cuda)")
    from benchmarks import throughput

    if not args.seconds > 0 or args.evaluate_episodes < 0 or args.profile < 0:
        raise ValueError("--seconds must be positive and --evaluate-episodes, --profile at least 0; got "
                         f"{args.seconds}, {args.evaluate_episodes}, {args.profile}")
    outputs(json=args.json)
    throughput.run(args.seconds, args.runs, sardine=args.sardine, json_path=args.json,
                   with_startup=not args.no_startup, evaluate_episodes=args.evaluate_episodes,
                   profile_top=args.profile, cli=cli_command())
    return 0


def _bench_device(args: argparse.Namespace) -> int:
    """``pasta bench --device D``: the synthetic world's torch backend on D."""
    from benchmarks import device_throughput
    from simulators.backends import check_torch_device

    check_torch_device(args.device)
    sizes = None
    if args.sizes is not None:
        try:
            sizes = tuple(int(s.replace("_", "")) for s in args.sizes.split(","))
        except ValueError:
            raise ValueError(f"--sizes takes comma-separated user counts, e.g. 1000,100000; got {args.sizes!r}") \
                from None
        if not sizes or min(sizes) < 1:
            raise ValueError(f"--sizes takes positive user counts, got {args.sizes!r}")
    users = 100_000 if args.agreement_users is None else args.agreement_users
    if not args.seconds > 0 or users < 0:
        raise ValueError(f"--seconds must be positive and --agreement-users at least 0; got {args.seconds}, {users}")
    json_path = args.json if args.json != DEFAULT_BENCH_JSON else f"results/throughput_{args.device.split(':')[0]}.json"
    outputs(json=json_path)
    torch_threads(cpu_count())
    device_throughput.run(args.device, sizes, args.seconds, args.runs, users, json_path, cli=cli_command())
    return 0


def cmd_bench_iql(args: argparse.Namespace) -> int:
    """PASTA's agent against the baselines: IQL variants on behaviour data, and bayes on a user model fitted to it."""
    from benchmarks import iql
    from simulators.backends import check_torch_device

    check_torch_device(args.device)
    runs = iql.parse_runs(args.runs)
    if args.prompts is not None and not Path(args.prompts).is_file():
        raise ValueError(f"--prompts {args.prompts!r} is not a file (one prompt per line, or a CSV/TSV with a Prompt "
                         "column)")
    positive(episodes=args.episodes, steps=args.steps, eval_episodes=args.eval_episodes, threads=args.threads)
    torch_threads(args.threads)
    iql.run(args.out, args.episodes, args.steps, args.eval_episodes, args.eval_seed, runs, args.hidden,
            args.batch_size, args.device, progress=not args.quiet, prompts=args.prompts)
    return 0


def cmd_bench_iql_speed(args: argparse.Namespace) -> int:
    """Gradient steps/s of IQL's update (d3rlpy's and the trainer's), by critic and batch size, with a profile."""
    from benchmarks import iql_speed
    from simulators.backends import check_torch_device

    check_torch_device(args.device)
    positive(steps=args.steps, threads=args.threads)
    outputs(json=args.json)
    if args.data is not None:
        from pasta_env.datasets import read_manifest

        read_manifest(args.data)  # a clear error for a folder that is not a dataset, before any work
    torch_threads(args.threads)
    iql_speed.run(args.data, args.device, args.steps, json_path=args.json, progress=not args.quiet)
    return 0


def cmd_bench_dataset(args: argparse.Namespace) -> int:
    """Dataset generation: wall time, peak memory, size, verify, and what float16 storage costs."""
    from benchmarks import datasets

    agent_list(args.policy, "--policy")
    positive(episodes=args.episodes)
    if args.precision_episodes < 0:
        raise ValueError(f"--precision-episodes must be >= 0, got {args.precision_episodes}")
    outputs(json=args.json)
    datasets.run(args.episodes, args.policy, args.seed, args.precision_episodes, args.json, args.out,
                 cli=cli_command())
    return 0


def cmd_bench_ray(args: argparse.Namespace) -> int:
    """Generation on Ray: start-up, 1 vs 2 workers, and a projection of 30,000 clip trajectories to GPUs."""
    from benchmarks import ray_scaling

    positive(episodes=args.episodes, chunk=args.chunk, clip_chunk=args.clip_chunk)
    try:
        workers = tuple(int(w) for w in args.workers.split(","))
    except ValueError:
        raise ValueError(f"--workers takes comma-separated integers, got {args.workers!r}") from None
    if not workers or min(workers) < 1 or args.clip_episodes < 0 or (args.turn_s is not None and args.turn_s <= 0):
        raise ValueError("--workers must list positive counts, --clip-episodes be >= 0 and --turn-s > 0")
    outputs(json=args.json)
    ray_scaling.run(args.episodes, args.chunk, args.clip_episodes, args.clip_chunk, workers, args.clip_turn,
                    args.turn_s, args.json)
    return 0


def cmd_bench_serve(args: argparse.Namespace) -> int:
    """The rating app: simulated raters through the report (ranking vs evaluate), and concurrent load."""
    from benchmarks import simulated_raters

    agents = agent_list(args.agents)
    positive(raters=args.raters, sessions=args.sessions, concurrent=args.concurrent, abandoned=args.abandoned)
    if not args.seconds > 0:
        raise ValueError(f"--seconds must be positive, got {args.seconds}")
    outputs(json=args.json)
    simulated_raters.run(agents, args.raters, args.sessions, args.concurrent, args.seconds, args.seed, args.json,
                         args.abandoned, cli=cli_command())
    return 0


def cmd_bench_clip_turn(args: argparse.Namespace) -> int:
    """One clip-world turn stage by stage on the real architectures at random initialisation (a GPU's job)."""
    from benchmarks import clip_turn
    from simulators.atomic import write_json
    from simulators.backends import check_torch_device

    positive(size=args.size, images=args.images, repeats=args.repeats)
    check_torch_device(args.device)
    if not args.steps or min(args.steps) < 1:
        raise ValueError("--steps takes positive step counts, e.g. --steps 1 4")
    outputs(json=args.json)
    result = clip_turn.run(args.device, tuple(args.steps), args.size, images=args.images, dtype=args.dtype,
                           tiny=args.tiny, tiny_vae=args.tiny_vae, compile=args.compile, repeats=args.repeats,
                           load=args.load)
    print(clip_turn.markdown(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def cmd_bench_user_model(args: argparse.Namespace) -> int:
    """Does EM recover the planted user types? Accuracy, ARI and training time against the planted model."""
    from benchmarks import user_model

    positive(epochs=args.epochs)
    outputs(json=args.json)
    torch_threads(1)
    user_model.run(args.data, args.epochs, args.json)
    return 0


def _add_bench(sub: Any) -> None:
    """``pasta bench``."""
    bench = add_command(sub, "bench", cmd_bench)
    bench.add_argument("--seconds", type=finite_float, default=3.0, help="length of one timed run")
    bench.add_argument("--runs", type=int, default=3, help="runs per figure (the median is reported)")
    bench.add_argument("--sardine", metavar="PATH", default=None,
                       help="a local checkout of github.com/naver/sardine: its SlateTopK env is measured beside "
                            "the single env, run for run")
    bench.add_argument("--no-startup", action="store_true", help="skip the start-up timings")
    bench.add_argument("--evaluate-episodes", type=int, default=2000,
                       help="episodes of the timed `pasta evaluate` main job (0 skips it)")
    bench.add_argument("--profile", type=int, default=0, metavar="N",
                       help="list the N functions that took the most time (single env and 1024 envs)")
    bench.add_argument("--device", default=None,
                       help="measure the synthetic world's torch backend on this torch device (cuda, cuda:N, cpu): "
                            "env-steps/s against the number of users, memory, agreement with the numba path")
    bench.add_argument("--sizes", default=None, metavar="N,N,...",
                       help="with --device: numbers of users (default 1000,10000,100000,1000000 on a GPU, "
                            "1024,16384 on a CPU)")
    bench.add_argument("--agreement-users", type=int, default=None, metavar="N",
                       help="with --device: users per backend in the agreement check against numba (default "
                            "100000; 0 skips it)")
    bench.add_argument("--json", default=DEFAULT_BENCH_JSON,
                       help="write the figures as JSON to this file (with --device: results/throughput_DEVICE.json)")


def _add_bench_iql(sub: Any) -> None:
    """``pasta bench-iql``."""
    from agents.offline.settings import IQLSettings  # a plain dataclass: no torch, no d3rlpy
    from benchmarks import iql as iql_bench  # tables of names: no torch, no d3rlpy

    iql = IQLSettings()
    bi = add_command(sub, "bench-iql", cmd_bench_iql)
    bi.add_argument("--out", default="results/iql", help="folder for datasets, models, tables and plots")
    bi.add_argument("--episodes", type=int, default=30000, help="episodes per behaviour dataset")
    bi.add_argument("--steps", type=int, default=iql.steps, help="gradient steps per model")
    bi.add_argument("--runs", default=",".join(iql_bench.DEFAULT_RUNS),
                    help="models to train, RECIPE/VARIANT,... (recipes: " + ", ".join(iql_bench.RECIPES)
                         + "; variants: " + ", ".join(iql_bench.VARIANTS) + ")")
    bi.add_argument("--prompts", default=None,
                    help="also evaluate every agent on users with the initial prompts of this file")
    bi.add_argument("--hidden", type=int, default=iql.hidden, help="width of the networks' hidden layers")
    bi.add_argument("--batch-size", type=int, default=iql.batch_size, help="transitions per gradient step")
    bi.add_argument("--eval-episodes", type=int, default=2000, help="users per agent in the final comparison")
    bi.add_argument("--eval-seed", type=int, default=1_000_000, help="first env seed of the final comparison")
    bi.add_argument("--device", default="cpu", help="torch device")
    bi.add_argument("--threads", type=int, default=cpu_count(), help="torch CPU threads")
    bi.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_bench_dataset(sub: Any) -> None:
    """``pasta bench-dataset``."""
    bd = add_command(sub, "bench-dataset", cmd_bench_dataset)
    bd.add_argument("--episodes", type=int, default=30000, help="episodes in the dataset")
    bd.add_argument("--policy", default="lmm", help="behaviour policy")
    bd.add_argument("--seed", type=int, default=0, help="generation seed")
    bd.add_argument("--precision-episodes", type=int, default=2000,
                    help="paired episodes per agent for the float16 measurement (0: skip)")
    bd.add_argument("--out", default=None, help="keep the dataset in this folder (default: a temporary one)")
    bd.add_argument("--json", default="results/datasets.json", help="write the figures as JSON to this file")


def _add_bench_ray(sub: Any) -> None:
    """``pasta bench-ray``."""
    br = add_command(sub, "bench-ray", cmd_bench_ray)
    br.add_argument("--episodes", type=int, default=20000, help="synthetic-world episodes per run")
    br.add_argument("--chunk", type=int, default=1024, help="episodes per shard in the synthetic world")
    br.add_argument("--clip-episodes", type=int, default=48,
                    help="clip-world episodes per run, on tiny models (0 skips the clip world)")
    br.add_argument("--clip-chunk", type=int, default=8, help="episodes per shard in the clip world")
    br.add_argument("--workers", default="1,2", help="Ray worker counts to measure")
    br.add_argument("--clip-turn", action="append", default=None, metavar="JSON",
                    help="per-turn GPU costs written by `pasta bench-clip-turn` (default: the shipped H100 figures)")
    br.add_argument("--turn-s", type=finite_float, default=None,
                    help="project from this many seconds per user-turn instead (e.g. 0.3)")
    br.add_argument("--json", default="results/ray_scaling.json", help="write the figures as JSON to this file")


def _add_bench_serve(sub: Any) -> None:
    """``pasta bench-serve``."""
    bs = add_command(sub, "bench-serve", cmd_bench_serve)
    bs.add_argument("--agents", default="bayes,lmm,random", help="agents compared blind")
    bs.add_argument("--raters", type=int, default=16, help="simulated raters of the pipeline run")
    bs.add_argument("--sessions", type=int, default=9, help="sessions per simulated rater")
    bs.add_argument("--concurrent", type=int, default=50, help="raters at once in the load run")
    bs.add_argument("--seconds", type=finite_float, default=20.0, help="length of the load run")
    bs.add_argument("--seed", type=int, default=0, help="seed of the assignment, the users and their types")
    bs.add_argument("--abandoned", type=int, default=300,
                    help="unfinished sessions in the folder of the restart run")
    bs.add_argument("--json", default="results/serve.json", help="write the figures as JSON to this file")


def _add_bench_clip_turn(sub: Any) -> None:
    """``pasta bench-clip-turn``."""
    bc = add_command(sub, "bench-clip-turn", cmd_bench_clip_turn)
    bc.add_argument("--device", default="cuda", help="torch device")
    bc.add_argument("--steps", type=int, nargs="+", default=[1, 4], help="denoising steps to time")
    bc.add_argument("--size", type=int, default=512, help="image height and width in pixels")
    bc.add_argument("--images", type=int, default=16,
                    help="images per batch (16: one user's turn; 64: four users' turns at once)")
    bc.add_argument("--load", action="store_true", help="also time loading the weights from safetensors files")
    bc.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"), help="model dtype")
    bc.add_argument("--tiny", action="store_true", help="miniature configurations (a CPU check of the script)")
    bc.add_argument("--tiny-vae", action="store_true", help="decode with the tiny autoencoder architecture")
    bc.add_argument("--compile", action="store_true", help="torch.compile the UNet and the decoder")
    bc.add_argument("--repeats", type=int, default=5, help="timed repeats per figure")
    bc.add_argument("--json", default="results/clip_turn.json", help="write the figures as JSON to this file")


def _add_bench_iql_speed(sub: Any) -> None:
    """``pasta bench-iql-speed``."""
    bs = add_command(sub, "bench-iql-speed", cmd_bench_iql_speed)
    bs.add_argument("--data", default=None, help="a dataset folder (default: 2,000 lmm episodes made in a temp folder)")
    bs.add_argument("--steps", type=int, default=200, help="timed gradient steps per configuration")
    bs.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1...")
    bs.add_argument("--threads", type=int, default=cpu_count(), help="torch CPU threads (one per core)")
    bs.add_argument("--json", default="results/iql_speed.json", help="write the figures as JSON to this file")
    bs.add_argument("--quiet", action="store_true", help="no progress output")


def _add_bench_user_model(sub: Any) -> None:
    """``pasta bench-user-model``."""
    bu = add_command(sub, "bench-user-model", cmd_bench_user_model)
    bu.add_argument("--data", default="data/planted", help="planted data folder (made if missing)")
    bu.add_argument("--epochs", type=int, default=20, help="EM epochs")
    bu.add_argument("--json", default="results/user_model.json", help="write the figures as JSON to this file")


def register(sub: Any) -> None:
    """Add this group's commands to the ``pasta`` parser's subcommands."""
    for add in (_add_bench,
                _add_bench_iql,
                _add_bench_iql_speed,
                _add_bench_dataset,
                _add_bench_ray,
                _add_bench_serve,
                _add_bench_clip_turn,
                _add_bench_user_model):
        add(sub)
