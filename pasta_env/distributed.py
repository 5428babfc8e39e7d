"""Past one machine: shards of episodes on Ray workers (dataset generation and evaluation).

A :class:`RayBackend` says where to run (a local Ray started on this
machine's cores, or a running cluster) and how to size the workers. A
:class:`WorkerPool` starts one Ray actor per worker; each actor builds its
world (and policy, or agents) once, the first time it is asked for
anything, on its GPU when it has one, and then plays the shards it is handed.
Shards go to whichever worker is free (Ray's ``ActorPool``), and results come
back in the order they finish.

Faults are Ray's to handle: an actor whose process dies (killed, out of
memory, its node lost) is restarted, on another node if its own is gone,
and the shard it was playing is retried there (``max_restarts`` and
``max_task_retries``). Only a worker that dies more often than that ends
the run, with an error that says so; completed shards of a dataset are on
disk by then, and a rerun continues from them.

Ray is an optional dependency: ``pip install 'pasta-t2i[ray]'``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulators.backends import require
from simulators.errors import PastaError

#: ``--backend`` choices of the command line.
BACKENDS = ("local", "ray")


class WorkerError(PastaError, RuntimeError):
    """A Ray worker died more often than it may be restarted, or could not be started."""


@dataclass(frozen=True)
class RayBackend:
    """Where and how wide to run on Ray.

    Attributes:
        address: ``None`` starts a local Ray with this machine's cores (or
            joins the cluster named by ``RAY_ADDRESS``); ``"auto"`` joins the
            cluster running on this machine; ``"ray://HOST:PORT"`` a remote
            one through Ray Client; ``"HOST:PORT"`` a cluster's GCS.
        num_workers: Actors to start; ``None``: as many as the cluster's
            free CPUs (or GPUs, with ``gpus_per_worker``) allow, at most one
            per shard.
        gpus_per_worker: GPUs each actor holds (fractions share a GPU);
            the actor's world then loads its models there.
        cpus_per_worker: CPUs each actor holds (and the threads it steps with).
        max_restarts: How often a dead actor is restarted and its shard
            retried before the run fails.
    """

    address: str | None = None
    num_workers: int | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    max_restarts: int = 3

    def __post_init__(self):
        if self.num_workers is not None and (not isinstance(self.num_workers, int) or self.num_workers < 1):
            raise ValueError(f"num_workers must be a positive integer or None, got {self.num_workers!r}")
        if not (isinstance(self.gpus_per_worker, (int, float)) and 0 <= self.gpus_per_worker
                and math.isfinite(self.gpus_per_worker)):
            raise ValueError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker!r}")
        if not (isinstance(self.cpus_per_worker, (int, float)) and self.cpus_per_worker > 0
                and math.isfinite(self.cpus_per_worker)):
            raise ValueError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker!r}")
        if not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise ValueError(f"max_restarts must be a non-negative integer, got {self.max_restarts!r}")

    @property
    def threads(self) -> int:
        """Threads a worker steps its envs with: its CPUs, at least one."""
        return max(1, int(self.cpus_per_worker))


def _start_ray(ray, backend: RayBackend) -> bool:
    """Connect to (or start) Ray; whether this call started it (and so must shut it down)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"address": backend.address, "include_dashboard": False, "logging_level": "WARNING",
                              "configure_logging": True}
    if backend.address is None and not os.environ.get("RAY_ADDRESS"):
        kwargs["num_cpus"] = os.cpu_count() or 1
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise WorkerError(f"cannot reach the Ray cluster at {backend.address!r} ({exc}); start it with `ray start "
                          "--head`, or leave --address out to start a local Ray") from exc
    return True


def _worker_count(ray, backend: RayBackend, shards: int) -> int:
    """Workers to start: as asked (if the cluster can hold them), else as many as it holds; at most one per shard.

    Raises:
        WorkerError: The cluster cannot hold the workers asked for (their actors would wait forever).
    """
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    fits = int(cpus // backend.cpus_per_worker)
    if backend.gpus_per_worker > 0:
        fits = min(fits, int(gpus // backend.gpus_per_worker))
    if fits < 1 or (backend.num_workers is not None and backend.num_workers > fits):
        want = backend.num_workers or 1
        gpu = f" and {backend.gpus_per_worker:g} GPUs" if backend.gpus_per_worker > 0 else ""
        raise WorkerError(f"{want} Ray workers of {backend.cpus_per_worker:g} CPUs{gpu} each do not fit the cluster "
                          f"({cpus:g} CPUs, {gpus:g} GPUs); lower --num-workers, --cpus-per-worker or "
                          "--gpus-per-worker, or add nodes")
    return max(1, min(backend.num_workers or fits, shards))


class WorkerPool:
    """Ray actors of one class, each built once; shards handed to free actors, results as they finish.

    Args:
        backend: Where and how wide to run.
        worker: The worker class (instantiated in each actor with ``args``);
            its methods are called by name.
        args: The worker's constructor arguments (pickled to the actors).
        shards: How many shards there are (no more actors are started).

    Use as a context manager: leaving it stops the actors, and Ray too if
    the pool started it.
    """

    def __init__(self, backend: RayBackend, worker: type, args: tuple, shards: int):
        ray = self.ray = require("ray", "--backend ray")
        from ray.util import ActorPool

        self.backend = backend
        self.started = _start_ray(ray, backend)
        try:
            count = _worker_count(ray, backend, shards)
            remote = ray.remote(num_cpus=backend.cpus_per_worker, num_gpus=backend.gpus_per_worker,
                                max_restarts=backend.max_restarts, max_task_retries=backend.max_restarts)(worker)
            self.actors = [remote.remote(*args) for _ in range(count)]
            self.pool = ActorPool(list(self.actors))
        except BaseException:
            self.close()
            raise
        self.in_flight = 0

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def size(self) -> int:
        """Number of actors."""
        return len(self.actors)

    def call_all(self, method: str, *args) -> list[Any]:
        """Call ``method`` on every actor at once; their results in actor order (a worker's error raised here)."""
        return self._get(lambda: self.ray.get([getattr(a, method).remote(*args) for a in self.actors]))

    def submit(self, method: str, items: Iterable[Any]) -> None:
        """Queue ``method(item)`` for each item; free actors take them in order."""
        for item in items:
            self.pool.submit(lambda actor, value: getattr(actor, method).remote(value), item)
            self.in_flight += 1

    def next(self) -> Any:
        """The next result to finish (any order)."""
        if not self.in_flight:
            raise RuntimeError("no shard is in flight")
        result = self._get(self.pool.get_next_unordered)
        self.in_flight -= 1
        return result

    def _get(self, fetch: Callable[[], Any]) -> Any:
        ray = self.ray
        try:
            return fetch()
        except ray.exceptions.RayTaskError as exc:  # the worker's own exception: raised as itself
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        except ray.exceptions.RayActorError as exc:
            raise WorkerError(f"a Ray worker died {self.backend.max_restarts + 1} times (restarted and its shard "
                              f"retried {self.backend.max_restarts} times): {str(exc).strip().splitlines()[0]}; "
                              "completed shards are kept, rerun the same command to continue") from exc

    def close(self) -> None:
        """Stop the actors (and Ray, if this pool started it)."""
        for actor in getattr(self, "actors", []):
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - an actor already gone
                pass
        self.actors = []
        if self.started:
            self.ray.shutdown()
            self.started = False


def one_blas_thread():
    """A context in which numpy's BLAS runs on one thread.

    A matrix product's last bits depend on how BLAS splits it over threads,
    and agents (and the harness's measures) use numpy products: shards run
    under this context give the same numbers in every process, whatever
    threads the process (or its Ray worker) was given. The products are small,
    so one thread is also the fast choice.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def shard_seed(seed: int, shard: int, stream: int = 0) -> int:
    """A seed for shard ``shard`` of a run seeded ``seed`` (``stream`` tells its uses apart).

    Seeding a policy per shard from ``(seed, shard)`` rather than once per run
    makes a shard's episodes independent of the shards played before it in
    the same process, so shards can run anywhere, in any order.
    """
    return int(np.random.SeedSequence([seed, shard, stream]).generate_state(1)[0])
