"""Ray Serve scale-out: the same routes on Ray (local, one replica), and a 2-node local cluster with one replica
per node, both answering. Opt-in (Ray takes a while to start):

    GEEP_RAY_TESTS=1 PYTHONPATH=$PWD .venv/bin/python -m pytest -q -m serve tests/test_service_ray.py

Everything binds 127.0.0.1; teardown shuts Serve and Ray down and kills, by PID, any Ray process still alive.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_helpers import TEXTS, tiny_service_export

pytestmark = pytest.mark.serve

# measured pitfalls of Ray 2.60 on one machine (see the README's Serving section)
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ["RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING"] = "0"  # let the head's proxy reach the other node
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# a loaded shared machine: Ray's 5 s proxy ready check fails and Serve kills the proxy it is waiting for
os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
os.environ.setdefault("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "30")


def _ray_pids() -> set[int]:
    import psutil

    out = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if any(k in cmd for k in ("raylet", "gcs_server", "ray::", "ray/_private", "ray/dashboard")):
            out.add(p.info["pid"])
    return out


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_service_export(tmp_path_factory.mktemp("ray-serve"))


@pytest.fixture()
def no_leftovers() -> Iterator[None]:
    """Kill by PID whatever Ray process this test started and Ray's own shutdown left behind."""
    before = _ray_pids()
    yield
    for pid in _ray_pids() - before:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _payloads(n: int) -> list[dict]:
    return [{"text": [TEXTS[i % 10], TEXTS[(i + 3) % 10]]} for i in range(n)]


def _check_answers(url: str, export_dir: Path, n: int = 48) -> None:
    from geep_deploy.bench.loadgen import load
    from runtime import GeepEngine

    payloads = _payloads(n)
    res = load(url + "/v1/classify", payloads, concurrency=16, time_limit_s=60, keep_bodies=True)
    assert res.statuses == [200] * n, res.summary()
    with GeepEngine.load(export_dir, "onnxruntime", threads=1) as eng:
        for p, body in zip(payloads, res.bodies):
            want = eng.predict(p["text"]).to_records()
            assert [r["label"] for r in body["predictions"]] == [r["label"] for r in want]
            assert [r["depth"] for r in body["predictions"]] == [r["depth"] for r in want]


def test_ray_serve_local_same_routes_and_answers(export_dir: Path, no_leftovers: None) -> None:
    import ray
    from ray import serve

    from geep_deploy.bench.loadgen import free_port, http_get
    from geep_deploy.service.ray_app import app_builder

    port = free_port()
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(app_builder({"export": str(export_dir), "threads": "1", "max_batch": "16", "max_wait_ms": "5",
                               "max_rows": "8"}), name="geep", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        _check_answers(url, export_dir)
        from test_service import _post

        assert _post(url + "/v1/classify", b'{"text": []}')[0] == 422
        assert _post(url + "/v1/classify", json.dumps({"text": ["a"] * 9}).encode())[0] == 413
        assert _post(url + "/v1/classify", b"{", "application/json")[0] == 400
        status, body = http_get(url + "/readyz")
        assert status == 200 and json.loads(body)["model"]["num_layers"] == 3
        metrics = http_get(url + "/metrics")[1]
        assert "geep_pool_rows_count" in metrics
    finally:
        serve.shutdown()
        ray.shutdown()


def test_two_node_cluster_one_replica_per_node_both_answer(export_dir: Path, no_leftovers: None) -> None:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from geep_deploy.bench.loadgen import free_port, http_get
    from geep_deploy.service.ray_app import GeepDeployment

    port = free_port()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                            "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        serve.start(http_options={"host": "127.0.0.1", "port": port, "location": "HeadOnly"})
        app = GeepDeployment.options(num_replicas=2, ray_actor_options={"num_cpus": 1})
        serve.run(app.bind(export=str(export_dir), threads=1, max_batch=16), name="geep", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        _check_answers(url, export_dir, n=64)
        seen: dict[str, str] = {}  # node id -> replica, from /readyz answers routed over both replicas
        for _ in range(60):
            status, body = http_get(url + "/readyz")
            assert status == 200
            model = json.loads(body)["model"]
            seen[model["node_id"]] = model["replica"]
            if len(seen) == 2:
                break
        assert len(seen) == 2, f"only node(s) {sorted(seen)} answered"
        assert len(set(seen.values())) == 2
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
