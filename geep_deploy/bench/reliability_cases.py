"""The hostile pass of issue 25 as case builders for `geep_deploy.bench.reliability`: numeric flags of every
command, outputs that are inputs, look-alike folders next to an export, the probe JSON, nested JSON, artifact paths
out of the export (FIFO, devices, symlinks), the probe knobs of ``GeepEngine.load``, and stalled HTTP connections.

Each builder returns ``[(name, case)]``; a case returns ``(outcome, detail)`` with the outcomes of
`geep_deploy.bench.reliability_base` plus ``hang`` (a call that did not return within its time bound).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Case = tuple[str, Callable[[], tuple[str, str]]]
HANG_S = 30.0


def bounded(case: Callable[[], tuple[str, str]], seconds: float = HANG_S) -> tuple[str, str]:
    """Run ``case`` in a daemon thread; ``hang`` if it has not returned after ``seconds``."""
    box: list[tuple[str, str]] = []
    t = threading.Thread(target=lambda: box.append(case()), daemon=True)
    t.start()
    t.join(seconds)
    return box[0] if box else ("hang", f"no answer within {seconds:g} s")


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file() and not p.is_symlink()}


def rehash_files(root: Path) -> None:
    """Recompute every file checksum and the manifest's own (a forger with write access)."""
    from runtime.manifest import SELF_HASH, listed_files, manifest_digest, sha256_file

    m = json.loads((root / "manifest.json").read_text())
    for e in listed_files(m):
        p = root / e["file"]
        if p.is_file() and not p.is_symlink():
            e["sha256"] = sha256_file(p)
    m[SELF_HASH] = manifest_digest(m)
    (root / "manifest.json").write_text(json.dumps(m))


def valid_probe(**kw: Any) -> Any:
    """A valid probe for the 3-layer workspace model (zero weights: every row's risk is 0.5)."""
    from runtime.probe import FEATURES, ProbeModel

    f = len(FEATURES)
    return ProbeModel(num_layers=3, mean=np.zeros(f), scale=np.ones(f), weights=np.zeros((2, f + 1)), risk=0.5,
                      uses_table=False, **kw)


# -- numeric flags -------------------------------------------------------------------------------------------------
def numeric_flag_cases(ws: dict[str, Path], tmp: Path, run_cli: Callable) -> list[Case]:
    """NaN, infinity and just outside the range of every numeric flag of every command (from the parsers)."""
    from geep_deploy.cli import SUBCOMMANDS, _subparser, build_parser
    from geep_deploy.cli.checks import FLAG_RANGES, numeric_dests

    e, c, d = str(ws["export"]), str(ws["ckpt"]), str(ws["data"])
    need = {"serve": ["--export", e], "calibrate": ["--checkpoint", c, "--data", d, "--out", str(tmp / "nf.npz")],
            "train": ["--data", d, "--method", "geep", "--out", str(tmp / "nf.pt")], "bench": ["--export", e,
                                                                                             "--data", d],
            "predict": ["--export", e, "--text", "good"], "export": ["--checkpoint", c, "--out", str(tmp / "nf")],
            "eval": ["--checkpoint", c, "--data", d], "demo": ["--out", str(tmp / "nf-demo"), "--skip-deploy"]}
    cases: list[Case] = []
    for cmd in SUBCOMMANDS:
        parser, mods = build_parser(cmd)
        if mods.get(cmd) is None:
            continue
        for dest, integer in sorted(numeric_dests(_subparser(parser, cmd)).items()):
            rng = FLAG_RANGES.get(dest)
            values = ["nan", "inf", "-inf"]
            if rng is not None and rng.lo is not None:
                values.append(str(int(rng.lo) - 1 if integer else (rng.lo if rng.lo_open else rng.lo - 0.5)))
            if rng is not None and rng.hi is not None:
                values.append(str(int(rng.hi) + 1 if integer else rng.hi * 2 + 1))
            flag = "--" + dest.replace("_", "-")
            for v in values:
                argv = [cmd, *need[cmd], flag, v]
                cases.append((f"{cmd} {flag} {v}", lambda a=argv: run_cli(a)))
    return cases


# -- outputs that are inputs -------------------------------------------------------------------------------------
def path_equality_cases(ws: dict[str, Path], tmp: Path, run_cli: Callable) -> list[Case]:
    """An output equal to an input (directly, via a symlink or ``..``), inside the data folder, or equal to another
    output: refused before any work, every input unchanged."""
    base = tmp / "pe"
    base.mkdir(exist_ok=True)
    ck, data = base / "ck.pt", base / "data"
    if not ck.exists():
        shutil.copy(ws["ckpt"], ck)
        shutil.copytree(ws["data"], data)
        (base / "link.pt").symlink_to(ck)
    c, d = ["--checkpoint", str(ck)], ["--data", str(data)]
    t = str(base / "t.npz")
    argvs = {
        "calibrate --out CKPT": ["calibrate", *c, *d, "--out", str(ck)],
        "calibrate --out symlink to CKPT": ["calibrate", *c, *d, "--out", str(base / "link.pt")],
        "calibrate --out DATA/../CKPT": ["calibrate", *c, *d, "--out", str(data / ".." / "ck.pt")],
        "calibrate --probe-out CKPT": ["calibrate", *c, *d, "--out", t, "--predictor", "probe", "--probe-out",
                                       str(ck)],
        "calibrate --probe-out = --out": ["calibrate", *c, *d, "--out", t, "--predictor", "probe", "--probe-out", t],
        "calibrate --out DATA/train.tsv": ["calibrate", *c, *d, "--out", str(data / "train.tsv")],
        "calibrate --out DATA/labels.txt": ["calibrate", *c, *d, "--out", str(data / "labels.txt")],
        "calibrate --out into DATA": ["calibrate", *c, *d, "--out", str(data / "table.npz")],
        "eval --json CKPT": ["eval", *c, *d, "--json", str(ck)],
        "eval --json DATA/dev.tsv": ["eval", *c, *d, "--json", str(data / "dev.tsv")],
        "train --out DATA/train.tsv": ["train", *d, "--method", "geep", "--out", str(data / "train.tsv")],
        "train --out into DATA": ["train", *d, "--method", "geep", "--out", str(data / "x.pt")],
        "export --out the folder holding CKPT --force": ["export", *c, "--out", str(base), "--force"],
        "bench --json EXPORT/manifest.json": ["bench", "--export", str(ws["export"]), *d, "--json",
                                              str(ws["export"] / "manifest.json")],
        "bench --plot into DATA": ["bench", "--export", str(ws["export"]), *d, "--plot", str(data / "p.png")],
    }

    def go(argv: list[str]) -> tuple[str, str]:
        before = (ck.read_bytes(), _tree(data), _tree(ws["export"]))
        res = run_cli(argv)
        if (ck.read_bytes(), _tree(data), _tree(ws["export"])) != before:
            return "data_lost", f"{res[1]} (an input changed)"
        return res

    return [(n, lambda a=a: go(a)) for n, a in argvs.items()]


# -- look-alike folders next to an export ------------------------------------------------------------------------
def look_alike_cases(ws: dict[str, Path], tmp: Path, run_cli: Callable) -> list[Case]:
    """A user's ``.NAME.old-*``/``.NAME.tmp-*`` folders, glob characters in --out, a symlinked temp folder: an
    export that fails and one that succeeds must leave every one of them as it was."""
    cases: list[Case] = []

    def go(out_name: str, ok: bool, link: bool) -> tuple[str, str]:
        x = tmp / f"la-{abs(hash((out_name, ok, link)))}"
        shutil.rmtree(x, ignore_errors=True)
        for n in (f".{out_name}.old-backup", f".{out_name}.tmp-notes", ".a.tmp-1", ".b.old-2", ".*.tmp-zz"):
            (x / n).mkdir(parents=True)
            (x / n / "n.txt").write_text("hi")
        if link:
            target = tmp / "la-target"
            target.mkdir(exist_ok=True)
            (target / ".export-pid").write_text("999999999")
            (target / "keep.txt").write_text("mine")
            (x / f".{out_name}.tmp-link").symlink_to(target, target_is_directory=True)
        before = _tree(x), _tree(tmp / "la-target") if link else {}
        ck = ws["ckpt"] if ok else tmp / "nope.pt"
        res = run_cli(["export", "--checkpoint", str(ck), "--out", str(x / out_name), "--quiet", "--no-segments",
                       "--depths", "3"], expect_ok=ok)
        after = ({k: v for k, v in _tree(x).items() if not k.startswith(out_name + "/")},
                 _tree(tmp / "la-target") if link else {})
        if after != before:
            return "data_lost", f"{res[1]} (a look-alike folder changed or is gone)"
        return res

    for name in ("model", "*", "[abc]", "m?"):
        for ok in (False, True):
            for link in (False, True):
                cases.append((f"export --out x/{name} {'succeeds' if ok else 'fails'}"
                              f"{' (symlinked temp)' if link else ''}", lambda n=name, o=ok, k=link: go(n, o, k)))
    return cases


# -- the probe JSON ------------------------------------------------------------------------------------------------
PROBE_EDITS: dict[str, Callable[[dict], Any]] = {
    "NaN coefficient": lambda d: d["weights"][0].__setitem__(0, float("nan")),
    "inf mean": lambda d: d["mean"].__setitem__(0, float("inf")),
    "string scale": lambda d: d["scale"].__setitem__(0, "1.0"),
    "zero scale": lambda d: d["scale"].__setitem__(0, 0.0),
    "weights one row short": lambda d: d["weights"].pop(),
    "weights not a list": lambda d: d.update(weights=3),
    "uses_table 'false'": lambda d: d.update(uses_table="false"),
    "uses_table 1": lambda d: d.update(uses_table=1),
    "exit_mode 'sideways'": lambda d: d.update(exit_mode="sideways"),
    "features 5": lambda d: d.update(features=5),
    "features reordered": lambda d: d.update(features=d["features"][::-1]),
    "num_layers 3.0": lambda d: d.update(num_layers=3.0),
    "num_layers true": lambda d: d.update(num_layers=True),
    "num_layers 4": lambda d: d.update(num_layers=4),
    "risk true": lambda d: d.update(risk=True),
    "risk '0.3'": lambda d: d.update(risk="0.3"),
    "risk 2": lambda d: d.update(risk=2),
    "escalate NaN": lambda d: d.update(escalate=float("nan")),
    "escalate '0.5'": lambda d: d.update(escalate="0.5"),
    "checkpoint 'abc'": lambda d: d.update(checkpoint="abc"),
    "checkpoint of another model": lambda d: d.update(checkpoint="0" * 64),
    "version 2": lambda d: d.update(version=2),
    "format other": lambda d: d.update(format="other"),
    "drop risk": lambda d: d.pop("risk"),
}


def probe_json_cases(ws: dict[str, Path], tmp: Path, run_cli: Callable) -> list[Case]:
    """Edited probe files given to ``export --probe``: a clean error before any work, no export written."""
    from geep_deploy.checkpoint import load_checkpoint

    ident = load_checkpoint(ws["ckpt"]).weights_sha256
    cases: list[Case] = []
    raw = {"nested 100k": "[" * 100_000, "not JSON": "{oops", "empty": "", "list": "[1, 2]",
           "UTF-16": '{"a": 1}'.encode("utf-16").decode("latin-1")}

    def go(name: str, text: str | None, special: str | None = None) -> tuple[str, str]:
        p = tmp / f"probe-{abs(hash(name))}.json"
        if p.exists() or p.is_symlink():
            p.unlink() if not p.is_dir() else p.rmdir()
        if special == "fifo":
            os.mkfifo(p)
        elif special == "dir":
            p.mkdir()
        else:
            p.write_text(text or "", encoding="latin-1" if name == "UTF-16" else "utf-8")
        out = tmp / f"pe-{abs(hash(name))}"
        res = bounded(lambda: run_cli(["export", "--checkpoint", str(ws["ckpt"]), "--out", str(out), "--quiet",
                                       "--exit-table", str(ws["table"]), "--probe", str(p)]))
        if res[0] == "clean" and out.exists():
            return "silent_wrong", f"{res[1]} (but an export was written)"
        return res

    for name, edit in PROBE_EDITS.items():
        d = valid_probe(checkpoint=ident).to_dict()
        edit(d)
        text = json.dumps(d)
        cases.append((f"probe {name}", lambda n=name, t=text: go(n, t)))
    for name, text in raw.items():
        cases.append((f"probe file {name}", lambda n=name, t=text: go(n, t)))
    cases.append(("probe file is a FIFO", lambda: go("fifo", None, "fifo")))
    cases.append(("probe file is a directory", lambda: go("dir", None, "dir")))
    return cases


# -- nested JSON ---------------------------------------------------------------------------------------------------
def nested_json_cases(ws: dict[str, Path], tmp: Path, run_cli: Callable, run_api: Callable) -> list[Case]:
    """``'[' * 100000`` (and a 1-level-too-deep document) as manifest.json or probe.json: load, predict, serve
    and ``export --force`` all answer with a clean error, and ``--force`` leaves the folder alone."""
    from runtime.engine import GeepEngine

    probe_export = tmp / "nj-probe-export"
    if not probe_export.exists():
        from export.bundle import export_checkpoint
        from geep_deploy.checkpoint import load_checkpoint

        export_checkpoint(ws["ckpt"], probe_export, exit_table=ws["table"], segments=False, progress=False,
                          probe=valid_probe(checkpoint=load_checkpoint(ws["ckpt"]).weights_sha256))
    bombs = {"[ * 100000": "[" * 100_000, "{ * 100000": '{"a":' * 100_000, "65 levels": "[" * 65 + "]" * 65}
    cases: list[Case] = []
    for bname, bomb in bombs.items():
        for where in ("manifest.json", "probe.json"):
            def make(where: str = where, bomb: str = bomb, bname: str = bname) -> Path:
                out = tmp / f"nj-{abs(hash((where, bname)))}"
                if not out.exists():
                    shutil.copytree(probe_export, out)
                    (out / where).write_text(bomb)
                    if where != "manifest.json":
                        rehash_files(out)
                return out

            def load(make: Callable = make) -> Any:
                with GeepEngine.load(make(), "onnxruntime", threads=1) as eng:
                    return eng.predict(["good"])

            def force(make: Callable = make, where: str = where) -> tuple[str, str]:
                out = make()
                before = _tree(out)
                res = run_cli(["export", "--checkpoint", str(ws["ckpt"]), "--out", str(out), "--force", "--quiet",
                               "--no-segments", "--depths", "3"], expect_ok=where != "manifest.json")
                if where == "manifest.json" and _tree(out) != before:
                    return "data_lost", f"{res[1]} (the folder changed)"
                return res

            tag = f"{where} {bname}"
            cases.append((f"GeepEngine.load, {tag}", lambda f=load: run_api(f)))
            cases.append((f"predict, {tag}", lambda m=make: run_cli(["predict", "--export", str(m()), "--text",
                                                                     "good"])))
            cases.append((f"serve, {tag}", lambda m=make: run_cli(["serve", "--export", str(m()), "--port", "0"])))
            cases.append((f"export --force over it, {tag}", force))
    return cases


def point_external_data(graph: Path, location: str) -> None:
    """Rewrite every external-data location of the graph at ``graph`` (what a crafted export does)."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    graph.write_bytes(model.SerializeToString())


# -- artifact paths ------------------------------------------------------------------------------------------------
def artifact_path_cases(ws: dict[str, Path], tmp: Path, run_api: Callable) -> list[Case]:
    """A graph's external data (checksums recomputed) or a listed file pointing at a FIFO, a device, a file
    outside the export or a symlink out: a clean error before anything opens it, never a hang."""
    from runtime.engine import GeepEngine

    cases: list[Case] = []

    def external(where: str, share: bool) -> tuple[str, str]:
        out = tmp / f"ap-{abs(hash((where, share)))}"
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(ws["export"], out)
        d = out / "onnx" / "fp32"
        location = where
        if where == "FIFO":
            os.mkfifo(d / "pipe.bin")
            location = "pipe.bin"
        elif where == "symlink out":
            (d / "out.bin").symlink_to(ws["export"] / "onnx" / "fp32" / "weights.bin")
            location = "out.bin"
        point_external_data(d / "depth1.onnx", location)
        rehash_files(out)

        def go() -> Any:
            with GeepEngine.load(out, "onnxruntime", threads=1, share_weights=share) as eng:
                return eng.predict(["good"])
        return bounded(lambda: run_api(go))

    for where in ("FIFO", "/etc/services", "/dev/zero", "../../tiny.pt", "symlink out", "missing.bin"):
        for share in (True, False):
            cases.append((f"external data -> {where} (share_weights={share})",
                          lambda w=where, s=share: external(w, s)))

    def listed(rel: str, kind: str, verify: bool) -> tuple[str, str]:
        out = tmp / f"al-{abs(hash((rel, kind, verify)))}"
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(ws["export"], out)
        p = out / rel
        p.unlink()
        if kind == "FIFO":
            os.mkfifo(p)
        elif kind == "directory":
            p.mkdir()
        elif kind == "symlink out (same bytes)":
            p.symlink_to(ws["export"] / rel)
        else:
            p.symlink_to("/dev/null")

        def go() -> Any:
            with GeepEngine.load(out, "onnxruntime", threads=1, verify=verify) as eng:
                return eng.predict(["good"])
        return bounded(lambda: run_api(go))

    for rel in ("tokenizer.json", "manifest.json", "onnx/fp32/weights.bin", "onnx/fp32/depth3.onnx", "table.npz"):
        if not (ws["export"] / rel).exists():
            continue
        for kind in ("FIFO", "directory", "symlink out (same bytes)", "symlink to /dev/null"):
            for verify in (True, False):
                cases.append((f"{rel} is a {kind} (verify={verify})",
                              lambda r=rel, k=kind, v=verify: listed(r, k, v)))
    return cases


# -- GeepEngine.load's probe knobs and other arguments --------------------------------------------------------------
def api_knob_cases(ws: dict[str, Path], tmp: Path, run_api: Callable) -> list[Case]:
    """risk/escalate of every wrong type or range, knobs that do not apply, max_group 0, non-path exports."""
    from runtime.engine import GeepEngine

    probe_export = tmp / "nj-probe-export"  # built by nested_json_cases, or here
    if not probe_export.exists():
        from export.bundle import export_checkpoint
        from geep_deploy.checkpoint import load_checkpoint

        export_checkpoint(ws["ckpt"], probe_export, exit_table=ws["table"], segments=False, progress=False,
                          probe=valid_probe(checkpoint=load_checkpoint(ws["ckpt"]).weights_sha256))
    cases: list[Case] = []

    def load(export: Any, **kw: Any) -> Callable[[], Any]:
        def go() -> Any:
            with GeepEngine.load(export, "onnxruntime", threads=1, **kw) as eng:
                return eng.predict(["good"])
        return go

    bad = [{"risk": v} for v in ("high", [0.3], True, False, "0.3", float("nan"), float("inf"), -0.1, 1.5, None)]
    bad = [b for b in bad if b["risk"] is not None]
    bad += [{"escalate": v} for v in ("0.5", True, -0.1, 2.0, float("nan"), [0.5], "off")]
    bad += [{"max_group": v} for v in (0, -1, 2.5, "64", True)]
    for kw in bad:
        cases.append((f"load(probe export, {kw})", lambda k=kw: run_api(load(probe_export, **k))))
    for where, extra, export in (("table-only export", {}, ws["export"]),
                                 ("predictor='table'", {"predictor": "table"}, probe_export),
                                 ("fixed_depth=3", {"fixed_depth": 3}, probe_export)):
        for kw in ({"risk": 0.3}, {"escalate": 0.5}, {"risk": 0.1, "escalate": None}):
            cases.append((f"{kw} with {where} (does not apply)",
                          lambda k={**kw, **extra}, e=export: run_api(load(e, **k))))
    for path in (None, 123, 1.5, b"/tmp", ["x"]):
        cases.append((f"GeepEngine.load({path!r})", lambda p=path: run_api(lambda: GeepEngine.load(p))))
    cases.append(("load(probe export, risk=0.2, escalate=None) works",
                  lambda: run_api(load(probe_export, risk=0.2, escalate=None), lambda r: len(r) == 1)))
    return cases


# -- stalled HTTP connections --------------------------------------------------------------------------------------
def service_cases(ws: dict[str, Path], tmp: Path) -> list[Case]:
    """A real ``serve`` process with --max-connections 16 and 1 s read bounds: 40 clients stalled in their
    headers or body (more than the cap), then a good request, which must be answered; every stalled client must
    be cut within the bound, and the log stays small."""
    import urllib.request

    from geep_deploy.bench.loadgen import ServerProcess

    def go(kind: str) -> tuple[str, str]:
        log = tmp / f"serve-{kind}.log"
        srv = ServerProcess(["--export", str(ws["export"]), "--threads", "1", "--header-timeout", "1",
                             "--body-timeout", "1", "--max-connections", "16"], log_path=log).start()
        socks: list[socket.socket] = []
        try:
            head = (b"POST /v1/classify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                    b"content-length: 1000\r\n\r\n{\"text\": ")
            for i in range(40):
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                s.sendall({"headers": head[:20], "body": head, "idle": b"", "mixed": head[: 20 + 40 * (i % 2)]}[kind])
                socks.append(s)
            req = urllib.request.Request(srv.url + "/v1/classify", data=json.dumps({"text": "good"}).encode(),
                                         headers={"content-type": "application/json"})
            t0, answered = time.monotonic(), False
            while not answered and time.monotonic() - t0 < 10:
                try:
                    with urllib.request.urlopen(req, timeout=5) as r:
                        answered = r.status == 200
                except OSError:
                    time.sleep(0.2)
            waited = time.monotonic() - t0
            time.sleep(1.5)
            alive = 0
            for s in socks:
                s.settimeout(3)
                try:
                    data = s.recv(4096)
                    alive += bool(data) and s.recv(4096) != b""
                except OSError:
                    pass
            lines = len(log.read_text(errors="replace").splitlines())
        finally:
            for s in socks:
                s.close()
            srv.stop()
        if not answered:
            return "hang", f"a good request got no answer within 10 s while 40 {kind} clients stalled"
        if alive:
            return "hang", f"{alive} stalled connections still open after their read bound"
        if lines > 60:
            return "silent_wrong", f"the log grew {lines} lines"
        return "correct", f"good request answered in {waited:.1f} s; 40 stalled closed; log {lines} lines"

    return [(f"40 clients stalled ({kind}) vs --max-connections 16", lambda k=kind: go(k))
            for kind in ("headers", "body", "idle", "mixed")]
