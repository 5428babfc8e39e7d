"""Generate trajectory datasets: any policy, the vector env, chunks that survive an interrupt.

Episodes are rolled out in chunks of ``chunk`` episodes on the native vector
env; episode ``e`` is the env reset with seed ``seed + e`` (as in the
evaluation harness). Each finished chunk is written to ``<dir>/.partial/``
(a Parquet file of its turns, then an ``.npz`` of its arrays, each via a
temp file and a rename; the ``.npz`` marks the chunk done). A rerun with the
same arguments skips the done chunks, so an interrupt (Ctrl-C, SIGKILL, a
power cut) loses at most the chunk in flight, and the result equals an
uninterrupted run's byte for byte in its arrays: the policy and the
epsilon-mixing draws are seeded per chunk from ``(seed, chunk index)``.
When every chunk is done, the chunks are assembled into the dataset
(:mod:`pasta_env.datasets.store`, ``turns.parquet``) and ``manifest.json``
is written last: a dataset without it is unfinished.

With ``backend=RayBackend(...)`` the chunks are the shards of a Ray run
(:mod:`pasta_env.distributed`): each worker builds the world and the policy
once and rolls out the chunks it is handed; the driver writes each chunk
as it arrives, in whatever order they finish, and assembles them in order.
A chunk is the same whichever process rolls it out, so the dataset equals the
single-process one byte for byte in its arrays, and a run interrupted under
one backend can be finished under the other.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pasta_env.config import EnvConfig
from pasta_env.core import DYNAMICS_VERSION
from pasta_env.datasets.identity import same_world, world_identity
from pasta_env.datasets.layout import ARRAYS, PRECISIONS, Layout
from pasta_env.datasets.manifest import MANIFEST, PARTIAL, TURNS_FILE, read_manifest, returns_summary
from pasta_env.datasets.store import DATA_DIR, MAIN_FILE, HDF5Writer, env_spec_for, file_sha256
from pasta_env.datasets.turns import arrow_texts, turn_table
from pasta_env.distributed import RayBackend, WorkerPool, one_blas_thread, shard_seed
from pasta_env.env import PRIVILEGED_INFO_KEYS
from pasta_env.vector_env import PastaT2IVectorEnv
from pasta_env.worlds import World, build_world
from simulators.atomic import atomic_path, write_json
from simulators.backends import require
from simulators.files import FileFormatError, WriteLock, claim_output_dir, code_version, fingerprint, read_npz


@dataclass(frozen=True)
class DatasetSpec:
    """What to generate.

    Attributes:
        episodes: Number of episodes ``E``.
        policy: Behaviour policy: the name ``make_policy`` builds it from (for
            :func:`agents.make_agent`, ``lmm``, ``bayes``, ``iql:MODEL``...).
        seed: Episode ``e`` is the env reset with seed ``seed + e``; the policy
            and the epsilon draws are seeded from it too.
        epsilon: Probability that a turn's slate is uniformly random instead of
            the policy's (recorded per turn as ``explored``).
        world: Registered world name.
        world_options: Options of the world's factory (JSON values, recorded
            in the manifest so the world can be rebuilt), e.g.
            ``{"clip_model": "ViT-H-14", "device": "cuda"}``.
        prompts: A file of initial prompts (one per line, or CSV/TSV with a
            ``Prompt`` column); ``None`` for the world's pool.
        config: MDP sizes and reward (``expose_user_type`` must stay ``False``:
            the generator records the hidden type itself, as a label).
        chunk: Episodes per chunk (users simulated at once; the unit of resume).
        precision: ``"float16"`` (default) or ``"float32"`` for embeddings.
        dataset_id: Minari dataset id ``namespace/name-vN``; default
            ``pasta-t2i/<policy>-v0`` (``-eps<percent>`` added with epsilon).
    """

    episodes: int
    policy: str = "lmm"
    seed: int = 0
    epsilon: float = 0.0
    world: str = "synthetic"
    prompts: str | None = None
    config: EnvConfig = field(default_factory=EnvConfig)
    chunk: int = 1024
    precision: str = "float16"
    dataset_id: str | None = None
    world_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("episodes", "chunk"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.config.expose_user_type:
            raise ValueError("config.expose_user_type must be False: the dataset records the hidden type as a "
                             "label, and only a privileged policy sees it while acting")
        try:
            json.dumps(self.world_options, allow_nan=False)
        except (TypeError, ValueError):
            raise ValueError("world_options must be JSON values (strings, numbers, booleans, null, lists): the "
                             "manifest records them so that the world can be rebuilt; pass ready-made parts to "
                             "the env instead") from None

    @property
    def minari_id(self) -> str:
        """The Minari dataset id."""
        if self.dataset_id:
            return self.dataset_id
        eps = f"-eps{round(self.epsilon * 100)}" if self.epsilon else ""
        name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in self.policy)
        return f"pasta-t2i/{name}{eps}-v0"

    def env_kwargs(self) -> dict[str, Any]:
        """The env's constructor arguments (recorded so that the env can be recovered)."""
        cfg = self.config.to_dict()
        cfg.pop("expose_user_type")
        extra = {"world_kwargs": dict(self.world_options)} if self.world_options else {}
        return {**cfg, "world": self.world, "prompts": self.prompts, **extra}

    def make_world(self) -> World:
        """Build the world this spec names, with its options."""
        return build_world(self.world, self.prompts, self.config.num_candidates, self.world_options)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        d = asdict(self)
        d["config"] = self.config.to_dict()
        d["dataset_id"] = self.minari_id
        return d


def _policy_factory(make_policy: Callable | None) -> Callable:
    if make_policy is None:
        raise ValueError("generate() needs make_policy, the factory that turns the spec's policy name into a "
                         "policy: e.g. make_policy=agents.make_agent (`pasta generate` passes it)")
    return make_policy


def generate(out_dir: str | Path, spec: DatasetSpec, progress: bool = True, overwrite: bool = False,
             make_policy: Callable | None = None, backend: RayBackend | None = None) -> dict[str, Any]:
    """Generate a dataset into ``out_dir``, or finish one an interrupt left unfinished.

    Args:
        out_dir: The dataset folder. A folder holding another run's files is
            refused unless ``overwrite``; a rerun with the same spec continues
            (or, if the dataset is complete, returns its manifest).
        spec: What to generate.
        progress: Show progress bars.
        overwrite: Replace another run's files in ``out_dir``.
        make_policy: ``(name, world, config, seed) -> policy`` (an object with
            ``reset(seed)``, ``act(obs, info)`` on batched observations, and
            optionally ``privileged``), called with ``spec.policy``: e.g.
            :func:`agents.make_agent`, the registry of agents (this layer
            does not know them). With Ray it is pickled to the workers, so
            give a module-level function or a picklable object.
        backend: ``None`` rolls out in this process; a
            :class:`~pasta_env.distributed.RayBackend` on Ray workers, one
            chunk per shard (the world and the policy are built on the
            workers, not here). Either gives the same dataset.

    Returns:
        The manifest (see :func:`pasta_env.datasets.manifest.read_manifest`).

    Raises:
        OutputError: ``out_dir`` holds another run's files.
        BusyError: Another process is writing ``out_dir``.
        ValueError: Unknown policy or world, bad prompts or world options.
        DependencyNotInstalled: ``backend`` is Ray's and Ray is not installed.
        WorkerError: A Ray worker died more often than it may be restarted.
    """
    out = Path(out_dir).absolute()  # Minari joins a relative dataset root twice
    _policy_factory(make_policy)
    if spec.prompts is not None:  # stored absolute: the manifest means the same file from any folder
        spec = replace(spec, prompts=str(Path(spec.prompts).resolve()))
    for module in ("h5py", "minari", "pyarrow"):
        require(module)
    source: _Source
    if backend is None:
        source = _LocalSource(ChunkMaker(spec, make_policy))  # unknown names fail before any file is touched
    else:
        source = _RaySource(spec, make_policy, backend)
    with source:
        facts = source.facts()
        prompts_fp = fingerprint(files=[spec.prompts]) if spec.prompts else None
        identity = {"command": "generate", "spec": spec.to_dict(), "prompts_fingerprint": prompts_fp,
                    "world": facts["identity"]}
        with WriteLock(out):
            claim_output_dir(out, identity, overwrite, inputs=[spec.prompts])
            if (out / MANIFEST).is_file():
                return read_manifest(out)
            return _Run(out, spec, facts, source, identity, progress).run()


def chunk_bounds(spec: DatasetSpec, i: int) -> tuple[int, int]:
    """The episodes ``[a, b)`` of chunk ``i``."""
    a = i * spec.chunk
    return a, min(a + spec.chunk, spec.episodes)


class ChunkMaker:
    """Rolls out the chunks of a spec: the world and the policy built once (what a worker holds).

    Chunk ``i`` holds episodes ``[i * chunk, ...)``; the env is reset with
    seed ``spec.seed + start`` and the policy and the epsilon draws are
    seeded from ``(spec.seed, i)``, so a chunk is the same whichever process
    rolls it out, and in whatever order.

    Args:
        spec: What to generate.
        make_policy: As for :func:`generate`.
        num_threads: Threads of the vector env (``None``: its default).
    """

    def __init__(self, spec: DatasetSpec, make_policy: Callable | None = None, num_threads: int | None = None):
        self.spec = spec
        self.world = spec.make_world()
        self.policy = _policy_factory(make_policy)(spec.policy, self.world, spec.config, spec.seed)
        self.num_threads = num_threads
        cfg = spec.config
        self.layout = Layout(cfg.horizon, cfg.num_candidates, cfg.slate_size, self.world.dim, spec.precision)
        self.envs: dict[int, PastaT2IVectorEnv] = {}

    def facts(self) -> dict[str, Any]:
        """What the driver needs to know of the world: its identity, dimension and categories."""
        cands = self.world.candidates
        return {"identity": world_identity(self.world), "dim": self.world.dim,
                "categories": list(cands.categories), "category_of": np.asarray(cands.category_of).tolist()}

    def make(self, i: int) -> tuple[int, dict[str, np.ndarray], Any]:
        """Roll out chunk ``i``: ``(i, arrays, turn table)``."""
        a, b = chunk_bounds(self.spec, i)
        n = b - a
        if n not in self.envs:
            config = replace(self.spec.config, expose_user_type=True)  # the label; filtered for the policy
            threads = None if self.num_threads is None else max(1, min(self.num_threads, n))
            self.envs[n] = PastaT2IVectorEnv(num_envs=n, world=self.world, config=config, num_threads=threads)
        with one_blas_thread():
            arrays, texts = self.rollout(self.envs[n], i, a)
        cands = self.world.candidates
        return i, arrays, turn_table(a, arrays, texts, cands.categories, cands.category_of)

    def rollout(self, env: PastaT2IVectorEnv, i: int, start: int) -> tuple[dict, dict]:
        spec, layout, core = self.spec, self.layout, env.core
        n, H = env.num_envs, layout.horizon
        C, L = layout.num_candidates, layout.slate_size
        arrays = {k: np.zeros(shape, dt) for k, (shape, dt) in layout.shapes(n).items()}
        obs, info = env.reset(seed=spec.seed + start)
        self.policy.reset(seed=shard_seed(spec.seed, i, 0))
        rng = np.random.default_rng(shard_seed(spec.seed, i, 1))
        privileged = bool(getattr(self.policy, "privileged", False))
        texts: dict[str, list] = {"initial": [arrow_texts(core.request)], "prompt": [], "candidates": []}
        arrays["candidates"][:, 0] = obs["candidates"]
        arrays["request"][:] = obs["initial_prompt"]
        arrays["seeds"][:] = spec.seed + start + np.arange(n)
        arrays["user_type"][:] = info["user_type"]
        arrays["last_choice"][:, 0] = -1
        for t in range(H):
            texts["prompt"].append(arrow_texts(core.cur))
            texts["candidates"].append(arrow_texts(core.cands))
            shown = info if privileged else {k: v for k, v in info.items() if k not in PRIVILEGED_INFO_KEYS}
            slates = np.asarray(self.policy.act(obs, shown))
            if spec.epsilon > 0:
                explore = rng.random(n) < spec.epsilon
                slates = np.where(explore[:, None], rng.integers(0, C, (n, L)), slates)
                arrays["explored"][:, t] = explore
            obs, reward, term, trunc, info = env.step(slates)
            arrays["actions"][:, t] = info["slate"]
            arrays["rewards"][:, t] = reward
            arrays["terminations"][:, t] = term
            arrays["truncations"][:, t] = trunc
            arrays["last_choice"][:, t + 1] = info["choice"]
            arrays["last_images"][:, t + 1] = obs["history_slate_images"][:, t]
            arrays["candidates"][:, t + 1] = obs["candidates"]
        return arrays, texts

    def close(self) -> None:
        """Stop the envs' worker threads."""
        for env in self.envs.values():
            env.close()
        self.envs.clear()


class ChunkWorker:
    """A Ray actor's state: a :class:`ChunkMaker`, built on the first call (and again after a restart)."""

    def __init__(self, spec: DatasetSpec, make_policy: Callable | None, num_threads: int):
        self.args = (spec, make_policy, num_threads)
        self.maker: ChunkMaker | None = None

    def _ready(self) -> ChunkMaker:
        if self.maker is None:
            self.maker = ChunkMaker(*self.args)
        return self.maker

    def facts(self) -> dict[str, Any]:  # noqa: D102 - ChunkMaker.facts
        return self._ready().facts()

    def make(self, i: int):  # noqa: D102 - ChunkMaker.make
        return self._ready().make(i)


class _Source:
    """Where chunks come from: ``facts()``, ``submit(indices)``, ``next() -> (i, arrays, table)``."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def facts(self) -> dict[str, Any]:
        raise NotImplementedError

    def submit(self, indices: list[int]) -> None:
        raise NotImplementedError

    def next(self) -> tuple[int, dict, Any]:
        raise NotImplementedError

    def describe(self) -> str:
        return ""

    def close(self) -> None:
        pass


class _LocalSource(_Source):
    """Chunks rolled out in this process, in the order they are submitted."""

    def __init__(self, maker: ChunkMaker):
        self.maker = maker
        self.queue: list[int] = []

    def facts(self) -> dict[str, Any]:
        return self.maker.facts()

    def submit(self, indices: list[int]) -> None:
        self.queue[:0] = indices  # first: a damaged chunk found while assembling is needed next

    def next(self) -> tuple[int, dict, Any]:
        return self.maker.make(self.queue.pop(0))

    def close(self) -> None:
        self.maker.close()


class _RaySource(_Source):
    """Chunks rolled out by Ray workers, one shard each; results in the order they finish."""

    def __init__(self, spec: DatasetSpec, make_policy: Callable | None, backend: RayBackend):
        shards = math.ceil(spec.episodes / spec.chunk)
        self.pool = WorkerPool(backend, ChunkWorker, (spec, make_policy, backend.threads), shards)

    def facts(self) -> dict[str, Any]:
        return same_world(self.pool.call_all("facts"))  # every worker builds its world and policy, at once

    def submit(self, indices: list[int]) -> None:
        self.pool.submit("make", indices)

    def next(self) -> tuple[int, dict, Any]:
        return self.pool.next()

    def describe(self) -> str:
        return f"{self.pool.size} Ray workers"

    def close(self) -> None:
        self.pool.close()


class _Run:
    """One generation run: roll out the missing chunks, then assemble."""

    def __init__(self, out: Path, spec: DatasetSpec, facts: dict[str, Any], source: _Source, identity: dict,
                 progress: bool):
        self.out, self.spec, self.facts, self.source, self.identity = out, spec, facts, source, identity
        self.progress = progress
        self.partial = out / PARTIAL
        cfg = spec.config
        self.layout = Layout(cfg.horizon, cfg.num_candidates, cfg.slate_size, facts["dim"], spec.precision)
        self.num_chunks = math.ceil(spec.episodes / spec.chunk)
        self.timings: dict[str, float] = {}
        self.arrived: set[int] = set()  # chunks written by this run but not yet assembled

    def chunk_path(self, i: int, suffix: str) -> Path:
        return self.partial / f"chunk-{i:05d}{suffix}"

    def bounds(self, i: int) -> tuple[int, int]:
        return chunk_bounds(self.spec, i)

    def chunk_written(self, i: int) -> bool:
        """Whether an earlier run finished chunk ``i`` (its files are read, and checked, when assembled)."""
        return self.chunk_path(i, ".npz").is_file() and self.chunk_path(i, ".parquet").is_file()

    def read_chunk(self, i: int) -> tuple[dict[str, np.ndarray], Any]:
        """Chunk ``i``'s arrays and turn table from ``.partial/``, checked.

        Raises:
            FileFormatError: Either file is damaged (the caller makes the chunk again).
        """
        a, b = self.bounds(i)
        arrays = read_npz(self.chunk_path(i, ".npz"), "a dataset chunk", required=ARRAYS)
        if len(arrays["seeds"]) != b - a:
            raise FileFormatError(f"{self.chunk_path(i, '.npz')}: {len(arrays['seeds'])} episodes, expected {b - a}")
        path = self.chunk_path(i, ".parquet")
        try:
            table = require("pyarrow.parquet").read_table(path)
        except Exception as exc:  # pyarrow raises several kinds for a damaged file
            raise FileFormatError(f"{path}: damaged chunk ({exc}); it is made again") from exc
        if table.num_rows != (b - a) * self.spec.config.horizon:
            raise FileFormatError(f"{path}: {table.num_rows} turns, expected {(b - a) * self.spec.config.horizon}")
        return arrays, table

    def run(self) -> dict[str, Any]:
        """Roll out the chunks not yet done while a second thread assembles the dataset, in order.

        The assembler writes the HDF5 file and the Parquet export into
        ``.partial/build`` as chunks arrive (from disk for chunks an earlier
        run finished), so writing overlaps the rollouts. An interrupted run
        leaves the chunks; its half-built files are discarded by the rerun.
        """
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        self.partial.mkdir(exist_ok=True)
        done = {i for i in range(self.num_chunks) if self.chunk_written(i)}
        done_eps = sum(b - a for a, b in map(self.bounds, done))
        where = self.source.describe()
        self.bar = tqdm(total=self.spec.episodes, initial=done_eps, unit="ep",
                        desc="generating" + (f" on {where}" if where else ""),
                        disable=not self.progress, leave=False, smoothing=0.1)
        self.chunks_done = len(done)
        self._postfix()
        assembler = _Assembler(self)
        try:
            self.source.submit([i for i in range(self.num_chunks) if i not in done])
            for i in range(self.num_chunks):
                a, b = self.bounds(i)
                if i in done:
                    try:
                        assembler.put(i, *self.read_chunk(i))
                        continue
                    except FileFormatError:  # damaged (e.g. by a disk error): made again
                        self.bar.update(a - b)
                        self.chunks_done -= 1
                        self.source.submit([i])
                arrays, table = self.wait_for(i)
                assembler.put(i, arrays, table)
            self.timings["rollout_s"] = time.perf_counter() - t0
            checksums, rewards = assembler.finish()
        except BaseException:
            assembler.abort()
            raise
        finally:
            self.bar.close()
        self.timings["generate_and_write_s"] = time.perf_counter() - t0
        return self.finalize(assembler.build, checksums, rewards)

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"chunks {self.chunks_done}/{self.num_chunks}", refresh=False)

    def wait_for(self, i: int) -> tuple[dict, Any]:
        """Chunk ``i``'s arrays and turn table (``None``: read it from disk); chunks that finish first are written."""
        while i not in self.arrived:
            j, arrays, table = self.source.next()
            self.write_chunk(j, arrays, table)
            a, b = self.bounds(j)
            self.chunks_done += 1
            self._postfix()
            self.bar.update(b - a)
            if j == i:
                return arrays, table
            self.arrived.add(j)  # on disk; read back when its turn comes (memory stays bounded)
        self.arrived.discard(i)
        return self.read_chunk(i)

    def write_chunk(self, i: int, arrays: dict, table) -> None:
        pq = require("pyarrow.parquet")
        with atomic_path(self.chunk_path(i, ".parquet")) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        with atomic_path(self.chunk_path(i, ".npz")) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # last: its presence marks the chunk done

    def finalize(self, build: Path, checksums: dict[str, str], rewards: np.ndarray) -> dict[str, Any]:
        """Checksum the built files, move them into place, write the manifest (last), drop the chunks."""
        t0 = time.perf_counter()
        spec, layout, out = self.spec, self.layout, self.out
        files = {}
        for rel in (f"{DATA_DIR}/{MAIN_FILE}", f"{DATA_DIR}/metadata.json", TURNS_FILE):
            path = build / rel
            files[rel] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
        shapes = layout.shapes(spec.episodes)
        manifest = {
            "format": "pasta-t2i trajectories", "format_version": 1,
            "dataset_id": spec.minari_id, "env_id": "PastaT2I-v0", "env_kwargs": spec.env_kwargs(),
            "spec": spec.to_dict(), "prompts_fingerprint": self.identity["prompts_fingerprint"],
            "world": self.identity["world"], "layout": asdict(layout),
            "categories": list(self.facts["category_of"]), "category_names": list(self.facts["categories"]),
            "episodes": spec.episodes, "steps": spec.episodes * layout.horizon,
            "arrays": {k: {"shape": list(shapes[k][0]), "dtype": shapes[k][1].name, "sha256": checksums[k]}
                       for k in ARRAYS},
            "files": files, "returns": returns_summary(rewards),
            "code_version": code_version(), "dynamics_version": DYNAMICS_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        # Into place: the data, the export, then the manifest (last: it marks the dataset complete).
        for rel in (DATA_DIR, TURNS_FILE):
            target = out / rel
            if target.is_dir():
                shutil.rmtree(target)
            (build / rel).replace(target)
        self.timings["finalize_s"] = time.perf_counter() - t0
        manifest["timings"] = {k: round(v, 3) for k, v in self.timings.items()}
        write_json(out / MANIFEST, manifest)
        shutil.rmtree(self.partial, ignore_errors=True)
        return manifest


class _Assembler:
    """Builds the dataset files in ``.partial/build`` from chunks handed over in order, on its own thread."""

    def __init__(self, run: _Run):
        import queue
        import threading

        self.run, self.build = run, run.partial / "build"
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.rewards: list[np.ndarray] = []
        self.writer: HDF5Writer | None = None
        self.turns: Any = None  # the Parquet writer, opened with the first chunk's schema
        self.stopped = False
        self.thread = threading.Thread(target=self._work, name="pasta-dataset-writer", daemon=True)
        shutil.rmtree(self.build, ignore_errors=True)
        self.build.mkdir()
        self.thread.start()

    def put(self, i: int, arrays: dict, table) -> None:
        """Hand over chunk ``i`` (its arrays, and its turn table or ``None`` to read it from disk)."""
        import queue

        while True:
            self._raise_if_dead()
            try:
                self.queue.put((i, arrays, table) if i >= 0 else None, timeout=0.5)
                return
            except queue.Full:
                continue

    def _raise_if_dead(self) -> None:
        if self.error is not None:
            raise self.error
        if not self.thread.is_alive():  # pragma: no cover - the thread records every error it dies of
            raise RuntimeError("the dataset writer stopped")

    def finish(self) -> tuple[dict[str, str], np.ndarray]:
        """Wait for the last chunk; the arrays' checksums and all rewards."""
        self.put(-1, {}, None)  # the end marker
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.writer is not None
        checksums = self.writer.close()
        if self.turns is not None:
            self.turns.close()
        return checksums, np.concatenate(self.rewards)

    def abort(self) -> None:
        """Stop the thread; the half-built files stay in ``.partial/build`` until a rerun discards them."""
        import queue

        self.stopped = True
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)
        self.thread.join(timeout=10)
        if self.writer is not None:
            self.writer.abort()

    def _work(self) -> None:
        try:
            run = self.run
            spec = run.spec
            t0 = time.perf_counter()
            algorithm = spec.policy + (f" with epsilon {spec.epsilon:g} random slates" if spec.epsilon else "")
            self.writer = HDF5Writer(
                self.build / DATA_DIR, run.layout, spec.episodes, env_spec_for(spec.env_kwargs()), spec.minari_id,
                {"algorithm_name": algorithm,
                 "description": f"{spec.episodes} episodes of PastaT2I-v0 (world {spec.world}) under {algorithm}; "
                                f"written by pasta-t2i {code_version()}. Observations are stored compactly (what "
                                "is new at each step); pasta_env.datasets.load rebuilds the env's full "
                                "observations."})
            pq = require("pyarrow.parquet")
            expected = 0
            while not self.stopped:
                item = self.queue.get()
                if item is None:
                    break
                i, arrays, table = item
                if i != expected:  # pragma: no cover - the producer hands chunks over in order
                    raise RuntimeError(f"chunk {i} arrived before chunk {expected}")
                expected += 1
                self.writer.append(arrays)
                self.rewards.append(arrays["rewards"])
                if table is None:
                    table = pq.read_table(run.chunk_path(i, ".parquet"))
                if self.turns is None:
                    self.turns = pq.ParquetWriter(self.build / TURNS_FILE, table.schema, compression="zstd")
                self.turns.write_table(table)
            run.timings["writer_busy_s"] = time.perf_counter() - t0
        except BaseException as exc:  # handed to the producer, which raises it
            self.error = exc
