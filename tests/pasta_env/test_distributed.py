"""Dataset generation and evaluation on Ray: the same results as one process, through killed workers and drivers.

Everything runs on a local Ray of two CPUs on loopback, started once for the
module; the driver-kill test runs its driver in a child process joined to
that Ray.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("minari")

from agents import make_agent  # noqa: E402
from agents.evaluation import evaluate  # noqa: E402
from pasta_cli.main import main  # noqa: E402
from pasta_env.datasets import DatasetSpec, generate, load, verify  # noqa: E402
from pasta_env.distributed import RayBackend, WorkerError, shard_seed  # noqa: E402

SPEC = DatasetSpec(episodes=300, policy="lmm", seed=3, chunk=64, epsilon=0.1)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of two CPUs for the module; the address a child process joins it by."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """SPEC generated in this process."""
    out = tmp_path_factory.mktemp("local") / "data"
    generate(out, SPEC, progress=False, make_policy=make_agent)
    return out


def same_data(a: Path, b: Path) -> None:
    """The arrays byte for byte, and the Parquet export's turns (texts included) value for value."""
    import pyarrow.parquet as pq

    x, y = load(a).arrays(), load(b).arrays()
    assert sorted(x) == sorted(y)
    for k in x:
        assert x[k].dtype == y[k].dtype and x[k].tobytes() == y[k].tobytes(), k
    assert pq.read_table(a / "turns.parquet").equals(pq.read_table(b / "turns.parquet"))


def test_a_dataset_generated_on_ray_equals_the_single_process_one(local_ray, reference, tmp_path):
    manifest = generate(tmp_path / "ray", SPEC, progress=False, make_policy=make_agent,
                        backend=RayBackend(num_workers=2))
    same_data(reference, tmp_path / "ray")
    assert manifest["world"] == json.loads((reference / "manifest.json").read_text())["world"]
    assert verify(tmp_path / "ray", replay=8).ok
    assert not (tmp_path / "ray" / ".partial").exists()


class KillOnce:
    """The lmm policy, except that the first process to reach turn 3 of chunk 2 kills itself there (SIGKILL).

    Every reset is logged (pid and seed) to ``log``; ``marker`` records the kill.
    """

    def __init__(self, world, config, seed, log: str, marker: str):
        self.inner = make_agent("lmm", world, config, seed)
        self.log, self.marker = log, marker
        self.turn = 0
        self.seed = None

    def reset(self, seed=None):
        self.inner.reset(seed)
        self.turn, self.seed = 0, seed
        with open(self.log, "a") as fh:
            fh.write(f"{os.getpid()} {seed}\n")

    def act(self, obs, info):
        self.turn += 1
        if self.turn == 3 and self.seed == shard_seed(SPEC.seed, 2):
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)  # mid-shard, no cleanup
        return self.inner.act(obs, info)


def test_a_worker_killed_mid_shard_is_restarted_and_its_shard_retried(local_ray, reference, tmp_path):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the policy travels to the workers
    log, marker = str(tmp_path / "resets.log"), str(tmp_path / "killed")

    def make_policy(name, world, config, seed):
        return KillOnce(world, config, seed, log, marker)

    generate(tmp_path / "ray", SPEC, progress=False, make_policy=make_policy, backend=RayBackend(num_workers=2))
    killed = int(Path(marker).read_text())
    resets = [line.split() for line in Path(log).read_text().splitlines()]
    shard2 = [int(pid) for pid, seed in resets if int(seed) == shard_seed(SPEC.seed, 2)]
    assert len(shard2) == 2 and shard2[0] == killed != shard2[1]  # shard 2 ran again, in a new process
    assert len(resets) == 5 + 1  # every shard once, and shard 2 twice: nothing else was redone
    same_data(reference, tmp_path / "ray")


def test_a_worker_that_keeps_dying_ends_the_run_with_a_clear_error(local_ray, tmp_path):
    def make_policy(name, world, config, seed):
        os.kill(os.getpid(), signal.SIGKILL)

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with pytest.raises(WorkerError, match="rerun the same command"):
        generate(tmp_path / "ray", SPEC, progress=False, make_policy=make_policy,
                 backend=RayBackend(num_workers=1, max_restarts=1))


DRIVER = """
import os, sys, time
from agents import make_agent
from pasta_env.datasets import DatasetSpec, generate
from pasta_env.distributed import RayBackend


class Slow:
    def __init__(self, world, config, seed):
        self.inner = make_agent("lmm", world, config, seed)

    def reset(self, seed=None):
        self.inner.reset(seed)
        with open({log!r}, "a") as fh:
            fh.write(f"{{seed}}\\n")

    def act(self, obs, info):
        time.sleep(0.05)
        return self.inner.act(obs, info)


spec = DatasetSpec(episodes=320, policy="lmm", seed=3, chunk=16, epsilon=0.1)
generate({out!r}, spec, progress=False, make_policy=lambda n, w, c, s: Slow(w, c, s),
         backend=RayBackend(address={address!r}, num_workers=2))
"""


def test_a_killed_driver_reruns_from_its_completed_shards(local_ray, tmp_path):
    out, log = tmp_path / "ray", tmp_path / "resets.log"
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER).format(log=str(log), out=str(out), address=local_ray))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list((out / ".partial").glob("chunk-*.npz"))) < 4 and proc.poll() is None:
        assert time.monotonic() < deadline, "no shard was written in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode() if proc.stderr else ""
    assert not (out / "manifest.json").exists()
    written = len(list((out / ".partial").glob("chunk-*.npz")))
    before = len(log.read_text().splitlines())
    proc = subprocess.run([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    resets = log.read_text().splitlines()
    assert len(resets) - before == 20 - written  # the rerun rolled out only the shards not on disk
    assert len(set(resets)) == 20
    spec = DatasetSpec(episodes=320, policy="lmm", seed=3, chunk=16, epsilon=0.1)
    generate(tmp_path / "local", spec, progress=False, make_policy=make_agent)
    same_data(tmp_path / "local", out)


def test_an_evaluation_on_ray_equals_the_local_one(local_ray):
    agents = ["random", "lmm", "bayes", "oracle"]
    local = evaluate(agents, episodes=200, seed=7, num_envs=64, progress=False)
    remote = evaluate(agents, episodes=200, seed=7, num_envs=64, progress=False, backend=RayBackend(num_workers=2))
    assert remote.ranking() == local.ranking()
    for name in agents:
        a, b = local.agents[name], remote.agents[name]
        for field in ("returns", "utilities", "entropies", "true_type_mass", "request_kept", "request_cosine"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=f"{name}.{field}")
    assert remote.comparisons() == local.comparisons()
    assert remote.settings == local.settings


def test_the_command_line_runs_on_ray_and_says_what_is_missing(local_ray, tmp_path, monkeypatch, capsys):
    args = ["generate", "--episodes", "40", "--chunk", "16", "--seed", "3", "--quiet", "--backend", "ray",
            "--address", local_ray, "--num-workers", "2"]
    assert main([*args, "--out", str(tmp_path / "ray")]) == 0
    assert main([*args[:-6], "--out", str(tmp_path / "local")]) == 0
    same_data(tmp_path / "local", tmp_path / "ray")
    assert main(["evaluate", "--agents", "random,bayes", "--episodes", "40", "--num-envs", "16", "--quiet",
                 "--backend", "ray", "--address", local_ray, "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["agents"]["bayes"]["episodes"] == 40
    capsys.readouterr()
    assert main(["generate", "--episodes", "4", "--num-workers", "2", "--out", str(tmp_path / "x")]) == 2
    assert "--num-workers is for --backend ray" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main([*args, "--out", str(tmp_path / "y")]) == 2
    assert "pip install 'pasta-t2i[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_the_clip_world_on_ray_equals_one_process_and_its_options_are_recorded(local_ray, tmp_path, capsys):
    pytest.importorskip("open_clip")
    pytest.importorskip("diffusers")
    from benchmarks import tiny_models

    options = tiny_models.tiny_clip_world_options(tmp_path / "models")  # loadable by path in any process
    args = ["generate", "--world", "clip", "--episodes", "8", "--chunk", "4", "--seed", "1", "--quiet",
            *[f"--world-option={k}={json.dumps(v)}" for k, v in options.items()]]
    assert main([*args, "--out", str(tmp_path / "local")]) == 0
    assert main([*args, "--out", str(tmp_path / "ray"), "--backend", "ray", "--address", local_ray]) == 0
    same_data(tmp_path / "local", tmp_path / "ray")
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["env_kwargs"]["world_kwargs"] == options  # how `verify` and `recover_environment` rebuild it
    report = verify(tmp_path / "ray", replay=4)
    assert report.ok, report.text()
    capsys.readouterr()
    assert main([*args, "--world-option", "clip_size=3", "--out", str(tmp_path / "bad")]) == 2
    assert "takes no option 'clip_size'" in capsys.readouterr().err


def test_workers_the_cluster_cannot_hold_are_refused_before_anything_waits(local_ray, tmp_path):
    for backend in (RayBackend(num_workers=3), RayBackend(gpus_per_worker=1), RayBackend(cpus_per_worker=4)):
        with pytest.raises(WorkerError, match="do not fit the cluster"):
            generate(tmp_path / "x", SPEC, progress=False, make_policy=make_agent, backend=backend)
        with pytest.raises(WorkerError, match="do not fit the cluster"):
            evaluate(["random"], episodes=8, num_envs=4, progress=False, backend=backend)
    assert not (tmp_path / "x").exists()
    for bad in ({"num_workers": 0}, {"gpus_per_worker": -1}, {"cpus_per_worker": 0}, {"max_restarts": -1}):
        with pytest.raises(ValueError):
            RayBackend(**bad)
