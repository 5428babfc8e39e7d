"""The ``pasta`` command: evaluate agents, play a demo episode, run benchmarks.

Examples::

    pasta evaluate --agents random,lmm,greedy,oracle --episodes 2000 --seed 0 \\
        --json results/eval.json --plot results/eval.png
    pasta validate-world --episodes 2000 --seed 0 --json results/validity.json
    pasta demo --seed 3 --agent bayes
    pasta generate --episodes 30000 --policy lmm --seed 0 --out data/lmm
    pasta generate --episodes 30000 --world clip --world-option device=cuda --chunk 256 \\
        --backend ray --address auto --gpus-per-worker 1 --out data/clip-lmm
    pasta dataset verify data/lmm
    pasta bench
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, cast

from pasta_env.rewards import REWARDS
from simulators.errors import PastaError

DEFAULT_AGENTS = "random,lmm,popular,greedy,bayes,oracle"


def _threads() -> None:
    """Keep BLAS to one thread: the batched core runs small matrices, and 2 cores oversubscribe."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


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


def _world_option_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the world's factory, repeatable: e.g. clip_model=ViT-H-14, "
                             "t2i_model=stabilityai/sdxl-turbo, lmm_model=..., device=cuda")


def _backend_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("running on Ray (pip install 'pasta-t2i[ray]')")
    from pasta_env.distributed import BACKENDS

    group.add_argument("--backend", default="local", choices=BACKENDS,
                       help="local: this process; ray: shards of episodes on Ray workers (same results)")
    group.add_argument("--address", default=None,
                       help="the Ray cluster: auto (the one running here), HOST:PORT, ray://HOST:PORT; "
                            "default: start a local Ray with this machine's cores")
    group.add_argument("--num-workers", type=int, default=None,
                       help="Ray workers (default: as many as the cluster's CPUs, or GPUs, allow)")
    group.add_argument("--gpus-per-worker", type=float, default=0.0,
                       help="GPUs each worker holds; its world loads its models there")
    group.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs each worker holds")


def _backend(args: argparse.Namespace):
    """The ``RayBackend`` the arguments ask for, or ``None`` (this process)."""
    from pasta_env.distributed import RayBackend

    ray_only = {"--address": args.address is not None, "--num-workers": args.num_workers is not None,
                "--gpus-per-worker": args.gpus_per_worker != 0.0, "--cpus-per-worker": args.cpus_per_worker != 1.0}
    if args.backend == "local":
        given = [k for k, v in ray_only.items() if v]
        if given:
            raise ValueError(f"{given[0]} is for --backend ray; add --backend ray or drop it")
        return None
    from pasta_env.distributed import require_ray

    require_ray()
    return RayBackend(address=args.address, num_workers=args.num_workers, gpus_per_worker=args.gpus_per_worker,
                      cpus_per_worker=args.cpus_per_worker)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Compare agents on the same users; print a table, write JSON and a plot."""
    from agents import check_agent_spec
    from agents.evaluation import evaluate, plot_per_turn
    from simulators.atomic import write_json

    names = [a.strip() for a in args.agents.split(",") if a.strip()]
    if not names:
        raise ValueError("--agents names no agent")
    for n in names:
        check_agent_spec(n)
    _positive(episodes=args.episodes, num_envs=args.num_envs)
    _outputs(json=args.json, plot=args.plot)
    backend = _backend(args)
    result = evaluate(names, episodes=args.episodes, seed=args.seed, prompts=args.prompts,
                      num_envs=args.num_envs, progress=not args.quiet, backend=backend, reward=args.reward,
                      world=args.world, world_kwargs=world_options(args.world_option))
    s = result.settings
    print(f"PastaT2I-v0, world {s['world']}, {s['episodes']} episodes per agent, seed {s['seed']}, "
          f"reward {s['reward']}; mean return with 95% CI, mean reward per turn, choice entropy (nats)\n")
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


def cmd_validate_world(args: argparse.Namespace) -> int:
    """Check that a world is a benchmark: agents bracket it, gaps, exploits, identifiability, intent.

    Exit status 0 when every check passes, 1 when one fails, 2 on bad input.
    """
    from benchmarks import world_validity
    from pasta_env.worlds import world_names
    from simulators.atomic import write_json

    if args.world not in world_names():
        raise ValueError(f"unknown world {args.world!r}; registered worlds: {', '.join(world_names())}")
    if args.episodes < 2:
        raise ValueError(f"--episodes must be at least 2 (confidence intervals need two), got {args.episodes}")
    _positive(num_envs=args.num_envs)
    _outputs(json=args.json)
    report = world_validity.run(args.world, args.prompts, args.episodes, args.seed, args.num_envs,
                                progress=not args.quiet, world_kwargs=world_options(args.world_option),
                                reward=args.reward)
    print(world_validity.markdown(report))
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0 if report["passed"] else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """Play one episode with an agent and print every turn."""
    import gymnasium as gym

    from agents import make_agent
    from agents.evaluation import public_info
    from pasta_env import PastaT2IEnv

    env = gym.make("PastaT2I-v0", render_mode="ansi", expose_user_type=True, prompts=args.prompts)
    base = cast(PastaT2IEnv, env.unwrapped)
    agent = make_agent(args.agent, base.world, base.config, args.seed)
    obs, info = env.reset(seed=args.seed)
    print(f"hidden user type: {info['user_type_name']}")
    print(env.render())
    total, done = 0.0, False
    while not done:
        obs, reward, done, _, info = env.step(agent.act(obs, info if agent.privileged else public_info(info)))
        total += float(reward)
        print(env.render())
    print(f"return {total:.3f}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the throughput benchmark."""
    from benchmarks import throughput

    _positive(runs=args.runs)
    if not args.seconds > 0 or args.evaluate_episodes < 0 or args.profile < 0:
        raise ValueError("--seconds must be positive and --evaluate-episodes, --profile at least 0; got "
                         f"{args.seconds}, {args.evaluate_episodes}, {args.profile}")
    _outputs(json=args.json)
    throughput.run(args.seconds, args.runs, sardine=args.sardine, json_path=args.json,
                   with_startup=not args.no_startup, evaluate_episodes=args.evaluate_episodes,
                   profile_top=args.profile)
    return 0


def cmd_train_iql(args: argparse.Namespace) -> int:
    """Train PASTA's agent (IQL on d3rlpy, decomposed slate value) on datasets; rerun to resume."""
    from agents.offline.iql import IQLSettings, train_iql

    mix = _shares(args.mix, len(args.data)) if args.mix else None
    _positive(steps=args.steps, batch_size=args.batch_size, eval_episodes=args.eval_episodes, threads=args.threads)
    _torch_threads(args.threads)
    settings = IQLSettings(steps=args.steps, batch_size=args.batch_size, expectile=args.expectile,
                           gamma=args.gamma, hidden=args.hidden, critic_lr=args.lr, eval_every=args.eval_every,
                           eval_episodes=args.eval_episodes, seed=args.seed, compile_graph=args.compile)
    history = train_iql(args.data, args.out, settings, mix=mix, device=args.device, progress=not args.quiet)
    last = history["evaluations"][-1]
    print(f"{args.out}: {history['step']} gradient steps, return {last['return_mean']:.3f} ± "
          f"{last['return_ci95']:.3f} on {args.eval_episodes} users; "
          f"{history['steps_per_second']:.1f} steps/s (evaluations included)" if history["steps_per_second"]
          else f"{args.out}: already trained")
    print(f"learning curves: {args.out}/curves.png; compare: pasta evaluate --agents iql:{args.out},bayes,lmm,random")
    return 0


def _shares(text: str, n: int) -> list[float]:
    try:
        shares = [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--mix takes comma-separated numbers, got {text!r}") from None
    if len(shares) != n or min(shares) < 0 or sum(shares) <= 0 or not all(math.isfinite(s) for s in shares):
        raise ValueError(f"--mix needs one non-negative share per --data ({n}), got {text!r}")
    return shares


def cmd_bench_iql(args: argparse.Namespace) -> int:
    """Benchmark PASTA's agent: IQL on lmm, lmm+epsilon, bayes and mixed data against the baselines."""
    from benchmarks import iql

    unknown = [r for r in args.recipes.split(",") if r not in iql.RECIPES]
    if unknown:
        raise ValueError(f"unknown recipe {unknown[0]!r}; recipes: {', '.join(iql.RECIPES)}")
    _positive(episodes=args.episodes, steps=args.steps, eval_episodes=args.eval_episodes, threads=args.threads)
    _torch_threads(args.threads)
    iql.run(args.out, args.episodes, args.steps, args.eval_episodes, args.eval_seed, tuple(args.recipes.split(",")),
            args.hidden, args.batch_size, args.device, progress=not args.quiet)
    return 0


def cmd_bench_dataset(args: argparse.Namespace) -> int:
    """Benchmark dataset generation: wall time, peak memory, size, verify, and what float16 storage costs."""
    from agents import check_agent_spec
    from benchmarks import datasets

    check_agent_spec(args.policy)
    _positive(episodes=args.episodes)
    if args.precision_episodes < 0:
        raise ValueError(f"--precision-episodes must be >= 0, got {args.precision_episodes}")
    _outputs(json=args.json)
    datasets.run(args.episodes, args.policy, args.seed, args.precision_episodes, args.json, args.out)
    return 0


def cmd_bench_ray(args: argparse.Namespace) -> int:
    """Benchmark generation on Ray: start-up, 1 vs 2 workers, and a projection of 30,000 clip trajectories to GPUs."""
    from benchmarks import ray_scaling

    _positive(episodes=args.episodes, chunk=args.chunk, clip_chunk=args.clip_chunk)
    try:
        workers = tuple(int(w) for w in args.workers.split(","))
    except ValueError:
        raise ValueError(f"--workers takes comma-separated integers, got {args.workers!r}") from None
    if not workers or min(workers) < 1 or args.clip_episodes < 0 or (args.turn_s is not None and args.turn_s <= 0):
        raise ValueError("--workers must list positive counts, --clip-episodes be >= 0 and --turn-s > 0")
    _outputs(json=args.json)
    ray_scaling.run(args.episodes, args.chunk, args.clip_episodes, args.clip_chunk, workers, args.clip_turn,
                    args.turn_s, args.json)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the rating app: raters play sessions with an agent; every turn is recorded to --data."""
    from pasta_app.server import serve
    from pasta_env.worlds import check_world_options, read_prompts, world_names
    from simulators.backends import require

    require("fastapi", "pasta serve")
    require("uvicorn", "pasta serve")
    if args.world not in world_names():
        raise ValueError(f"unknown world {args.world!r}; registered worlds: {', '.join(world_names())}")
    options = world_options(args.world_option)
    check_world_options(args.world, options)
    from agents import check_agent_spec

    agents = [a.strip() for a in (args.agents or args.agent).split(",") if a.strip()]
    if not agents:
        raise ValueError("--agents names no agent")
    for a in agents:
        check_agent_spec(a)  # before the data folder is made
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

    _outputs(json=args.json, plot=args.plot)
    rep = human.report(args.folder)
    print(human.markdown(rep))
    if args.json:
        write_json(args.json, rep)
        print(f"wrote {args.json}")
    if args.plot:
        human.plot(rep, args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_bench_serve(args: argparse.Namespace) -> int:
    """Benchmark the rating app: simulated raters through the report (ranking vs evaluate), and concurrent load."""
    from agents import check_agent_spec
    from benchmarks import simulated_raters

    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    for a in agents:
        check_agent_spec(a)
    _positive(raters=args.raters, sessions=args.sessions, concurrent=args.concurrent)
    if not args.seconds > 0:
        raise ValueError(f"--seconds must be positive, got {args.seconds}")
    _outputs(json=args.json)
    simulated_raters.run(agents, args.raters, args.sessions, args.concurrent, args.seconds, args.seed, args.json)
    return 0


def cmd_make_synthetic_data(args: argparse.Namespace) -> int:
    """Write planted preference data (pairs, ratings, choices, true types)."""
    from pasta_env.synthetic_data import SyntheticDataConfig, generate

    cfg = SyntheticDataConfig(num_types=args.k, users=args.users, test_users=args.test_users,
                              pairs_per_user=args.pairs_per_user, ratings_per_user=args.ratings_per_user,
                              trajectories_per_user=args.trajectories_per_user, seed=args.seed)
    summary = generate(args.out, cfg, progress=not args.quiet, overwrite=args.overwrite)
    for split, counts in summary["splits"].items():
        print(f"{args.out}/{split}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    print(f"planted model: {args.out}/planted_model.npz (types: {', '.join(summary['type_names'])})")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate an offline-RL dataset of PastaT2I episodes (Minari HDF5 + Parquet); rerun to resume."""
    from agents import check_agent_spec
    from pasta_env.config import EnvConfig
    from pasta_env.datasets import DatasetSpec, generate
    from pasta_env.worlds import check_world_options, world_names

    check_agent_spec(args.policy)
    if args.world not in world_names():
        raise ValueError(f"unknown world {args.world!r}; registered worlds: {', '.join(world_names())}")
    _positive(episodes=args.episodes, chunk=args.chunk)
    if args.prompts is not None and not Path(args.prompts).is_file():
        raise ValueError(f"--prompts {args.prompts!r} is not a file")
    options = world_options(args.world_option)
    check_world_options(args.world, options)
    spec = DatasetSpec(episodes=args.episodes, policy=args.policy, seed=args.seed, epsilon=args.epsilon,
                       world=args.world, prompts=args.prompts, config=EnvConfig(reward=args.reward),
                       chunk=args.chunk, precision=args.precision, dataset_id=args.dataset_id,
                       world_options=options)
    manifest = generate(args.out, spec, progress=not args.quiet, overwrite=args.overwrite, backend=_backend(args))
    _print_info(_dataset_info(args.out))
    if "timings" in manifest:
        print("timings: " + ", ".join(f"{k} {v:.1f}" for k, v in manifest["timings"].items()))
    return 0


def _dataset_info(folder: str) -> dict:
    from pasta_env.datasets import info

    return info(folder)


def _print_info(info: dict) -> None:
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


def cmd_dataset(args: argparse.Namespace) -> int:  # pragma: no cover - argparse requires an action
    """Inspect and check generated datasets: info, verify."""
    return 2


def cmd_dataset_info(args: argparse.Namespace) -> int:
    """Size, episodes, policy, world and returns of a dataset."""
    import json

    info = _dataset_info(args.folder)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_info(info)
    return 0


def cmd_dataset_verify(args: argparse.Namespace) -> int:
    """Check a dataset: counts, alignment, checksums, Minari's view, the Parquet export, the world, a replay.

    Exit status 0 when it is sound, 1 when a check fails, 2 on bad input.
    """
    import json

    from pasta_env.datasets import verify

    if args.replay < 0:
        raise ValueError(f"--replay must be >= 0, got {args.replay}")
    if not Path(args.folder).is_dir():
        raise ValueError(f"{args.folder!r} is not a folder; give a dataset folder made by `pasta generate`")
    report = verify(args.folder, replay=args.replay, seed=args.seed)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return 0 if report.ok else 1


def _torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def cmd_train_user_model(args: argparse.Namespace) -> int:
    """Train the user model by mini-batch EM and write a checkpoint."""
    from simulators.atomic import write_json
    from simulators.files import WriteLock
    from simulators.preferences.data import read_dataset
    from simulators.users.em import EMConfig, train_user_model

    _positive(threads=args.threads)
    _outputs(out=args.out, json=args.json)
    cfg = EMConfig(num_types=args.k, hidden=args.hidden, aggregation=args.aggregation, epochs=args.epochs,
                   users_per_batch=args.users_per_batch, lr=args.lr, num_inits=args.inits,
                   pair_weight=args.weights[0], rating_weight=args.weights[1], choice_weight=args.weights[2],
                   seed=args.seed, device=args.device)
    _torch_threads(args.threads)
    data = read_dataset(args.data)
    print(f"{args.data}: {data.num_users} users, " + ", ".join(f"{v} {k}" for k, v in data.counts().items()))
    state = Path(f"{args.out}.state")
    with WriteLock(args.out):
        if args.no_resume and state.is_file():
            state.unlink()
        model, history = train_user_model(data, cfg, progress=not args.quiet, checkpoint=state, out=args.out)
    ll = [h["log_likelihood_per_record"] for h in history]
    print(f"log-likelihood per record: {ll[0]:.4f} -> {ll[-1]:.4f} in {model.info['train_seconds']} s")
    print("types: " + ", ".join(f"{n} ({p:.2f})" for n, p in zip(model.type_names, model.prior)))
    print(f"wrote {args.out}")
    if args.json:
        write_json(args.json, {"history": history, "info": model.info})
    return 0


def cmd_eval_user_model(args: argparse.Namespace) -> int:
    """Evaluate a user model on held-out users' records."""
    from simulators.atomic import write_json
    from simulators.preferences.data import read_dataset
    from simulators.users.checkpoint import load_user_model
    from simulators.users.evaluation import evaluate_user_model

    if not 0.0 < args.context_fraction < 1.0:
        raise ValueError(f"--context-fraction must be between 0 and 1 (exclusive), got {args.context_fraction}")
    _outputs(json=args.json)
    model = load_user_model(args.model)
    data = read_dataset(args.data)
    metrics = evaluate_user_model(model, data, context_fraction=args.context_fraction, seed=args.seed)
    for key, value in metrics.items():
        print(f"{key:>22s}: {value:.4f}" if isinstance(value, float) else f"{key:>22s}: {value}")
    if args.json:
        write_json(args.json, {"model": str(args.model), "data": str(args.data), "metrics": metrics})
        print(f"wrote {args.json}")
    return 0


def cmd_user_model_sweep(args: argparse.Namespace) -> int:
    """Accuracy and held-out log-likelihood against K (markdown, JSON, plot)."""
    from benchmarks import user_model_sweep
    from simulators.files import check_output_file

    _positive(threads=args.threads)
    check_output_file(Path(args.out) / "sweep.json", "--out")
    try:
        ks = [int(k) for k in args.k.split(",") if k.strip()]
    except ValueError:
        raise ValueError(f"--k takes comma-separated integers, got {args.k!r}") from None
    _torch_threads(args.threads)
    user_model_sweep.run(ks, args.data, args.test, args.planted, args.epochs, args.out, progress=not args.quiet)
    return 0


def cmd_import_preferences(args: argparse.Namespace) -> int:
    """Convert a public preference dataset (Pick-a-Pic, HPD v2, Simulacra) to the documented format."""
    from simulators.files import WriteLock, claim_output_dir
    from simulators.preferences.adapters import ADAPTERS

    if (args.image_embeddings is None) == (args.clip_model is None):
        raise ValueError("give either --image-embeddings (precomputed) or --clip-model (embed the images with "
                         "open_clip), not both or neither")
    kwargs: dict[str, Any] = {}
    identity = {"command": "import-preferences", "format": args.format, "input": str(Path(args.input).resolve())}
    if args.image_embeddings is not None:
        kwargs["image_embeddings"] = args.image_embeddings
        identity["image_embeddings"] = str(Path(args.image_embeddings).resolve())
    else:
        from simulators.text.openclip import OpenClipEncoder

        encoder = OpenClipEncoder(args.clip_model, args.clip_pretrained, device=args.device)
        kwargs.update(image_encoder=encoder.encode_image_payloads, text_encoder=encoder.encode)
        identity["clip"] = encoder.identity()
    if args.image_root and args.format != "pick-a-pic":
        kwargs["image_root"] = args.image_root
    with WriteLock(args.out):
        claim_output_dir(args.out, identity, args.overwrite)
        summary = ADAPTERS[args.format](args.input, args.out, **kwargs)
    print(f"wrote {args.out}: " + ", ".join(f"{v} {k}" for k, v in summary["written"].items())
          + f" from {summary['users']} users; skipped: "
          + (", ".join(f"{v} ({k})" for k, v in summary["skipped"].items()) or "none"))
    return 0


def _weights(text: str) -> tuple[float, float, float]:
    message = "--weights takes three non-negative numbers: pairs,ratings,choices"
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if len(parts) != 3 or min(parts) < 0 or not all(math.isfinite(p) for p in parts):
        raise argparse.ArgumentTypeError(message)
    return parts[0], parts[1], parts[2]


def _positive(**values: int) -> None:
    """Raise a ValueError naming the first option that is not a positive integer."""
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def _outputs(**paths: str | None) -> None:
    """Check output files before the work starts (a folder, an unwritable place)."""
    from simulators.files import check_output_file

    for name, path in paths.items():
        if path:
            check_output_file(path, f"--{name}")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem, and where to read more."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pasta``."""
    from agents.offline.settings import IQLSettings  # a plain dataclass: no torch, no d3rlpy
    parser = _Parser(
        prog="pasta", description="pasta-t2i: evaluate slate policies, train and evaluate user simulators, "
        "generate preference data, run benchmarks.")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name, func):
        p = sub.add_parser(name, help=func.__doc__, description=func.__doc__,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.set_defaults(func=func)
        return p

    ev = command("evaluate", cmd_evaluate)
    ev.add_argument("--agents", default=DEFAULT_AGENTS, help="comma-separated agent names")
    ev.add_argument("--episodes", type=int, default=2000, help="episodes per agent")
    ev.add_argument("--seed", type=int, default=0, help="episode e uses env seed SEED+e")
    ev.add_argument("--prompts", default=None,
                    help="initial prompts: a text file (one per line) or a CSV/TSV with a Prompt column")
    ev.add_argument("--reward", default=REWARDS[0], choices=REWARDS, help="reward of a turn")
    ev.add_argument("--num-envs", type=int, default=1024, help="users simulated at once")
    ev.add_argument("--json", default=None, help="write the results as JSON here")
    ev.add_argument("--plot", default=None, help="write per-turn utility curves here (PNG, PDF, SVG)")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--world", default="synthetic", help="a registered world (synthetic, clip)")
    _world_option_argument(ev)
    _backend_arguments(ev)

    vw = command("validate-world", cmd_validate_world)
    vw.add_argument("--world", default="synthetic", help="a registered world")
    vw.add_argument("--prompts", default=None,
                    help="initial prompts: a text file (one per line) or a CSV/TSV with a Prompt column")
    vw.add_argument("--episodes", type=int, default=2000, help="episodes per agent")
    vw.add_argument("--seed", type=int, default=0, help="episode e uses env seed SEED+e")
    vw.add_argument("--num-envs", type=int, default=1024, help="users simulated at once")
    vw.add_argument("--reward", default=REWARDS[0], choices=REWARDS,
                    help="reward of a turn (the deterministic ones are expected to fail the report)")
    vw.add_argument("--json", default=None, help="write the report as JSON here")
    vw.add_argument("--quiet", action="store_true", help="no progress bar")
    _world_option_argument(vw)

    demo = command("demo", cmd_demo)
    demo.add_argument("--agent", default="bayes", help="agent name")
    demo.add_argument("--seed", type=int, default=0, help="episode seed")
    demo.add_argument("--prompts", default=None, help="initial prompts file")

    bench = command("bench", cmd_bench)
    bench.add_argument("--seconds", type=float, default=3.0, help="length of one timed run")
    bench.add_argument("--runs", type=int, default=3, help="runs per figure (the median is reported)")
    bench.add_argument("--sardine", metavar="PATH", default=None,
                       help="a local checkout of github.com/naver/sardine: its SlateTopK env is measured beside "
                            "the single env, run for run")
    bench.add_argument("--no-startup", action="store_true", help="skip the start-up timings")
    bench.add_argument("--evaluate-episodes", type=int, default=2000,
                       help="episodes of the timed `pasta evaluate` main job (0 skips it)")
    bench.add_argument("--profile", type=int, default=0, metavar="N",
                       help="list the N functions that took the most time (single env and 1024 envs)")
    bench.add_argument("--json", default="results/throughput.json", help="where to write the figures")

    ti = command("train-iql", cmd_train_iql)
    iql = IQLSettings()
    ti.add_argument("--data", action="append", required=True, help="a dataset folder (repeat for a mix)")
    ti.add_argument("--mix", default=None, help="share of each --data in a batch, e.g. 0.5,0.5 (default: equal)")
    ti.add_argument("--steps", type=int, default=iql.steps, help="gradient steps")
    ti.add_argument("--batch-size", type=int, default=iql.batch_size, help="transitions per gradient step")
    ti.add_argument("--expectile", type=float, default=iql.expectile, help="IQL's expectile of the value function")
    ti.add_argument("--gamma", type=float, default=iql.gamma, help="discount (1: the episode return)")
    ti.add_argument("--hidden", type=int, default=iql.hidden, help="width of the networks' hidden layers")
    ti.add_argument("--lr", type=float, default=iql.critic_lr, help="critic learning rate (Adam)")
    ti.add_argument("--eval-every", type=int, default=iql.eval_every, help="evaluate and save progress every N steps")
    ti.add_argument("--eval-episodes", type=int, default=iql.eval_episodes, help="users per evaluation")
    ti.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1...")
    ti.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads (one per core)")
    ti.add_argument("--compile", action="store_true", help="d3rlpy's compile_graph (torch.compile; GPU)")
    ti.add_argument("--seed", type=int, default=iql.seed, help="seed of initialisation and batches")
    ti.add_argument("--out", required=True, help="the model folder to write")
    ti.add_argument("--quiet", action="store_true", help="no progress bar")

    bi = command("bench-iql", cmd_bench_iql)
    bi.add_argument("--out", default="results/iql", help="folder for datasets, models, tables and plots")
    bi.add_argument("--episodes", type=int, default=30000, help="episodes per behaviour dataset")
    bi.add_argument("--steps", type=int, default=iql.steps, help="gradient steps per model")
    bi.add_argument("--recipes", default="lmm,lmm-eps10,bayes,lmm+bayes", help="behaviour-data recipes to train on")
    bi.add_argument("--hidden", type=int, default=iql.hidden, help="width of the networks' hidden layers")
    bi.add_argument("--batch-size", type=int, default=iql.batch_size, help="transitions per gradient step")
    bi.add_argument("--eval-episodes", type=int, default=2000, help="users per agent in the final comparison")
    bi.add_argument("--eval-seed", type=int, default=1_000_000, help="first env seed of the final comparison")
    bi.add_argument("--device", default="cpu", help="torch device")
    bi.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads")
    bi.add_argument("--quiet", action="store_true", help="no progress bars")

    bd = command("bench-dataset", cmd_bench_dataset)
    bd.add_argument("--episodes", type=int, default=30000, help="episodes in the dataset")
    bd.add_argument("--policy", default="lmm", help="behaviour policy")
    bd.add_argument("--seed", type=int, default=0, help="generation seed")
    bd.add_argument("--precision-episodes", type=int, default=2000,
                    help="paired episodes per agent for the float16 measurement (0: skip)")
    bd.add_argument("--out", default=None, help="keep the dataset here (default: a temporary folder)")
    bd.add_argument("--json", default="results/datasets.json", help="where to write the figures")

    br = command("bench-ray", cmd_bench_ray)
    br.add_argument("--episodes", type=int, default=20000, help="synthetic-world episodes per run")
    br.add_argument("--chunk", type=int, default=1024, help="episodes per shard in the synthetic world")
    br.add_argument("--clip-episodes", type=int, default=48,
                    help="clip-world episodes per run, on tiny models (0 skips the clip world)")
    br.add_argument("--clip-chunk", type=int, default=8, help="episodes per shard in the clip world")
    br.add_argument("--workers", default="1,2", help="Ray worker counts to measure")
    br.add_argument("--clip-turn", action="append", default=None, metavar="JSON",
                    help="per-turn GPU costs written by benchmarks.clip_turn (default: the shipped H100 figures)")
    br.add_argument("--turn-s", type=float, default=None,
                    help="project from this many seconds per user-turn instead (e.g. 0.3)")
    br.add_argument("--json", default="results/ray_scaling.json", help="where to write the figures")

    sv = command("serve", cmd_serve)
    sv.add_argument("--data", required=True, help="folder the records go to (and the tokens live in)")
    sv.add_argument("--world", default="synthetic", help="a registered world (synthetic: prompt cards; clip: images)")
    _world_option_argument(sv)
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
    sv.add_argument("--rate", type=float, default=20.0,
                    help="requests per second allowed per rater (bursts of twice that); more get 429")

    he = command("human-eval-report", cmd_human_eval_report)
    he.add_argument("folder", help="the --data folder of `pasta serve`")
    he.add_argument("--json", default=None, help="write the report as JSON here")
    he.add_argument("--plot", default=None, help="write the Better/Same/Worse bars here (PNG, PDF, SVG)")

    bs = command("bench-serve", cmd_bench_serve)
    bs.add_argument("--agents", default="bayes,lmm,random", help="agents compared blind")
    bs.add_argument("--raters", type=int, default=16, help="simulated raters of the pipeline run")
    bs.add_argument("--sessions", type=int, default=9, help="sessions per simulated rater")
    bs.add_argument("--concurrent", type=int, default=50, help="raters at once in the load run")
    bs.add_argument("--seconds", type=float, default=20.0, help="length of the load run")
    bs.add_argument("--seed", type=int, default=0, help="seed of the assignment, the users and their types")
    bs.add_argument("--json", default="results/serve.json", help="where to write the figures")

    mk = command("make-synthetic-data", cmd_make_synthetic_data)
    mk.add_argument("--k", type=int, default=8, help="types of the planted model")
    mk.add_argument("--users", type=int, default=2000, help="training users")
    mk.add_argument("--test-users", type=int, default=500, help="held-out users")
    mk.add_argument("--pairs-per-user", type=int, default=20, help="pairwise preferences per user")
    mk.add_argument("--ratings-per-user", type=int, default=10, help="ratings per user")
    mk.add_argument("--trajectories-per-user", type=int, default=4, help="episodes of 5 choices per user")
    mk.add_argument("--seed", type=int, default=0, help="seed of everything")
    mk.add_argument("--out", required=True, help="folder; train/ and test/ are written in it")
    mk.add_argument("--overwrite", action="store_true",
                    help="replace the folder's contents when it holds another run's files")
    mk.add_argument("--quiet", action="store_true", help="no progress bar")

    tr = command("train-user-model", cmd_train_user_model)
    tr.add_argument("--data", required=True, help="dataset folder (pairs/ratings/choices .jsonl)")
    tr.add_argument("--k", type=int, default=8, help="number of user types")
    tr.add_argument("--out", required=True, help="checkpoint to write (.npz format)")
    tr.add_argument("--epochs", type=int, default=20, help="passes over all users")
    tr.add_argument("--hidden", type=int, default=32, help="hidden units of the shared trunk")
    tr.add_argument("--aggregation", default="mean", choices=("mean", "max", "softmax"),
                    help="how a column's image scores become its utility")
    tr.add_argument("--users-per-batch", type=int, default=16, help="users per EM iteration")
    tr.add_argument("--lr", type=float, default=3e-2, help="Adam learning rate")
    tr.add_argument("--inits", type=int, default=3, help="random initialisations tried")
    tr.add_argument("--weights", type=_weights, default=(1.0, 1.0, 1.0), help="loss weights pairs,ratings,choices")
    tr.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    tr.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    tr.add_argument("--seed", type=int, default=0, help="seed of initialisation and batching")
    tr.add_argument("--no-resume", action="store_true",
                    help="start over: delete OUT.state (the resume state of an interrupted run)")
    tr.add_argument("--json", default=None, help="write the training history here")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")

    ev2 = command("eval-user-model", cmd_eval_user_model)
    ev2.add_argument("model", help="a user-model checkpoint")
    ev2.add_argument("--data", required=True, help="held-out users' dataset folder")
    ev2.add_argument("--context-fraction", type=float, default=0.5,
                     help="share of each user's records used to infer their type")
    ev2.add_argument("--seed", type=int, default=0, help="seed of the context/query split")
    ev2.add_argument("--json", default=None, help="write the metrics as JSON here")

    sw = command("user-model-sweep", cmd_user_model_sweep)
    sw.add_argument("--k", default="1,2,4,8,16,32", help="comma-separated numbers of types")
    sw.add_argument("--data", required=True, help="training dataset folder")
    sw.add_argument("--test", default=None,
                    help="held-out users' dataset folder (none: hold out 20%% of --data's users)")
    sw.add_argument("--planted", default=None, help="planted model checkpoint, listed as reference")
    sw.add_argument("--epochs", type=int, default=None, help="epochs per model (none: the trainer's default)")
    sw.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    sw.add_argument("--out", default="results/user_model_sweep", help="folder for sweep.md/json/png")
    sw.add_argument("--quiet", action="store_true", help="no progress output")

    gen = command("generate", cmd_generate)
    gen.add_argument("--episodes", type=int, default=30000, help="episodes to generate")
    gen.add_argument("--policy", default="lmm", help="behaviour policy: a registered agent name, or iql:MODEL")
    gen.add_argument("--seed", type=int, default=0, help="episode e uses env seed SEED+e")
    gen.add_argument("--epsilon", type=float, default=0.0,
                     help="probability that a turn's slate is uniformly random instead of the policy's")
    gen.add_argument("--world", default="synthetic", help="a registered world")
    gen.add_argument("--prompts", default=None,
                     help="initial prompts: a text file (one per line) or a CSV/TSV with a Prompt column")
    gen.add_argument("--reward", default=REWARDS[0], choices=REWARDS, help="reward of a turn")
    gen.add_argument("--precision", default="float16", choices=("float16", "float32"),
                     help="how embeddings are stored")
    _world_option_argument(gen)
    gen.add_argument("--chunk", type=int, default=1024,
                     help="episodes per chunk (users simulated at once; with Ray, a shard)")
    gen.add_argument("--dataset-id", default=None,
                     help="Minari dataset id namespace/name-vN (default pasta-t2i/POLICY-v0)")
    gen.add_argument("--out", required=True, help="dataset folder")
    gen.add_argument("--overwrite", action="store_true",
                     help="replace the folder's contents when it holds another run's files")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    _backend_arguments(gen)

    ds = command("dataset", cmd_dataset)
    ds_sub = ds.add_subparsers(dest="action", required=True, parser_class=_Parser)
    di = ds_sub.add_parser("info", help=cmd_dataset_info.__doc__, description=cmd_dataset_info.__doc__)
    di.set_defaults(func=cmd_dataset_info)
    di.add_argument("folder", help="dataset folder")
    di.add_argument("--json", action="store_true", help="print JSON")
    dv = ds_sub.add_parser("verify", help=cmd_dataset_verify.__doc__, description=cmd_dataset_verify.__doc__,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    dv.set_defaults(func=cmd_dataset_verify)
    dv.add_argument("folder", help="dataset folder")
    dv.add_argument("--replay", type=int, default=32, help="episodes replayed from their seeds (0: none)")
    dv.add_argument("--seed", type=int, default=0, help="seed of the replay sample")
    dv.add_argument("--json", action="store_true", help="print the report as JSON")

    imp = command("import-preferences", cmd_import_preferences)
    imp.add_argument("--format", required=True, choices=("pick-a-pic", "hpd-v2", "simulacra"),
                     help="the public dataset's layout")
    imp.add_argument("--input", required=True, help="the dataset's table, JSON file or sqlite database")
    imp.add_argument("--image-embeddings", default=None,
                     help="precomputed image embeddings: .npz with arrays 'keys' (image ids) and 'emb'")
    imp.add_argument("--clip-model", default=None,
                     help="embed images and prompts with this open_clip model instead (e.g. ViT-H-14; the clip "
                          "world's space; needs pasta-t2i[openclip])")
    imp.add_argument("--clip-pretrained", default="laion2b_s32b_b79k",
                     help="the open_clip model's pretrained tag or checkpoint path")
    imp.add_argument("--device", default=None, help="cuda or cpu (default: the GPU if any)")
    imp.add_argument("--image-root", default=None, help="folder the image paths are relative to")
    imp.add_argument("--out", required=True, help="dataset folder to write")
    imp.add_argument("--overwrite", action="store_true",
                     help="replace the folder's contents when it holds another run's files")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pasta`` console script.

    Every failure prints one line naming the problem and returns 2 (130 on
    Ctrl-C); ``pasta --debug ...`` shows the traceback instead.
    """
    args = build_parser().parse_args(argv)
    _threads()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"pasta {args.command}: interrupted; rerun the same command to continue where it can",
              file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; --debug shows the traceback
        if args.debug:
            raise
        expected = isinstance(exc, (PastaError, ValueError, OSError, ImportError))
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
            text = f"{exc.filename}: {text}"
        if not expected:
            text = f"unexpected {type(exc).__name__}: {text} (rerun with pasta --debug for the traceback)"
        print(f"pasta {args.command}: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
