"""Commands for the user simulator and its data: ``make-synthetic-data``, ``train-user-model``,
``eval-user-model``, ``user-model-sweep`` and ``import-preferences``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from pasta_cli.common import add_command, finite_float, outputs, positive, torch_threads


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


def cmd_train_user_model(args: argparse.Namespace) -> int:
    """Train the user model by mini-batch EM and write a checkpoint."""
    from pasta_env.datasets.preferences import read_preferences
    from simulators.atomic import write_json
    from simulators.backends import check_torch_device
    from simulators.files import WriteLock, claim_output_file
    from simulators.users.em import EMConfig, run_identity, train_user_model
    from simulators.users.neural import checkpoint_run

    positive(threads=args.threads, **({} if args.episodes is None else {"episodes": args.episodes}))
    outputs(out=args.out, json=args.json)
    cfg = EMConfig(num_types=args.k, hidden=args.hidden, aggregation=args.aggregation, epochs=args.epochs,
                   users_per_batch=args.users_per_batch, lr=args.lr, num_inits=args.inits,
                   pair_weight=args.weights[0], rating_weight=args.weights[1], choice_weight=args.weights[2],
                   reward_weight=args.reward_weight, seed=args.seed, device=args.device)
    check_torch_device(args.device)
    torch_threads(args.threads)
    data = read_preferences(args.data, args.episodes)
    rated = " (each with its reward)" if "reward" in data.choices else ""
    print(f"{args.data}: {data.num_users} users, " + ", ".join(f"{v} {k}" for k, v in data.counts().items()) + rated)
    state = Path(f"{args.out}.state")
    with WriteLock(args.out):
        claim_output_file(args.out, run_identity(data, cfg), args.overwrite, checkpoint_run)
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
    from pasta_env.datasets.preferences import read_preferences
    from simulators.atomic import write_json
    from simulators.users.checkpoint import load_user_model
    from simulators.users.evaluation import evaluate_user_model

    if not 0.0 < args.context_fraction < 1.0:
        raise ValueError(f"--context-fraction must be between 0 and 1 (exclusive), got {args.context_fraction}")
    outputs(json=args.json)
    model = load_user_model(args.model)
    data = read_preferences(args.data)
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

    positive(threads=args.threads)
    check_output_file(Path(args.out) / "sweep.json", "--out")
    try:
        ks = [int(k) for k in args.k.split(",") if k.strip()]
    except ValueError:
        raise ValueError(f"--k takes comma-separated integers, got {args.k!r}") from None
    torch_threads(args.threads)
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
        claim_output_dir(args.out, identity, args.overwrite,
                         inputs=[args.input, args.image_embeddings, args.image_root])
        summary = ADAPTERS[args.format](args.input, args.out, **kwargs)
    print(f"wrote {args.out}: " + ", ".join(f"{v} {k}" for k, v in summary["written"].items())
          + f" from {summary['users']} users; skipped: "
          + (", ".join(f"{v} ({k})" for k, v in summary["skipped"].items()) or "none"))
    return 0


def loss_weights(text: str) -> tuple[float, float, float]:
    """``--weights`` as three non-negative numbers."""
    message = "--weights takes three non-negative numbers: pairs,ratings,choices"
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if len(parts) != 3 or min(parts) < 0 or not all(math.isfinite(p) for p in parts):
        raise argparse.ArgumentTypeError(message)
    return parts[0], parts[1], parts[2]


def _add_make_synthetic_data(sub: Any) -> None:
    """``pasta make-synthetic-data``."""
    mk = add_command(sub, "make-synthetic-data", cmd_make_synthetic_data)
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


def _add_train_user_model(sub: Any) -> None:
    """``pasta train-user-model``."""
    tr = add_command(sub, "train-user-model", cmd_train_user_model)
    tr.add_argument("--data", required=True,
                    help="preference data (pairs/ratings/choices .jsonl), or a trajectory dataset made by `pasta "
                         "generate` (each episode a user: its choices and, under the experienced reward, rewards)")
    tr.add_argument("--episodes", type=int, default=None,
                    help="with a trajectory dataset: read only its first N episodes (default: all)")
    tr.add_argument("--k", type=int, default=8, help="number of user types")
    tr.add_argument("--out", required=True, help="the checkpoint to write (.npz format)")
    tr.add_argument("--epochs", type=int, default=20, help="passes over all users")
    tr.add_argument("--hidden", type=int, default=32, help="hidden units of the shared trunk")
    tr.add_argument("--aggregation", default="mean", choices=("mean", "max", "softmax"),
                    help="how a column's image scores become its utility")
    tr.add_argument("--users-per-batch", type=int, default=16, help="users per EM iteration")
    tr.add_argument("--lr", type=finite_float, default=3e-2, help="Adam learning rate")
    tr.add_argument("--inits", type=int, default=3, help="random initialisations tried")
    tr.add_argument("--weights", type=loss_weights, default=(1.0, 1.0, 1.0), help="loss weights pairs,ratings,choices")
    tr.add_argument("--reward-weight", type=finite_float, default=1.0,
                    help="weight of a choice's reward (trajectory datasets; 0: choices only)")
    tr.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    tr.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    tr.add_argument("--seed", type=int, default=0, help="seed of initialisation and batching")
    tr.add_argument("--no-resume", action="store_true",
                    help="start over: delete OUT.state (the resume state of an interrupted run)")
    tr.add_argument("--overwrite", action="store_true",
                    help="replace --out when it holds a model another run (other data or settings) wrote")
    tr.add_argument("--json", default=None, help="write the training history as JSON to this file")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_eval_user_model(sub: Any) -> None:
    """``pasta eval-user-model``."""
    ev = add_command(sub, "eval-user-model", cmd_eval_user_model)
    ev.add_argument("model", help="a user-model checkpoint")
    ev.add_argument("--data", required=True,
                    help="held-out users' preference data, or a trajectory dataset (one user per episode)")
    ev.add_argument("--context-fraction", type=finite_float, default=0.5,
                    help="share of each user's records used to infer their type")
    ev.add_argument("--seed", type=int, default=0, help="seed of the context/query split")
    ev.add_argument("--json", default=None, help="write the metrics as JSON to this file")


def _add_user_model_sweep(sub: Any) -> None:
    """``pasta user-model-sweep``."""
    sw = add_command(sub, "user-model-sweep", cmd_user_model_sweep)
    sw.add_argument("--k", default="1,2,4,8,16,32", help="comma-separated numbers of types")
    sw.add_argument("--data", required=True,
                    help="training preference data, or a trajectory dataset (one user per episode)")
    sw.add_argument("--test", default=None,
                    help="held-out users' dataset folder (none: hold out 20%% of --data's users)")
    sw.add_argument("--planted", default=None, help="planted model checkpoint, listed as reference")
    sw.add_argument("--epochs", type=int, default=None, help="epochs per model (none: the trainer's default)")
    sw.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    sw.add_argument("--out", default="results/user_model_sweep", help="folder for sweep.md/json/png")
    sw.add_argument("--quiet", action="store_true", help="no progress output")


def _add_import_preferences(sub: Any) -> None:
    """``pasta import-preferences``."""
    imp = add_command(sub, "import-preferences", cmd_import_preferences)
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
    imp.add_argument("--out", required=True, help="the dataset folder to write")
    imp.add_argument("--overwrite", action="store_true",
                     help="replace the folder's contents when it holds another run's files")


def register(sub: Any) -> None:
    """Add this group's commands to the ``pasta`` parser's subcommands."""
    for add in (_add_make_synthetic_data,
                _add_train_user_model,
                _add_eval_user_model,
                _add_user_model_sweep,
                _add_import_preferences):
        add(sub)
