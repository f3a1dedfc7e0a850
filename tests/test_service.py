"""The reference HTTP service: pooling logic, metrics format, the micro-batcher on a real engine, and a bounded
loopback load test of `geep-deploy serve` in a subprocess (answers equal offline predict, pools fill, bad inputs
get the right 4xx, overload gets 503 + Retry-After, SIGTERM finishes accepted requests)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from service_helpers import TEXTS, tiny_service_export

pytest.importorskip("fastapi", reason="the service needs the `service` extra: pip install 'geep-deploy[service]'")
pytest.importorskip("aiohttp", reason="the load test needs aiohttp (the `dev` extra)")

from geep_deploy.bench.loadgen import ServerProcess, http_get, load, run_load  # noqa: E402
from geep_deploy.cli import main  # noqa: E402
from geep_deploy.service.batcher import BatcherConfig, MicroBatcher, QueueFull, ShuttingDown  # noqa: E402
from geep_deploy.service.limits import (  # noqa: E402
    InvalidRequest,
    RequestLimits,
    RequestTooLarge,
    check_request,
)
from geep_deploy.service.metrics import Counter, Histogram, Registry, parse_samples  # noqa: E402
from geep_deploy.service.pooling import Rows, plan_pool, scatter, take_pool  # noqa: E402
from geep_deploy.service.runner import PoolRunner  # noqa: E402
from runtime import GeepEngine  # noqa: E402

# -- pure pooling --------------------------------------------------------------------------------------------------

words = st.text(alphabet="abc ", min_size=1, max_size=5)
requests_st = st.lists(
    st.integers(1, 5).flatmap(lambda n: st.tuples(st.lists(words, min_size=n, max_size=n),
                                                   st.booleans() | st.none())),
    min_size=1, max_size=12)


def _rows(spec: list) -> list[Rows]:
    return [Rows(tuple(t), tuple(x + "|b" for x in t) if pair else None) for t, pair in spec]


@given(requests_st)
@settings(max_examples=150, deadline=None)
def test_plan_then_scatter_gives_every_request_its_own_rows_in_order(spec: list) -> None:
    pool = _rows(spec)
    calls = plan_pool(pool)
    assert 1 <= len(calls) <= 2 and sum(len(c.texts) for c in calls) == sum(len(r) for r in pool)
    for c in calls:  # each call is all pairs or all plain texts
        assert c.texts_b is None or len(c.texts_b) == len(c.texts)
    echoed = scatter(calls, [[(a, c.texts_b[i] if c.texts_b else None) for i, a in enumerate(c.texts)]
                             for c in calls], len(pool))
    for r, got in zip(pool, echoed):
        assert [a for a, _ in got] == list(r.texts)
        assert [b for _, b in got] == (list(r.texts_b) if r.texts_b else [None] * len(r))


@given(st.lists(st.integers(1, 100), max_size=30), st.integers(1, 128))
def test_take_pool_takes_at_least_one_and_never_overfills(pending: list[int], max_rows: int) -> None:
    n = take_pool(pending, max_rows)
    if not pending:
        assert n == 0
        return
    assert 1 <= n <= len(pending)
    assert n == 1 or sum(pending[:n]) <= max_rows
    assert n == len(pending) or sum(pending[: n + 1]) > max_rows  # greedy: the next one would not fit


def test_scatter_rejects_a_call_with_the_wrong_number_of_results() -> None:
    calls = plan_pool([Rows(("a", "b"))])
    with pytest.raises(ValueError, match="returned 1 results"):
        scatter(calls, [["x"]], 1)


def test_check_request_limits_and_shapes() -> None:
    lim = RequestLimits(max_rows=3, max_chars=10)
    assert check_request("one", None, lim) == Rows(("one",))
    assert check_request(["a", "b"], ["c", "d"], lim) == Rows(("a", "b"), ("c", "d"))
    with pytest.raises(RequestTooLarge, match="at most 3"):
        check_request(["a"] * 4, None, lim)
    with pytest.raises(RequestTooLarge, match=r"text\[1\] has 11 characters"):
        check_request(["a", "x" * 11], None, lim)
    with pytest.raises(InvalidRequest, match="empty list"):
        check_request([], None, lim)
    with pytest.raises(InvalidRequest, match=r"text_b\[0\] is empty"):
        check_request(["a"], ["  "], lim)
    with pytest.raises(InvalidRequest, match="one per text"):
        check_request(["a", "b"], ["c"], lim)
    with pytest.raises(InvalidRequest, match="both be strings or both be lists"):
        check_request("a", ["c"], lim)


def test_metrics_render_prometheus_text() -> None:
    reg = Registry()
    c = reg.add(Counter("x_total", "things", ("kind",)))
    h = reg.add(Histogram("y", "sizes", (1, 4)))
    c.inc(kind='a"b')
    c.inc(2, kind="c")
    for v in (1, 3, 9):
        h.observe(v)
    text = reg.render()
    assert "# TYPE x_total counter" in text and "# TYPE y histogram" in text
    s = parse_samples(text)
    assert s['x_total{kind="a\\"b"}'] == 1 and s['x_total{kind="c"}'] == 2
    assert s['y_bucket{le="1"}'] == 1 and s['y_bucket{le="4"}'] == 2 and s['y_bucket{le="+Inf"}'] == 3
    assert s["y_sum"] == 13 and s["y_count"] == 3
    with pytest.raises(ValueError, match="takes labels"):
        c.inc(other="z")


# -- the batcher on a real engine, in process --------------------------------------------------------------------

@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_service_export(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def engine(export_dir: Path):
    with GeepEngine.load(export_dir, "onnxruntime", threads=1) as eng:
        yield eng


def _offline(engine, texts: list[str], texts_b: list[str] | None = None) -> list[dict]:
    return engine.predict(texts, texts_b).to_records()


def _same(got: list[dict], want: list[dict]) -> None:
    assert [r["label"] for r in got] == [r["label"] for r in want]
    assert [r["depth"] for r in got] == [r["depth"] for r in want]
    np.testing.assert_allclose([r["probabilities"] for r in got], [r["probabilities"] for r in want], atol=1e-5)


def test_batcher_pools_concurrent_requests_and_answers_like_predict(engine) -> None:
    reqs = [Rows((TEXTS[i % 10], TEXTS[(i * 3) % 10])) for i in range(40)]
    reqs += [Rows((TEXTS[1],), (TEXTS[2],)), Rows((TEXTS[4], TEXTS[5]), (TEXTS[6], TEXTS[7]))]

    async def go() -> tuple[list, MicroBatcher]:
        b = MicroBatcher(PoolRunner(engine), BatcherConfig(max_batch=32, max_wait_s=0.05))
        await b.start()
        out = await asyncio.gather(*(b.submit(r) for r in reqs))
        await b.close()
        return out, b

    out, b = asyncio.run(go())
    for r, got in zip(reqs, out):
        _same(got, _offline(engine, list(r.texts), list(r.texts_b) if r.texts_b else None))
    n, rows = b.metrics.pool_rows.count_and_sum()
    assert rows == sum(len(r) for r in reqs) and n < len(reqs) and max(1, rows / n) > 2
    depths = {int(k.split('"')[1]): v for k, v in parse_samples(b.metrics.render()).items()
              if k.startswith("geep_rows_total")}
    assert sum(depths.values()) == rows and len(depths) > 1  # the table sends rows to several depths


def test_one_client_at_a_time_is_not_kept_waiting(engine) -> None:
    """Adaptive wait: once pools see no request arrive while they run, a lone request goes at once; the fixed
    policy (and the first requests, before anything is measured) wait out max_wait."""
    wait = 0.3

    async def sequential(adaptive: bool, n: int) -> tuple[list[float], MicroBatcher]:
        b = MicroBatcher(PoolRunner(engine), BatcherConfig(max_batch=64, max_wait_s=wait, adaptive_wait=adaptive))
        await b.start()
        took = []
        for i in range(n):
            t0 = time.perf_counter()
            await b.submit(Rows((TEXTS[i % 10],)))
            took.append(time.perf_counter() - t0)
        await b.close()
        return took, b

    took, b = asyncio.run(sequential(True, 6))
    assert took[0] >= wait and all(t < wait / 2 for t in took[3:]) and b.company < 0.5
    took, b = asyncio.run(sequential(False, 3))
    assert all(t >= wait for t in took)


def test_batcher_close_finishes_queued_requests_then_refuses(engine) -> None:
    async def go() -> None:
        b = MicroBatcher(PoolRunner(engine), BatcherConfig(max_batch=64, max_wait_s=5.0, max_queue_rows=3))
        await b.start()
        tasks = [asyncio.ensure_future(b.submit(Rows((t,)))) for t in TEXTS[:3]]
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull) as e:
            await b.submit(Rows((TEXTS[3],)))
        assert e.value.retry_after_s >= 1
        t0 = time.perf_counter()
        await b.close()  # does not wait out max_wait: closing flushes the queue at once
        assert time.perf_counter() - t0 < 4.0
        assert all(t.done() and len(t.result()) == 1 for t in tasks)
        with pytest.raises(ShuttingDown):
            await b.submit(Rows((TEXTS[0],)))

    asyncio.run(go())


def test_a_bad_request_does_not_fail_its_pool(engine) -> None:
    class Picky:  # the real engine, refusing one text the way the engine refuses bad input
        def __init__(self, eng) -> None:
            self.eng = eng

        def predict(self, texts, texts_b=None, batch_size=None):
            from geep_deploy.errors import DataError

            if "poison" in texts:
                raise DataError("input | poison")
            return self.eng.predict(texts, texts_b, batch_size=batch_size)

    runner = PoolRunner(Picky(engine))
    out = runner([Rows((TEXTS[0],)), Rows(("poison",)), Rows((TEXTS[1], TEXTS[2]))])
    assert isinstance(out.results[1], Exception) and "poison" in str(out.results[1])
    _same(out.results[0], _offline(engine, [TEXTS[0]]))
    _same(out.results[2], _offline(engine, [TEXTS[1], TEXTS[2]]))


# -- the service in a subprocess, under load ---------------------------------------------------------------------

LIMITS = ["--max-rows", "8", "--max-chars", "300", "--max-body-kb", "4"]


@pytest.fixture(scope="module")
def server(export_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    srv = ServerProcess(["--export", str(export_dir), "--threads", "1", "--max-batch", "64", "--max-wait-ms", "10",
                         *LIMITS], log_path=log)
    with srv:
        yield srv


def _payloads(n: int) -> list[dict]:
    out = []
    for i in range(n):
        k = 1 + i % 3
        texts = [TEXTS[(i + j) % len(TEXTS)] for j in range(k)]
        out.append({"text": texts[0]} if k == 1 and i % 2 else
                   {"text": texts, "text_b": [TEXTS[(i + 5) % 10]] * k} if i % 7 == 0 else {"text": texts})
    return out


def test_load_at_concurrency_32_answers_like_offline_predict_and_pools(server: ServerProcess, engine) -> None:
    payloads = _payloads(320)
    res = load(server.url + "/v1/classify", payloads, concurrency=32, time_limit_s=40, keep_bodies=True)
    assert not res.timed_out and res.statuses == [200] * len(payloads), res.summary()
    for p, body in zip(payloads, res.bodies):
        texts = [p["text"]] if isinstance(p["text"], str) else p["text"]
        assert body["num_layers"] == 3
        _same(body["predictions"], _offline(engine, texts, p.get("text_b")))
    s = parse_samples(http_get(server.url + "/metrics")[1])
    mean_pool = s["geep_pool_rows_sum"] / s["geep_pool_rows_count"]
    assert mean_pool > 1, f"mean pooled batch {mean_pool:.2f}: requests were not pooled"
    assert s['geep_requests_total{route="/v1/classify",code="200"}'] >= len(payloads)
    assert s["geep_stage_seconds_count{stage=\"model\"}"] == s["geep_pool_rows_count"]
    assert sum(v for k, v in s.items() if k.startswith("geep_rows_total")) >= res.rows


def _post(url: str, body: bytes, ctype: str | None = "application/json", method: str = "POST") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body if method == "POST" else None, method=method)
    if ctype:
        req.add_header("content-type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


BAD = {
    "malformed json": (b'{"text": ["a",', "application/json", 400),
    "not utf-8": (b'{"text": ["\xff\xfe"]}', "application/json", 400),
    "oversize body": (json.dumps({"text": ["word " * 50] * 20}).encode(), "application/json", 413),
    "too many rows": (json.dumps({"text": ["a"] * 9}).encode(), "application/json", 413),
    "text too long": (json.dumps({"text": ["x" * 301]}).encode(), "application/json", 413),
    "empty list": (b'{"text": []}', "application/json", 422),
    "non-string items": (b'{"text": ["ok", 3]}', "application/json", 422),
    "null item": (b'{"text": [null]}', "application/json", 422),
    "missing field": (b"{}", "application/json", 422),
    "unknown field": (b'{"texts": ["a"]}', "application/json", 422),
    "body is a list": (b'["a"]', "application/json", 422),
    "empty body": (b"", "application/json", 422),
    "whitespace text": (b'{"text": ["  "]}', "application/json", 422),
    "pair length mismatch": (b'{"text": ["a", "b"], "text_b": ["c"]}', "application/json", 422),
    "wrong content type": (b'{"text": ["a"]}', "text/plain", 415),
    "form content type": (b"text=a", "application/x-www-form-urlencoded", 415),
    "no content type": (b'{"text": ["a"]}', None, 415),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gets_the_right_4xx_and_the_service_stays_healthy(server: ServerProcess, case: str) -> None:
    body, ctype, want = BAD[case]
    status, answer = _post(server.url + "/v1/classify", body, ctype)
    assert status == want, answer
    assert answer.get("detail")
    if want == 400:  # the service's own wording, not the framework's
        assert str(answer["detail"]).startswith("service | "), answer
    assert http_get(server.url + "/healthz")[0] == 200
    ok, good = _post(server.url + "/v1/classify", json.dumps({"text": TEXTS[0]}).encode())
    assert ok == 200 and len(good["predictions"]) == 1


def test_endpoints_and_openapi(server: ServerProcess) -> None:
    status, body = http_get(server.url + "/readyz")
    assert status == 200 and json.loads(body)["model"]["num_layers"] == 3
    assert _post(server.url + "/v1/classify", b"", None, method="GET")[0] == 405
    assert http_get(server.url + "/nope")[0] == 404
    api = json.loads(http_get(server.url + "/openapi.json")[1])
    op = api["paths"]["/v1/classify"]["post"]
    assert {"413", "415", "422", "503"} <= set(op["responses"])
    assert "ClassifyRequest" in api["components"]["schemas"]
    s = parse_samples(http_get(server.url + "/metrics")[1])
    assert s["geep_ready"] == 1 and any(k.startswith("geep_request_errors_total") for k in s)


def test_overload_is_503_with_retry_after_and_sigterm_finishes_accepted_requests(export_dir: Path,
                                                                                 tmp_path: Path) -> None:
    # pools wait 1.5 s to fill and at most 4 rows may wait: the 5th..8th concurrent request is turned away
    srv = ServerProcess(["--export", str(export_dir), "--threads", "1", "--max-wait-ms", "1500",
                         "--max-queue", "4"], log_path=tmp_path / "serve.log").start()
    try:
        async def burst() -> tuple[list[int], list[str | None]]:
            import aiohttp

            async with aiohttp.ClientSession() as s:
                async def one(i: int) -> tuple[int, str | None]:
                    async with s.post(srv.url + "/v1/classify", json={"text": TEXTS[i]}) as r:
                        await r.read()
                        return r.status, r.headers.get("Retry-After")

                out = await asyncio.gather(*(one(i) for i in range(8)))
            return [o[0] for o in out], [o[1] for o in out]

        statuses, retry = asyncio.run(burst())
        assert sorted(statuses) == [200] * 4 + [503] * 4, statuses
        assert all(r is not None and int(r) >= 1 for s, r in zip(statuses, retry) if s == 503)

        async def drain() -> list[int]:
            url = srv.url + "/v1/classify"
            task = asyncio.ensure_future(run_load(url, [{"text": t} for t in TEXTS[:3]], 3, 20))
            await asyncio.sleep(0.5)  # the three are queued, waiting for their pool
            srv.proc.send_signal(15)
            return (await task).statuses

        assert asyncio.run(drain()) == [200, 200, 200]
        assert srv.proc.wait(20) in (0, -15), srv.log_text()  # uvicorn re-raises SIGTERM after a clean drain
    finally:
        srv.stop()


def test_serve_cli_rejects_a_missing_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--export", str(tmp_path / "none")]) == 1
    assert "has no manifest.json" in capsys.readouterr().err
    assert main(["serve", "--export", str(tmp_path), "--max-batch", "0"]) == 1
    assert "--max-batch must be an integer >= 1" in capsys.readouterr().err


def test_serve_cli_names_a_port_in_use_before_loading(export_dir: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import runtime

    def no_load(*_: object, **__: object) -> None:
        raise AssertionError("the engine loaded before the port was checked")

    monkeypatch.setattr(runtime.GeepEngine, "load", no_load)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main(["serve", "--export", str(export_dir), "--port", str(port)]) == 1
    out = capsys.readouterr()
    assert f"error: serve | cannot listen on 127.0.0.1:{port}: the port is in use" in out.err
    assert "serving" not in out.err + out.out


def test_serve_cli_frees_its_port_when_the_load_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from geep_deploy.bench.loadgen import free_port
    from geep_deploy.service.listener import bind_listeners

    port = free_port()
    (tmp_path / "manifest.json").write_text("{}")  # passes serve's own checks; the engine's load refuses it
    assert main(["serve", "--export", str(tmp_path), "--port", str(port)]) == 1
    assert "manifest" in capsys.readouterr().err
    for sock in bind_listeners("127.0.0.1", port):  # nothing still listens there
        sock.close()


def test_listeners_bind_listen_and_name_what_is_wrong() -> None:
    from geep_deploy.errors import ConfigError
    from geep_deploy.service.listener import bind_listeners, url_host

    first = bind_listeners("127.0.0.1", 0)
    try:
        port = first[0].getsockname()[1]
        assert port > 0 and first[0].getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}: the port is in use"):
            bind_listeners("127.0.0.1", port)  # SO_REUSEADDR does not let a second server share it
    finally:
        for sock in first:
            sock.close()
    local = bind_listeners("localhost", 0)  # every address localhost resolves to, on one port
    try:
        assert len({s.getsockname()[1] for s in local}) == 1
    finally:
        for sock in local:
            sock.close()
    with pytest.raises(ConfigError, match="is not an address of this machine"):
        bind_listeners("192.0.2.1", 0)  # TEST-NET-1: never this machine's
    with pytest.raises(ConfigError, match="does not resolve"):
        bind_listeners("no-such-host.invalid", 0)
    assert url_host("::1") == "[::1]" and url_host("127.0.0.1") == "127.0.0.1"
