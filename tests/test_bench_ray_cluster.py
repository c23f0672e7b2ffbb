"""`qubert bench --ray-address` against a real two-node Ray cluster on localhost.

The fixture starts a head node and a second node with the ``ray`` command (one CPU each, their own
temp dir, no usage stats, no dashboard), exactly as docs/results/README.md's cluster recipe does,
and always stops both (by the process groups of the two ``ray start --block`` commands, never with
a machine-wide ``ray stop``, which would also end other users' clusters). The tiny grid (one data
set) then runs once in process and once as a separate ``qubert bench --ray-address`` driver on the
cluster, and both must give the same results.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("ray")
pytest.importorskip("optuna")

from qubert import bench  # noqa: E402
from qubert.bench import parse_bench_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
# The `ray` command of this interpreter's environment (a pyenv shim could pick another Python).
RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else shutil.which("ray")
START_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ports() -> list[str]:
    """Ports of one node's own services: two nodes on one machine must not share the defaults."""
    return ["--node-manager-port", str(_free_port()), "--object-manager-port", str(_free_port()),
            "--dashboard-agent-listen-port", str(_free_port()), "--dashboard-agent-grpc-port", str(_free_port()),
            "--metrics-export-port", str(_free_port()), "--runtime-env-agent-port", str(_free_port())]


def _stop(proc: subprocess.Popen) -> None:
    """End one ``ray start --block`` and every process it started: its process group, which holds
    only this node's processes (the command was started in a new session)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                proc.wait(timeout=5)
                return
            time.sleep(0.2)


def _alive_nodes(address: str, env: dict[str, str]) -> int:
    """Nodes alive in the cluster, asked by a separate driver (this process keeps no Ray state)."""
    code = ("import ray; ray.init(address=%r, log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes())); ray.shutdown()" % address)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    return int(done.stdout.split()[-1]) if done.returncode == 0 and done.stdout.split() else 0


@pytest.fixture
def two_node_cluster():
    """A head node and a second node (1 CPU each) on localhost; yields ``(address, env)``: the head's
    address and the environment a driver needs (the cluster's own authentication token)."""
    temp_dir = tempfile.mkdtemp(prefix="qray", dir="/tmp")  # short: Ray's socket paths must stay under 107 bytes
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # The nodes' workers import qubert as this process does (same PYTHONPATH). Ray >= 2.5x uses token
    # authentication; this cluster gets its own token (not ~/.ray/auth_token, which other clusters share).
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    common = ["--num-cpus", "1", "--disable-usage-stats", "--block"]
    nodes: list[subprocess.Popen] = []
    logs = [open(Path(temp_dir) / f"node{i}.log", "w") for i in range(2)]
    try:
        nodes.append(subprocess.Popen([RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                                       "--temp-dir", temp_dir, "--ray-client-server-port", str(_free_port()),
                                       "--include-dashboard", "false", *_node_ports(), *common],
                                      env=env, stdout=logs[0], stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # the head's GCS answers once it is up
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if nodes[0].poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not start:\n{(Path(temp_dir) / 'node0.log').read_text()[-2000:]}")
            time.sleep(0.5)
        nodes.append(subprocess.Popen([RAY, "start", "--address", address, "--node-ip-address", "127.0.0.1",
                                       *_node_ports(), *common], env=env, stdout=logs[1], stderr=subprocess.STDOUT,
                                      start_new_session=True))
        while _alive_nodes(address, env) < 2:
            if nodes[1].poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the second Ray node did not join:\n{(Path(temp_dir) / 'node1.log').read_text()[-2000:]}")
            time.sleep(1)
        yield address, env
    finally:
        for proc in reversed(nodes):
            _stop(proc)
        for log in logs:
            log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _tiny_data(shared_data_dir: Path, tmp_path: Path, output_dir: Path) -> dict:
    data = yaml.safe_load(TINY.read_text())
    data.update(datasets=["sms_spam"], data_dir=str(shared_data_dir), cache_dir=str(tmp_path / "cache"),
                output_dir=str(output_dir))
    return data


def _comparable(csv_path: Path) -> pd.DataFrame:
    frame = pd.read_csv(csv_path)
    return frame.drop(columns=[c for c in (*bench.TIMING_COLUMNS, "run_dir") if c in frame.columns])


@pytest.mark.slow  # two Ray nodes start and the grid runs twice: 5 min on the 2-core machine at load 15
@pytest.mark.skipif(RAY is None, reason="the `ray` command is not installed")
def test_the_tiny_grid_on_a_two_node_cluster_gives_the_in_process_results(two_node_cluster, shared_data_dir, tmp_path):
    local = parse_bench_config(_tiny_data(shared_data_dir, tmp_path, tmp_path / "local"), name="tiny", online=False)
    result = bench.run_bench(local, report=False)
    assert result.failed == {}

    config_file = tmp_path / "cluster.yaml"
    config_file.write_text(yaml.safe_dump(_tiny_data(shared_data_dir, tmp_path, tmp_path / "cluster")))
    address, env = two_node_cluster
    done = subprocess.run([sys.executable, "-m", "qubert.cli", "bench", "--config", str(config_file), "--offline",
                           "--ray-address", address], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    on_cluster = _comparable(tmp_path / "cluster" / "results.csv")
    assert len(on_cluster) > 0 and {"linear", "mlp_32", "quantum_q2_l1"} <= set(on_cluster["head"])
    pd.testing.assert_frame_equal(on_cluster, _comparable(tmp_path / "local" / "results.csv"))
    tuning = pd.read_csv(tmp_path / "cluster" / "tuning.csv").drop(columns=["epochs_trained", "stopped_by"])
    pd.testing.assert_frame_equal(tuning, pd.read_csv(tmp_path / "local" / "tuning.csv").drop(columns=["epochs_trained", "stopped_by"]))
    assert (tmp_path / "cluster" / "summary.md").is_file()
