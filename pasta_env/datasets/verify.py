"""Check a dataset end to end (counts, alignment, checksums, a replay), and summarise one."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pasta_env.core import DYNAMICS_VERSION
from pasta_env.datasets.identity import identity_differences, world_identity
from pasta_env.datasets.layout import ARRAYS, Layout
from pasta_env.datasets.manifest import MANIFEST, PARTIAL, TURNS_FILE, env_config_of, read_manifest, world_of
from pasta_env.datasets.store import ARRAY_GROUP, DATA_DIR, MAIN_FILE, MINARI_VIEWS, array_sha256, file_sha256
from simulators.backends import require
from simulators.files import FileFormatError

#: Problems listed per check before the rest are counted.
MAX_LISTED = 5


@dataclass
class VerifyReport:
    """What :func:`verify` found.

    Attributes:
        folder: The dataset.
        checks: ``{"name", "ok", "detail"}`` per check, in order.
        problems: Every problem found, in words (empty: the dataset is sound).
    """

    folder: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.problems

    def add(self, name: str, problems: list[str], detail: str = "") -> bool:
        shown = problems[:MAX_LISTED]
        if len(problems) > MAX_LISTED:
            shown.append(f"... and {len(problems) - MAX_LISTED} more")
        self.checks.append({"name": name, "ok": not problems, "detail": detail if not problems else "; ".join(shown)})
        self.problems.extend(f"{name}: {p}" for p in shown)
        return not problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"folder": self.folder, "ok": self.ok, "checks": self.checks, "problems": self.problems}

    def text(self) -> str:
        """One line per check, then the verdict."""
        lines = [f"{'ok  ' if c['ok'] else 'FAIL'} {c['name']}: {c['detail']}" for c in self.checks]
        lines.append(f"{self.folder}: " + ("sound" if self.ok else f"{len(self.problems)} problem(s)"))
        return "\n".join(lines)


def verify(folder: str | Path, replay: int = 32, seed: int = 0) -> VerifyReport:
    """Check a dataset: manifest, files, arrays, alignment, the Parquet export, the world, a replay.

    Args:
        folder: The dataset folder.
        replay: Episodes (drawn at random) replayed from their seeds and stored
            actions in this installation's env and compared with what is
            stored; 0 skips the replay.
        seed: Seed of the replay sample.

    Returns:
        A :class:`VerifyReport` (``report.ok``, ``report.text()``).
    """
    report = VerifyReport(str(folder))
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except FileFormatError as exc:
        report.add("manifest", [str(exc)])
        return report
    layout = Layout(**manifest["layout"])
    E = int(manifest["episodes"])
    report.add("manifest", [], f"{E} episodes of {layout.horizon} turns, policy {manifest['spec']['policy']}, "
                               f"world {manifest['world']['name']}")
    if not _check_files(report, folder, manifest):
        return report
    arrays = _check_arrays(report, folder, manifest, layout)
    if arrays is None:
        return report
    _check_alignment(report, arrays, manifest, layout)
    _check_minari(report, folder, manifest, layout, arrays)
    _check_turns(report, folder, arrays, layout)
    world = _check_world(report, manifest)
    made = manifest.get("dynamics_version", 1)  # datasets from before the version was recorded: 1
    if world is not None and replay > 0 and made != DYNAMICS_VERSION:
        report.add("replay", [], f"not replayed: made with dynamics version {made}, and this pasta-t2i steps "
                                 f"with version {DYNAMICS_VERSION} (the same rules, other last bits); "
                                 "regenerate the dataset to replay it")
    elif world is not None and replay > 0:
        _replay(report, manifest, layout, arrays, world, replay, seed)
    return report


def _check_files(report: VerifyReport, folder: Path, manifest: dict) -> bool:
    problems, fatal = [], False
    for rel, meta in manifest["files"].items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
            fatal |= rel.endswith(MAIN_FILE)
            continue
        size = path.stat().st_size
        if size != meta["bytes"]:
            problems.append(f"{rel} has {size} bytes, the manifest says {meta['bytes']} (truncated or replaced)")
        elif file_sha256(path) != meta["sha256"]:
            problems.append(f"{rel}: checksum differs from the manifest (the file changed after generation)")
    report.add("files", problems, f"{len(manifest['files'])} files, sizes and SHA-256 as recorded")
    return not fatal


def _check_arrays(report: VerifyReport, folder: Path, manifest: dict, layout: Layout) -> dict | None:
    h5py = require("h5py")
    path = folder / DATA_DIR / MAIN_FILE
    problems: list[str] = []
    arrays: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            for name in ARRAYS:
                meta = manifest["arrays"][name]
                key = f"{ARRAY_GROUP}/{name}"
                if key not in f:
                    problems.append(f"array {name} is missing")
                    continue
                d = f[key]
                if list(d.shape) != meta["shape"] or d.dtype.name != meta["dtype"]:
                    problems.append(f"array {name} is {d.dtype.name}{list(d.shape)}, expected "
                                    f"{meta['dtype']}{meta['shape']}")
                    continue
                arrays[name] = d[()]
                if array_sha256(arrays[name]) != meta["sha256"]:
                    problems.append(f"array {name}: checksum differs from the manifest (its bytes changed)")
    except (OSError, KeyError, ValueError) as exc:
        report.add("arrays", [f"cannot read {DATA_DIR}/{MAIN_FILE} (truncated or damaged: {exc})"])
        return None
    report.add("arrays", problems, f"{len(ARRAYS)} arrays, shapes, dtypes and SHA-256 as recorded")
    # Damaged bytes still let the later checks say where the damage lies; missing arrays do not.
    return arrays if len(arrays) == len(ARRAYS) else None


def _check_alignment(report: VerifyReport, a: dict, manifest: dict, layout: Layout) -> None:
    H, L, C = layout.horizon, layout.slate_size, layout.num_candidates
    problems = []

    def episodes(mask: np.ndarray) -> str:
        idx = np.flatnonzero(mask)
        return ", ".join(map(str, idx[:MAX_LISTED])) + (" ..." if len(idx) > MAX_LISTED else "")

    expected_term = np.zeros(H, bool)
    expected_term[-1] = True
    bad = (a["terminations"] != expected_term).any(axis=1)
    if bad.any():
        problems.append(f"episodes {episodes(bad)}: terminations are not set exactly on the last turn")
    if a["truncations"].any():
        problems.append(f"episodes {episodes(a['truncations'].any(axis=1))}: truncations set (never expected)")
    first = a["last_choice"][:, 0] != -1
    if first.any():
        problems.append(f"episodes {episodes(first)}: observation 0 carries a choice (a shifted episode?)")
    rest = a["last_choice"][:, 1:]
    bad = ((rest < 0) | (rest >= L)).any(axis=1)
    if bad.any():
        problems.append(f"episodes {episodes(bad)}: a turn without a valid choice")
    first_images = np.abs(a["last_images"][:, 0].astype(np.float32)).sum(axis=(1, 2)) != 0
    if first_images.any():
        problems.append(f"episodes {episodes(first_images)}: observation 0 carries images (a shifted episode?)")
    acts = a["actions"]
    ordered = np.sort(acts, axis=2)
    bad = ((acts < 0) | (acts >= C)).any(axis=(1, 2)) | (ordered[..., 1:] == ordered[..., :-1]).any(axis=(1, 2))
    if bad.any():
        problems.append(f"episodes {episodes(bad)}: a slate with an index out of 0..{C - 1} or a repeat")
    seeds = manifest["spec"]["seed"] + np.arange(len(a["seeds"]))
    bad = a["seeds"] != seeds
    if bad.any():
        problems.append(f"episodes {episodes(bad)}: seed is not the generation seed + episode index")
    report.add("alignment", problems, f"{len(acts)} episodes: {H + 1} observations and {H} actions each, "
                                      "terminal on the last turn, seeds in order")


def _check_minari(report: VerifyReport, folder: Path, manifest: dict, layout: Layout, a: dict) -> None:
    """Minari's view: metadata counts, one episode group per episode mapped onto its own row."""
    h5py = require("h5py")
    minari = require("minari")
    E, H = int(manifest["episodes"]), layout.horizon
    problems = []
    try:
        ds = minari.MinariDataset(folder / DATA_DIR)
        if ds.total_episodes != E or ds.total_steps != E * H:
            problems.append(f"Minari metadata says {ds.total_episodes} episodes and {ds.total_steps} steps, "
                            f"expected {E} and {E * H}")
    except Exception as exc:  # Minari raises many kinds; any of them means it cannot load the dataset
        report.add("minari", [f"minari cannot open {DATA_DIR}/ ({type(exc).__name__}: {exc})"])
        return
    with h5py.File(folder / DATA_DIR / MAIN_FILE, "r") as f:
        problems += _episode_views(f, layout, E)
        for path in ("terminations", "truncations"):
            shared = f.get(f"{ARRAY_GROUP}/minari_{path}")
            if shared is not None and not (a[path] == shared[()]).all():
                problems.append(f"the shared {path} differ from the arrays")
    sample = sorted({0, E - 1, *np.random.default_rng(0).choice(E, min(E, 16), replace=False).tolist()})
    for ep in ds.iterate_episodes(sample):
        i = int(ep.id)
        for key in ("candidates", "last_images", "last_choice"):
            if not np.array_equal(ep.observations[key], a[key][i]):
                problems.append(f"episode {i}: Minari's observations[{key}] differ from the stored arrays")
        if not np.array_equal(ep.actions, a["actions"][i]) or not np.array_equal(ep.rewards, a["rewards"][i]):
            problems.append(f"episode {i}: Minari's actions or rewards differ from the stored arrays")
    report.add("minari", problems, f"{E} episode groups, each a view of its own row; {len(sample)} episodes "
                                   "read through minari equal the arrays")


def _episode_views(f, layout: Layout, episodes: int) -> list[str]:
    """Check every Minari episode group (low-level calls: 30,000 episodes hold 300,000 HDF5 objects).

    Each must hold its datasets with the right shapes; the per-step ones must
    be views of the episode's own row, ``terminations``/``truncations`` the
    shared copies.
    """
    from h5py import h5d, h5g

    shapes = layout.shapes(1)
    shared = {}
    for name in ("terminations", "truncations"):
        try:
            shared[name] = f.id.links.get_info(f"/{ARRAY_GROUP}/minari_{name}".encode()).u
        except KeyError:
            shared[name] = None
    problems = []
    for i in range(episodes):
        name = f"episode_{i}"
        try:
            g = h5g.open(f.id, name.encode())
        except KeyError:
            problems.append(f"{name} is missing")
            continue
        for path, array in MINARI_VIEWS:
            try:
                if path in shared:
                    if g.links.get_info(path.encode()).u != shared[path]:
                        problems.append(f"{name}/{path} is not the shared copy")
                    continue
                d = h5d.open(g, path.encode())
            except KeyError:
                problems.append(f"{name}/{path} is missing")
                continue
            want = shapes[array][0][1:]
            shape = d.get_space().shape
            if shape != want:
                problems.append(f"{name}/{path} has shape {shape}, expected {want} "
                                f"({'observations' if 'obs' in path else 'steps'} misaligned)")
                continue
            row = _virtual_row(d)
            if row != i:
                problems.append(f"{name}/{path} shows " + ("a copy, not a view of its row" if row is None
                                                           else f"episode {row}'s data, not its own"))
    return problems


def _virtual_row(d) -> int | None:
    """The source row a virtual dataset (a low-level ``DatasetID``) maps; ``None`` for a plain dataset."""
    from h5py import h5d

    plist = d.get_create_plist()
    if plist.get_layout() != h5d.VIRTUAL or plist.get_virtual_count() != 1:
        return None
    start, _ = plist.get_virtual_srcspace(0).get_select_bounds()
    return int(start[0])


def _check_turns(report: VerifyReport, folder: Path, a: dict, layout: Layout) -> None:
    pq = require("pyarrow.parquet")
    E, H, L = len(a["seeds"]), layout.horizon, layout.slate_size
    try:
        t = pq.read_table(folder / TURNS_FILE, columns=["episode", "seed", "turn", "slate", "choice", "reward"])
    except Exception as exc:  # pyarrow raises several kinds for a damaged file
        report.add("turns", [f"cannot read {TURNS_FILE} ({type(exc).__name__}: {exc})"])
        return
    problems = []
    if t.num_rows != E * H:
        problems.append(f"{t.num_rows} rows, expected {E * H} (one per turn)")
    else:
        col = {k: t.column(k).to_numpy() for k in ("episode", "seed", "turn", "choice", "reward")}
        slate = np.stack(t.column("slate").to_numpy(zero_copy_only=False)) if E else np.zeros((0, L))
        expect = {"episode": np.repeat(np.arange(E), H), "seed": np.repeat(a["seeds"], H),
                  "turn": np.tile(np.arange(H), E), "choice": a["last_choice"][:, 1:].reshape(-1),
                  "reward": a["rewards"].reshape(-1)}
        for k, v in expect.items():
            if not np.array_equal(col[k], v):
                problems.append(f"column {k} differs from the arrays")
        if not np.array_equal(slate, a["actions"].reshape(-1, L)):
            problems.append("column slate differs from the arrays")
    report.add("turns", problems, f"{TURNS_FILE}: {t.num_rows} turns agree with the arrays")


def _check_world(report: VerifyReport, manifest: dict):
    from simulators.files import fingerprint

    kwargs = manifest["env_kwargs"]
    try:
        world = world_of(kwargs)
    except (ValueError, OSError, ImportError) as exc:
        report.add("world", [f"cannot build world {kwargs['world']!r} here ({exc}); no replay"])
        return None
    problems = identity_differences(manifest["world"], world_identity(world))
    if kwargs["prompts"] and fingerprint(files=[kwargs["prompts"]]) != manifest.get("prompts_fingerprint"):
        problems.append(f"the prompt file {kwargs['prompts']!r} changed since generation")
    ok = report.add("world", problems, f"world {kwargs['world']!r} here is the one that generated the data "
                                       "(encoder, candidates, images, user model, prompts)")
    return world if ok else None


def _replay(report: VerifyReport, manifest: dict, layout: Layout, a: dict, world, n: int, seed: int) -> None:
    from pasta_env.vector_env import PastaT2IVectorEnv

    E, H = len(a["seeds"]), layout.horizon
    picked = np.sort(np.random.default_rng(seed).choice(E, min(n, E), replace=False))
    env = PastaT2IVectorEnv(num_envs=len(picked), world=world,
                            config=env_config_of(manifest["env_kwargs"], expose_user_type=True),
                            num_threads=1)
    t0 = time.perf_counter()
    dt = np.dtype(layout.precision)
    mismatch: dict[int, str] = {}

    def compare(what: str, replayed: np.ndarray, stored: np.ndarray, turn: int | None = None) -> None:
        bad = ~np.all((replayed == stored).reshape(len(picked), -1), axis=1)
        for j in np.flatnonzero(bad):
            where = f" at turn {turn}" if turn is not None else ""
            mismatch.setdefault(int(picked[j]), f"{what} differ{where}")

    try:
        obs, info = env.reset(seed=[int(s) for s in a["seeds"][picked]])
        compare("user types", info["user_type"], a["user_type"][picked])
        compare("initial prompts", obs["initial_prompt"].astype(dt), a["request"][picked])
        compare("candidates", obs["candidates"].astype(dt), a["candidates"][picked, 0], 0)
        for t in range(H):
            obs, reward, *_, info = env.step(a["actions"][picked, t])
            compare("rewards", reward, a["rewards"][picked, t], t)
            compare("choices", info["choice"], a["last_choice"][picked, t + 1], t)
            compare("images", obs["history_slate_images"][:, t].astype(dt), a["last_images"][picked, t + 1], t)
            compare("candidates", obs["candidates"].astype(dt), a["candidates"][picked, t + 1], t + 1)
    finally:
        env.close()
    problems = [f"episode {i}: replayed {what}" for i, what in sorted(mismatch.items())]
    report.add("replay", problems, f"{len(picked)} episodes replayed from their seeds and stored slates match "
                                   f"step by step ({time.perf_counter() - t0:.1f} s)")


def info(folder: str | Path) -> dict[str, Any]:
    """Size, episodes, policy, world and the returns of a dataset (or how far an unfinished one got).

    Raises:
        FileFormatError: ``folder`` is not a dataset.
    """
    folder = Path(folder)
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file() and (folder / PARTIAL).is_dir():
        chunks = sorted((folder / PARTIAL).glob("chunk-*.npz"))
        return {"folder": str(folder), "complete": False, "chunks_done": len(chunks),
                "bytes": sum(files.values()),
                "hint": "rerun the same `pasta generate` command to finish it"}
    m = read_manifest(folder)
    spec = m["spec"]
    return {"folder": str(folder), "complete": True, "dataset_id": m["dataset_id"], "episodes": m["episodes"],
            "steps": m["steps"], "policy": spec["policy"], "epsilon": spec["epsilon"], "seed": spec["seed"],
            "world": m["world"]["name"], "prompts": m["env_kwargs"]["prompts"], "precision": m["layout"]["precision"],
            "bytes": sum(files.values()), "files": files, "returns": m["returns"], "created": m["created"],
            "code_version": m["code_version"], "timings": m.get("timings", {})}
