"""Issue 25, reliability round two: nothing deleted or overwritten that is not ours, no hang, no raw traceback, no
invalid value taken silently. One test (or a few) per defect of the issue, numbered as there.

One tiny export (3 layers, random weights, a random exit table, the probe dispatch's graphs) serves every test;
each test copies it before damaging anything.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from models import reliability_workspace, tiny_checkpoint

from export.bundle import export_checkpoint
from export.pipeline import clean_stale_temps
from geep_deploy.bench.reliability_cases import point_external_data, rehash_files, valid_probe
from geep_deploy.cli import main


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return reliability_workspace(tmp_path_factory.mktemp("rel2"))


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# -- 1. export clean-up touches only folders the exporter marked as its own ------------------------------------------
@pytest.mark.parametrize("out_name", ["model", "*", "[abc]"])
def test_export_leaves_look_alike_user_folders_alone(ws, tmp_path, capsys, out_name) -> None:
    x = tmp_path / "x"
    mine = [x / ".model.old-backup", x / ".model.tmp-notes", x / ".a.tmp-1", x / ".b.old-2", x / ".*.tmp-zz"]
    for d in mine:
        d.mkdir(parents=True)
        (d / "n.txt").write_text("hi")
    before = _tree(x)
    rc = main(["export", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(x / out_name), "--quiet"])
    assert rc == 1 and "does not exist" in capsys.readouterr().err
    assert _tree(x) == before
    assert main(["export", "--checkpoint", str(ws["ckpt"]), "--out", str(x / out_name), "--quiet",
                 "--no-segments", "--depths", "3"]) == 0
    assert {k: v for k, v in _tree(x).items() if not k.startswith(out_name)} == before


def test_clean_up_removes_only_marked_folders_and_reports_only_what_is_gone(tmp_path) -> None:
    out = tmp_path / "exp"
    ours = tmp_path / ".exp.tmp-dead"
    ours.mkdir()
    (ours / ".export-pid").write_text("999999999")
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / ".export-pid").write_text("999999999")
    (target / "keep.txt").write_text("mine")
    link = tmp_path / ".exp.tmp-link"
    link.symlink_to(target, target_is_directory=True)
    unmarked_old = tmp_path / ".exp.old-1"
    unmarked_old.mkdir()
    (unmarked_old / "n.txt").write_text("hi")
    removed = clean_stale_temps(out)
    assert removed == [ours] and not ours.exists()
    assert link.is_symlink() and (target / "keep.txt").read_text() == "mine" and unmarked_old.exists()


# -- 2. an output that resolves to an input (or into the data folder) is refused before any work ---------------------
def test_outputs_that_are_inputs_are_refused_before_any_work(ws, tmp_path, capsys) -> None:
    ck = tmp_path / "ck.pt"
    shutil.copy(ws["ckpt"], ck)
    data = tmp_path / "data"
    shutil.copytree(ws["data"], data)
    (tmp_path / "link.pt").symlink_to(ck)
    before_ck, before_data = ck.read_bytes(), _tree(data)
    c, d = ["--checkpoint", str(ck)], ["--data", str(data)]
    cases = {
        "calibrate --out ck.pt": ["calibrate", *c, *d, "--out", str(ck)],
        "calibrate --out symlink to ck.pt": ["calibrate", *c, *d, "--out", str(tmp_path / "link.pt")],
        "calibrate --out ../ck.pt": ["calibrate", *c, *d, "--out", str(data / ".." / "ck.pt")],
        "calibrate --probe-out ck.pt": ["calibrate", *c, *d, "--out", str(tmp_path / "t.npz"), "--predictor",
                                        "probe", "--probe-out", str(ck)],
        "calibrate --probe-out == --out": ["calibrate", *c, *d, "--out", str(tmp_path / "t.npz"), "--predictor",
                                           "probe", "--probe-out", str(tmp_path / "t.npz")],
        "calibrate --out DATA/train.tsv": ["calibrate", *c, *d, "--out", str(data / "train.tsv")],
        "calibrate --out DATA/new.npz": ["calibrate", *c, *d, "--out", str(data / "new.npz")],
        "eval --json ck.pt": ["eval", *c, *d, "--json", str(ck)],
        "train --out DATA/x.pt": ["train", *d, "--method", "geep", "--out", str(data / "x.pt")],
        "export --out holding the checkpoint": ["export", *c, "--out", str(tmp_path), "--force"],
        "bench --json into the export": ["bench", "--export", str(ws["export"]), *d, "--json",
                                         str(ws["export"] / "manifest.json")],
    }
    for name, argv in cases.items():
        assert main(argv) == 1, name
        err = capsys.readouterr().err
        assert err.startswith("error:") and ("input" in err or "same file" in err), (name, err)
    assert ck.read_bytes() == before_ck and _tree(data) == before_data


# -- 5. every numeric flag of every command: finite and in range, checked in one place --------------------------------
def test_every_numeric_flag_has_a_declared_range() -> None:
    from geep_deploy.cli import SUBCOMMANDS, build_parser
    from geep_deploy.cli.checks import FLAG_RANGES, numeric_dests

    for name in SUBCOMMANDS:
        parser, mods = build_parser(name)
        if mods.get(name) is None:
            continue
        from geep_deploy.cli import _subparser

        missing = set(numeric_dests(_subparser(parser, name))) - set(FLAG_RANGES)
        assert not missing, f"{name}: numeric flags without a range in geep_deploy/cli/checks.py: {missing}"


@pytest.mark.parametrize("argv", [
    ["serve", "--max-wait-ms", "nan", "--fixed-wait"], ["serve", "--max-wait-ms", "inf"],
    ["serve", "--port", "99999"], ["serve", "--port", "-1"], ["serve", "--graceful-timeout", "-5"],
    ["serve", "--graceful-timeout", "nan"], ["calibrate", "--max-drop", "nan"], ["calibrate", "--max-drop", "-1"],
    ["calibrate", "--target-speedup", "inf"], ["calibrate", "--tau", "1.5"], ["train", "--lr", "nan"],
    ["train", "--lr", "0"], ["train", "--temperature", "-1"], ["train", "--distill-warmup", "2"],
    ["bench", "--batch-sizes", "1,0"], ["predict", "--depth", "-2"], ["export", "--max-batch", "0"],
])
def test_numeric_flags_out_of_range_are_refused(ws, tmp_path, capsys, argv) -> None:
    e, c, d = str(ws["export"]), str(ws["ckpt"]), str(ws["data"])
    need = {"serve": ["--export", e], "calibrate": ["--checkpoint", c, "--data", d, "--out", str(tmp_path / "t.npz")],
            "train": ["--data", d, "--method", "geep", "--out", str(tmp_path / "c.pt")],
            "bench": ["--export", e, "--data", d], "predict": ["--export", e, "--text", "good"],
            "export": ["--checkpoint", c, "--out", str(tmp_path / "x")]}[argv[0]]
    assert main([argv[0], *need, *argv[1:]]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and f"{argv[1]} must be" in err, err
    assert not (tmp_path / "t.npz").exists() and not (tmp_path / "x").exists()


# -- 7. a checkpoint's format_version cannot switch its checksum off ---------------------------------------------------
@pytest.mark.parametrize("version", [0, -1, 1, True, 2.0])
def test_checkpoint_version_edits_do_not_skip_the_checksum(ws, tmp_path, capsys, version) -> None:
    import torch

    from geep_deploy.checkpoint import load_checkpoint
    from geep_deploy.errors import CheckpointError

    payload = torch.load(ws["ckpt"], weights_only=True)
    w = payload["state_dict"]["heads.0.dense.weight"].clone()
    w.view(-1)[0] += 1e-3  # one changed value: the stored sha256 no longer matches
    p = tmp_path / "edited.pt"
    torch.save({**payload, "format_version": version, "state_dict": {**payload["state_dict"],
                                                                      "heads.0.dense.weight": w}}, p)
    with pytest.raises(CheckpointError, match="format version|corrupted"):
        load_checkpoint(p)
    assert main(["eval", "--checkpoint", str(p), "--data", str(ws["data"])]) == 1
    assert capsys.readouterr().err.startswith("error: checkpoint |")


@pytest.fixture(scope="module")
def probe_export(ws) -> Path:
    out = ws["dir"] / "export_probe"
    export_checkpoint(ws["ckpt"], out, exit_table=ws["table"], probe=valid_probe(), segments=False, progress=False)
    return out


# -- 3 and 13. every artifact path resolves inside the export, regular files only, before anything opens it ----------
@pytest.mark.parametrize("where", ["fifo", "/etc/services", "../../../tiny.pt", "symlink out"])
@pytest.mark.parametrize("share_weights", [True, False])
def test_a_graph_cannot_make_the_loader_open_a_path_outside_the_export(ws, tmp_path, where, share_weights) -> None:
    from geep_deploy.errors import ArtifactError
    from runtime.engine import GeepEngine

    out = tmp_path / "exp"
    shutil.copytree(ws["export"], out)
    d = out / "onnx" / "fp32"
    if where == "fifo":
        os.mkfifo(d / "pipe.bin")
        location = "pipe.bin"
    elif where == "symlink out":
        (d / "out.bin").symlink_to(ws["dir"] / "export" / "onnx" / "fp32" / "weights.bin")
        location = "out.bin"
    else:
        location = where
    point_external_data(d / "depth1.onnx", location)
    rehash_files(out)
    with pytest.raises(ArtifactError, match="outside|not a regular file"):
        GeepEngine.load(out, "onnxruntime", threads=1, share_weights=share_weights)


@pytest.mark.parametrize("kind", ["fifo", "symlink out", "directory"])
def test_listed_files_must_be_regular_files_inside_the_export(ws, tmp_path, kind) -> None:
    from geep_deploy.errors import ArtifactError
    from runtime.artifacts import load_export

    out = tmp_path / "exp"
    shutil.copytree(ws["export"], out)
    tok = out / "tokenizer.json"
    tok.unlink()
    if kind == "fifo":
        os.mkfifo(tok)
    elif kind == "directory":
        tok.mkdir()
    else:
        tok.symlink_to(ws["export"] / "tokenizer.json")  # same bytes, same sha256: only the location is wrong
    for verify in (True, False):
        with pytest.raises(ArtifactError, match="outside|not a regular file") as e:
            load_export(out, verify=verify)
        assert "missing" not in str(e.value)


# -- 8. deeply nested or huge JSON is a clean error, never a RecursionError -------------------------------------------
def test_deeply_nested_json_is_a_clean_error_everywhere(ws, probe_export, tmp_path, capsys) -> None:
    from geep_deploy.errors import GeepError
    from runtime.engine import GeepEngine

    bomb = "[" * 100_000
    out = tmp_path / "exp"
    shutil.copytree(probe_export, out)
    (out / "manifest.json").write_text(bomb)
    with pytest.raises(GeepError, match="nested"):
        GeepEngine.load(out, "onnxruntime")
    assert main(["predict", "--export", str(out), "--text", "good"]) == 1
    assert main(["export", "--checkpoint", str(ws["ckpt"]), "--out", str(out), "--force", "--quiet"]) == 1
    assert "is not a geep-deploy export" in capsys.readouterr().err and (out / "manifest.json").read_text() == bomb
    probe = tmp_path / "p.json"
    probe.write_text('{"a": ' + bomb)
    assert main(["export", "--checkpoint", str(ws["ckpt"]), "--out", str(tmp_path / "e2"), "--quiet",
                 "--exit-table", str(ws["table"]), "--probe", str(probe)]) == 1
    assert "nested" in capsys.readouterr().err
    shutil.copytree(probe_export, tmp_path / "exp2")
    (tmp_path / "exp2" / "probe.json").write_text(bomb)
    rehash_files(tmp_path / "exp2")
    with pytest.raises(GeepError, match="nested"):
        GeepEngine.load(tmp_path / "exp2", "onnxruntime")


# -- 9. prefix/cont graphs load through the same checked path as depth graphs ------------------------------------------
@pytest.mark.parametrize("graph", ["prefix.onnx", "cont2.onnx"])
def test_a_garbage_probe_graph_with_a_matching_checksum_is_named(probe_export, tmp_path, graph) -> None:
    from geep_deploy.errors import ArtifactError
    from runtime.engine import GeepEngine

    out = tmp_path / "exp"
    shutil.copytree(probe_export, out)
    (out / "onnx" / "fp32" / graph).write_bytes(b"\x08\x96\x01 not a real file " * 40)
    rehash_files(out)
    with pytest.raises(ArtifactError, match=graph):
        GeepEngine.load(out, "onnxruntime", threads=1)


# -- 10 and 11. no traceback and no silently accepted value in GeepEngine.load's arguments -----------------------------
@pytest.mark.parametrize("kw", [
    {"risk": "high"}, {"risk": [0.3]}, {"risk": True}, {"risk": "0.3"}, {"risk": float("nan")}, {"risk": 1.5},
    {"escalate": "0.5"}, {"escalate": True}, {"escalate": -0.1}, {"max_group": 0}, {"max_group": -1},
    {"max_group": 2.5},
])
def test_bad_probe_knobs_and_counts_are_config_errors(probe_export, kw) -> None:
    from geep_deploy.errors import ConfigError
    from runtime.engine import GeepEngine

    with pytest.raises(ConfigError, match=next(iter(kw))):
        GeepEngine.load(probe_export, "onnxruntime", threads=1, **kw)


@pytest.mark.parametrize("where", ["table export", "predictor='table'", "fixed_depth"])
@pytest.mark.parametrize("kw", [{"risk": 0.3}, {"risk": 7.0}, {"escalate": 0.5}])
def test_probe_knobs_that_do_not_apply_say_so(ws, probe_export, where, kw) -> None:
    from geep_deploy.errors import ConfigError
    from runtime.engine import GeepEngine

    extra = {"table export": {}, "predictor='table'": {"predictor": "table"}, "fixed_depth": {"fixed_depth": 3}}
    export = ws["export"] if where == "table export" else probe_export
    with pytest.raises(ConfigError, match="would be ignored|must be a finite number"):
        GeepEngine.load(export, "onnxruntime", threads=1, **kw, **extra[where])


@pytest.mark.parametrize("path", [None, 123, b"/tmp", 1.5])
def test_load_of_a_non_path_is_a_config_error(path) -> None:
    from geep_deploy.errors import ConfigError
    from runtime.engine import GeepEngine

    with pytest.raises(ConfigError, match="export_dir"):
        GeepEngine.load(path)


def test_probe_knobs_still_work(probe_export) -> None:
    from runtime.engine import GeepEngine

    with GeepEngine.load(probe_export, "onnxruntime", threads=1, risk=0.0, escalate=None) as eng:
        assert eng.info["probe"] and len(eng.predict(["good", "bad"])) == 2


# -- 6. the probe JSON is validated: finite coefficients, shapes, exit mode, feature list, real booleans ---------------
@pytest.mark.parametrize("edit, match", [
    (lambda d: d["weights"][0].__setitem__(0, float("nan")), "NaN or infinity"),
    (lambda d: d["mean"].__setitem__(0, float("inf")), "NaN or infinity"),
    (lambda d: d["scale"].__setitem__(0, "1.0"), "numbers only"),
    (lambda d: d["weights"].pop(), "shape"),
    (lambda d: d.update(uses_table="false"), "uses_table must be true or false"),
    (lambda d: d.update(uses_table=1), "uses_table must be true or false"),
    (lambda d: d.update(exit_mode="sideways"), "exit_mode"),
    (lambda d: d.update(features=5), "features"),
    (lambda d: d.update(num_layers=3.0), "num_layers"),
    (lambda d: d.update(num_layers=True), "num_layers"),
    (lambda d: d.update(risk=True), "risk"),
    (lambda d: d.update(risk="0.3"), "risk"),
    (lambda d: d.update(escalate=float("nan")), "escalat"),
    (lambda d: d.update(checkpoint="abc"), "checkpoint"),
])
def test_probe_json_is_validated(ws, tmp_path, capsys, edit, match) -> None:
    from geep_deploy.errors import TableError
    from runtime.probe import ProbeModel

    d = valid_probe().to_dict()
    edit(d)
    p = tmp_path / "p.json"
    p.write_text(json.dumps(d))
    with pytest.raises(TableError, match=match):
        ProbeModel.load(p)
    assert main(["export", "--checkpoint", str(ws["ckpt"]), "--out", str(tmp_path / "e"), "--quiet",
                 "--exit-table", str(ws["table"]), "--probe", str(p)]) == 1
    assert match.split()[0] in capsys.readouterr().err and not (tmp_path / "e").exists()


# -- 12. a table and a probe are tied to the checkpoint they were calibrated on ----------------------------------------
def test_a_probe_or_table_from_another_model_is_refused(ws, tmp_path, capsys) -> None:
    from geep_deploy.checkpoint import load_checkpoint
    from geep_deploy.errors import ArtifactError
    from runtime.engine import GeepEngine
    from runtime.predictor import ExitPredictor

    other = tiny_checkpoint(tmp_path / "other.pt", seed=1)  # same layer count, other weights
    mine = load_checkpoint(ws["ckpt"]).weights_sha256
    assert other.weights_sha256 != mine
    foreign_probe = valid_probe(checkpoint=other.weights_sha256).save(tmp_path / "foreign.probe.json")
    table = ExitPredictor.load(ws["table"])
    table.checkpoint = other.weights_sha256
    foreign_table = table.save(tmp_path / "foreign.npz")
    for extra in (["--exit-table", str(ws["table"]), "--probe", str(foreign_probe)],
                  ["--exit-table", str(foreign_table)]):
        assert main(["export", "--checkpoint", str(ws["ckpt"]), "--out", str(tmp_path / "e"), "--quiet",
                     *extra]) == 1
        assert "calibrated on another model" in capsys.readouterr().err and not (tmp_path / "e").exists()
    # the right identity exports, and the manifest records the checkpoint's
    good = valid_probe(checkpoint=mine).save(tmp_path / "good.probe.json")
    table.checkpoint = mine
    good_table = table.save(tmp_path / "good.npz")
    out = tmp_path / "ok"
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error")  # no "records no identity" warning for these
        export_checkpoint(ws["ckpt"], out, exit_table=good_table, probe=good, segments=False, progress=False)
    assert json.loads((out / "manifest.json").read_text())["checkpoint"]["weights_sha256"] == mine
    # a probe swapped inside the export (checksums recomputed) is caught at load
    shutil.copy(foreign_probe, out / "probe.json")
    rehash_files(out)
    with pytest.raises(ArtifactError, match="calibrated on another model"):
        GeepEngine.load(out, "onnxruntime", threads=1)


def test_files_without_an_identity_export_with_a_warning(ws, tmp_path) -> None:
    with pytest.warns(UserWarning, match="records no checkpoint identity"):
        export_checkpoint(ws["ckpt"], tmp_path / "e", exit_table=ws["table"], depths="3", segments=False,
                          progress=False)


# -- 10. a re-signed checkpoint with garbage metadata is a clean error, in the API and in eval ---------------------------
@pytest.mark.parametrize("edit", [{"tokenizer_json": "{}"}, {"tokenizer_json": "not json"}, {"label_names": [1, 2]},
                                  {"method": "magic"}, {"max_len": "64"}, {"exit_mode": "sideways"}])
def test_a_re_signed_checkpoint_with_bad_metadata_is_named(ws, tmp_path, capsys, edit) -> None:
    import torch

    from geep_deploy.checkpoint import content_digest, load_checkpoint
    from geep_deploy.errors import CheckpointError

    payload = {**torch.load(ws["ckpt"], weights_only=True), **edit}
    payload["sha256"] = content_digest(payload)
    p = tmp_path / "resigned.pt"
    torch.save(payload, p)
    with pytest.raises(CheckpointError, match=next(iter(edit)).split("_")[0]):
        load_checkpoint(p)
    assert main(["eval", "--checkpoint", str(p), "--data", str(ws["data"])]) == 1
    assert capsys.readouterr().err.startswith("error: checkpoint |")


# -- 4. stalled connections cannot starve the service, and its log cannot flood ---------------------------------------
def test_stalled_connections_are_closed_and_good_requests_still_answered(tmp_path) -> None:
    import socket
    import time

    from models import TEXTS
    from service_helpers import tiny_service_export

    from geep_deploy.bench.loadgen import ServerProcess, http_get

    export = tiny_service_export(tmp_path)
    log = tmp_path / "serve.log"
    srv = ServerProcess(["--export", str(export), "--threads", "1", "--header-timeout", "1", "--body-timeout", "1",
                         "--max-connections", "16"], log_path=log).start()
    socks: list[socket.socket] = []
    try:
        partial = (b"POST /v1/classify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                   b"content-length: 1000\r\n\r\n{\"text\": ")
        for i in range(60):  # more stalled clients than --max-connections: half headers, or half a body
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.sendall(partial if i % 2 else partial[:20])
            socks.append(s)
        t0 = time.monotonic()
        body = json.dumps({"text": TEXTS[0]}).encode()
        import urllib.request

        req = urllib.request.Request(srv.url + "/v1/classify", data=body,
                                     headers={"content-type": "application/json"})
        for _ in range(20):  # the newest connection evicts the oldest stalled one, so this gets through
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    assert r.status == 200 and json.loads(r.read())["predictions"]
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("no good request was answered while stalled connections were open")
        assert time.monotonic() - t0 < 5
        time.sleep(1.5)  # every stalled connection is past its read deadline by now
        closed = 0
        for s in socks:
            s.settimeout(2)
            try:
                closed += s.recv(4096) in (b"",) or s.recv(4096) == b""  # closed (after a 503, if refused)
            except OSError:
                closed += 1  # reset by the server
        assert closed == len(socks)
        assert http_get(srv.url + "/healthz")[0] == 200
    finally:
        for s in socks:
            s.close()
        srv.stop()
    text = log.read_text(errors="replace")
    assert "within 1 s" in text and len(text.splitlines()) < 40, text[-2000:]


def test_repeated_log_lines_are_rate_limited() -> None:
    import logging

    from geep_deploy.service.connections import RepeatFilter

    f = RepeatFilter(burst=3, window_s=0.2)
    rec = lambda: logging.LogRecord("uvicorn.error", 30, __file__, 1, "Invalid HTTP request received.", None, None)  # noqa: E731
    assert [f.filter(rec()) for _ in range(10)] == [True] * 3 + [False] * 7
    import time

    time.sleep(0.25)
    r = rec()
    assert f.filter(r) and "7 more like this" in r.msg
