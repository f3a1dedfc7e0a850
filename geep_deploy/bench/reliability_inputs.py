"""The hostile pass of issue 15 as case builders: bad CLI and API arguments, bad texts and encodings, malformed
manifests, corrupted artifacts, damaged checkpoints, data loss, interrupted exports and output paths.

Each builder returns ``[(name, case)]``; a case returns ``(outcome, detail)`` with the outcomes of
`geep_deploy.bench.reliability_base`. Issue 25's builders are in `geep_deploy.bench.reliability_cases`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.bench.reliability_base import (
    BAD,
    TEXTS,
    Case,
    load_and_predict,
    predict_matches,
    run_api,
    run_cli,
)
from geep_deploy.errors import GeepError

ROOT = Path(__file__).resolve().parents[2]  # the folder holding geep_deploy: a child export process imports from it


def cli_cases(ws: dict[str, Path], tmp: Path) -> list[Case]:
    e, c, dt = str(ws["export"]), str(ws["ckpt"]), str(ws["data"])
    d = tmp / "a_dir"
    d.mkdir(exist_ok=True)
    f = tmp / "a_file.txt"
    f.write_text("x")
    bench = ["bench", "--export", e, "--data", dt, "--no-progress"]
    argvs = {
        "export --max-len 0": ["export", "--checkpoint", c, "--out", str(tmp / "x1"), "--max-len", "0"],
        "export --max-len 600": ["export", "--checkpoint", c, "--out", str(tmp / "x2"), "--max-len", "600"],
        "export --max-batch -1": ["export", "--checkpoint", c, "--out", str(tmp / "x3"), "--max-batch", "-1"],
        "export --precision tf99": ["export", "--checkpoint", c, "--out", str(tmp / "x4"), "--precision", "tf99"],
        "export --depths 0,9": ["export", "--checkpoint", c, "--out", str(tmp / "x5"), "--depths", "0,9"],
        "export --checkpoint DIR": ["export", "--checkpoint", str(d), "--out", str(tmp / "x6")],
        "export --out FILE": ["export", "--checkpoint", c, "--out", str(f), "--force"],
        "train --max-len 600": ["train", "--data", dt, "--method", "geep", "--out", str(tmp / "t.pt"),
                                "--max-len", "600"],
        "train --max-len 0": ["train", "--data", dt, "--method", "geep", "--out", str(tmp / "t.pt"), "--max-len", "0"],
        "train --max-train -5": ["train", "--data", dt, "--method", "geep", "--out", str(tmp / "t.pt"),
                                 "--max-train", "-5"],
        "train --batch-size 0": ["train", "--data", dt, "--method", "geep", "--out", str(tmp / "t.pt"),
                                 "--batch-size", "0"],
        "train --out DIR": ["train", "--data", dt, "--method", "geep", "--out", str(d)],
        "calibrate --out DIR": ["calibrate", "--checkpoint", c, "--data", dt, "--out", str(d)],
        "calibrate --tau (consistency rule)": ["calibrate", "--checkpoint", c, "--data", dt, "--out",
                                               str(tmp / "t.npz"), "--tau", "0.2"],
        "calibrate --max-calib -1": ["calibrate", "--checkpoint", c, "--data", dt, "--out", str(tmp / "t.npz"),
                                     "--max-calib", "-1"],
        "eval --json DIR": ["eval", "--checkpoint", c, "--data", dt, "--json", str(d)],
        "eval --checkpoint DIR": ["eval", "--checkpoint", str(d), "--data", dt],
        "eval --batch-size 0": ["eval", "--checkpoint", c, "--data", dt, "--batch-size", "0"],
        "bench --json DIR": [*bench, "--json", str(d)],
        "bench --methods ''": [*bench, "--methods", ""],
        "bench --methods ','": [*bench, "--methods", ","],
        "bench --methods nope": [*bench, "--methods", "nope"],
        "bench --threads -3": [*bench, "--threads", "-3"],
        "bench --max-rows -5": [*bench, "--max-rows", "-5"],
        "bench --batch-sizes 0": [*bench, "--batch-sizes", "0"],
        "bench --repeats 0": [*bench, "--repeats", "0"],
        "predict --export FILE": ["predict", "--export", c, "--text", "good"],
        "predict --export missing": ["predict", "--export", str(tmp / "none"), "--text", "good"],
        "predict --input DIR": ["predict", "--export", e, "--input", str(d)],
        "predict --input missing": ["predict", "--export", e, "--input", str(tmp / "none.tsv")],
        "predict tf32 onnxruntime": ["predict", "--export", e, "--text", "good", "--precision", "tf32",
                                     "--backend", "onnxruntime"],
        "predict --batch-size 0": ["predict", "--export", e, "--text", "good", "--batch-size", "0"],
        "predict --depth 0": ["predict", "--export", e, "--text", "good", "--depth", "0"],
        "predict --depth 9": ["predict", "--export", e, "--text", "good", "--depth", "9"],
        "predict --text ''": ["predict", "--export", e, "--text", ""],
        "predict --text zero-width": ["predict", "--export", e, "--text", "\u200b"],
        "predict --text-b without --text pair count": ["predict", "--export", e, "--text", "a", "--text-b", "b",
                                                       "--text-b", "c"],
        "predict --precision int8 (not exported)": ["predict", "--export", e, "--text", "good", "--precision",
                                                    "int8"],
        "unknown subcommand": ["frobnicate"],
        "predict no source": ["predict", "--export", e],
    }
    return [(name, (lambda a=a: run_cli(a))) for name, a in argvs.items()]


def api_cases(ws: dict[str, Path], ref: tuple[list[str], list[int], np.ndarray]) -> list[Case]:
    from runtime.engine import GeepEngine

    e = ws["export"]

    def predict(**kw: Any) -> Callable[[], Any]:
        def fn() -> Any:
            with GeepEngine.load(e, "onnxruntime", threads=1) as eng:
                return eng.predict(TEXTS, **kw)
        return fn

    def load(**kw: Any) -> Callable[[], Any]:
        def fn() -> Any:
            with GeepEngine.load(e, **{"backend": "onnxruntime", **kw}) as eng:
                return eng.predict(TEXTS)
        return fn

    cases: list[Case] = []
    for bs in (0, -1, 2.5, "64", True):
        cases.append((f"predict(batch_size={bs!r})", lambda bs=bs: run_api(predict(batch_size=bs))))
    for dd in ([None] * 4, [2.7] * 4, ["2"] * 4, [0] * 4, [4] * 4, [1, 2]):
        cases.append((f"predict(depths={dd!r})", lambda dd=dd: run_api(predict(depths=dd))))
    for kw in ({"depths": [3]}, {"depths": [None]}, {"depths": [2.7]}, {"depths": [2]}, {"depths": [1, 2]},
               {"depths": []}, {"threads": -3}, {"threads": 0}, {"fixed_depth": 0}, {"fixed_depth": 7},
               {"backend": "nope"}, {"precision": "tf32"}, {"precision": "int8"}):
        good = kw == {"depths": [3]}
        cases.append((f"load({kw})", lambda kw=kw, good=good: run_api(
            load(**kw), (lambda r: len(r) == len(TEXTS) and set(r.depths.tolist()) == {3}) if good else None)))
    cases.append(("load(depths=[1,2,3]) matches the reference",
                  lambda: run_api(load(depths=[1, 2, 3]), predict_matches(ref))))
    return cases


def text_cases(ws: dict[str, Path]) -> list[Case]:
    from runtime.engine import GeepEngine

    bad = {"lone surrogate": "\ud800", "surrogate in text": "good \udfff film", "zero-width only": "\u200b",
           "zero-width mix": "\u200b\u200c\u200d\ufeff", "NUL only": "\x00", "NULs": "\x00\x00\x00",
           "control chars only": "\x01\x02\x1f", "empty": "", "spaces": "   ", "newline only": "\n\r\n",
           "None": None, "int": 3, "bytes": b"good"}
    ok = {"CRLF": "good\r\nfilm", "emoji": "great 🎬🍿", "CJK": "电影很好", "RTL": "فيلم جيد", "1 MB line": "good " * 200_000,
          "NUL inside": "good\x00film", "combining marks": "e\u0301\u0301\u0301 good", "tab": "good\tfilm"}
    cases: list[Case] = []

    def fn(t: Any, texts_b: bool) -> Callable[[], Any]:
        def go() -> Any:
            with GeepEngine.load(ws["export"], "onnxruntime", threads=1) as eng:
                return eng.predict(["good"], [t]) if texts_b else eng.predict(["good", t])
        return go

    def sane(r: Any) -> bool:
        return len(r) == 2 and bool(np.isfinite(r.probabilities).all()) and set(r.depths.tolist()) <= {1, 2, 3}

    for side in (False, True):
        for name, t in bad.items():
            cases.append((f"{'text_b' if side else 'text'}: {name}", lambda t=t, s=side: run_api(fn(t, s))))
        for name, t in ok.items():
            if not side:
                cases.append((f"text: {name} (valid)", lambda t=t: run_api(fn(t, False), sane)))
    for name, arg in (("a str, not a list", "good"), ("empty list", []), ("dict", {"a": 1}), ("None", None)):
        def call(arg: Any = arg) -> Any:
            with GeepEngine.load(ws["export"], "onnxruntime", threads=1) as eng:
                return eng.predict(arg)
        cases.append((f"texts = {name}", lambda call=call: run_api(call)))
    return cases


def edit_manifest(root: Path, edit: Callable[[dict], None], rehash: bool = True) -> None:
    """Apply ``edit(m)`` to the export's manifest; with ``rehash`` its own checksum is recomputed (a consistent
    forgery, so what is tested is the schema check, not the checksum)."""
    from runtime.manifest import SELF_HASH, manifest_digest

    p = root / "manifest.json"
    m = json.loads(p.read_text())
    edit(m)
    if rehash and isinstance(m, dict):
        m[SELF_HASH] = manifest_digest(m)
    p.write_text(json.dumps(m))


def manifest_cases(ws: dict[str, Path], tmp: Path, ref: tuple[list[str], list[int], np.ndarray]) -> list[Case]:
    """Edits a user or a broken tool might make, each with the manifest's own checksum left stale and recomputed."""
    edits: dict[str, Callable[[dict], None]] = {
        "swap label_names": lambda m: m["label_names"].reverse(),
        "label_names ['a']": lambda m: m.update(label_names=["a"]),
        "max_len 8": lambda m: m.update(max_len=8),
        "max_len 9999": lambda m: m.update(max_len=9999),
        "swap depth 2/3 graphs": lambda m: [a.update(depth={2: 3, 3: 2}[a["depth"]]) for a in m["artifacts"]
                                            if a["depth"] in (2, 3)],
        "num_labels 3": lambda m: m.update(num_labels=3),
        "3 labels everywhere": lambda m: (m.update(num_labels=3, label_names=["a", "b", "c"]),
                                          [a["outputs"]["logits"].update(shape=["batch", 3])
                                           for a in m["artifacts"] if a["kind"] == "depth"]),
        "depths [1]": lambda m: m.update(depths=[1]),
        "depths ['x']": lambda m: m.update(depths=["x"]),
        "drop tokenizer": lambda m: m.pop("tokenizer"),
        "artifacts null": lambda m: m.update(artifacts=None),
        "artifacts ['x']": lambda m: m.update(artifacts=["x"]),
        "artifacts []": lambda m: m.update(artifacts=[]),
        "artifact kind 'foo'": lambda m: m["artifacts"][0].update(kind="foo"),
        "artifact file '../x'": lambda m: m["artifacts"][0].update(file="../x"),
        "artifact file '/etc/passwd'": lambda m: m["artifacts"][0].update(file="/etc/passwd"),
        "artifact no sha256": lambda m: m["artifacts"][0].pop("sha256"),
        "weights null": lambda m: m.update(weights=None),
        "weights [3]": lambda m: m.update(weights=[3]),
        "backbone null": lambda m: m.update(backbone=None),
        "backbone layers 'x'": lambda m: m["backbone"].update(num_hidden_layers="x"),
        "exit_table 'x'": lambda m: m.update(exit_table="x"),
        "exit_table file missing": lambda m: m["exit_table"].update(file="nope.npz"),
        "format_version 99": lambda m: m.update(format_version=99),
        "format 'other'": lambda m: m.update(format="other"),
        "tensorrt 5": lambda m: m.update(tensorrt=5),
        "method 7": lambda m: m.update(method=7),
        "outputs logits width 5": lambda m: [a["outputs"]["logits"].update(shape=["batch", 5])
                                             for a in m["artifacts"] if a["kind"] == "depth"],
        "created changed (harmless)": lambda m: m.update(created="2000-01-01"),
    }
    harmless = {"created changed (harmless)"}
    # a consistent edit with a recomputed checksum is a new, valid export (only a secret-key signature could tell);
    # these two are tried with the checksum left stale only (see docs/reliability.md, "Limits")
    resigned_undetectable = {"swap label_names", "max_len 8"}
    cases: list[Case] = []
    for rehash in (False, True):
        for name, edit in edits.items():
            if rehash and name in resigned_undetectable:
                continue
            def go(name: str = name, edit: Callable = edit, rehash: bool = rehash) -> tuple[str, str]:
                out = tmp / f"m-{abs(hash((name, rehash)))}"
                shutil.copytree(ws["export"], out)
                edit_manifest(out, edit, rehash)
                check = predict_matches(ref) if (name in harmless and rehash) else None
                res = run_api(lambda: load_and_predict(out), check)
                shutil.rmtree(out, ignore_errors=True)
                return res
            cases.append((f"{name} ({'checksum recomputed' if rehash else 'checksum stale'})", go))
    raw = {"not JSON": b"{not json", "empty file": b"", "JSON list": b"[1, 2]", "UTF-16": '{"a": 1}'.encode("utf-16"),
           "NaN value": b'{"format": "geep-deploy-export", "format_version": 3, "max_len": NaN}'}
    for name, data in raw.items():
        def go_raw(data: bytes = data, name: str = name) -> tuple[str, str]:
            out = tmp / f"r-{abs(hash(name))}"
            shutil.copytree(ws["export"], out)
            (out / "manifest.json").write_bytes(data)
            res = run_api(lambda: load_and_predict(out))
            shutil.rmtree(out, ignore_errors=True)
            return res
        cases.append((f"manifest.json {name}", go_raw))
    return cases


def artifact_cases(ws: dict[str, Path], tmp: Path, ref: tuple[list[str], list[int], np.ndarray]) -> list[Case]:
    """Damaged files: bit flips (verify on), truncation and garbage (verify on and off), garbage with a matching
    checksum (so only the loader can notice), deleted files. A run that does not read the damaged file (torch
    reads no .onnx graph) must give the intact export's answer."""
    from runtime.manifest import SELF_HASH, manifest_digest, sha256_file

    files = ["onnx/fp32/depth1.onnx", "onnx/fp32/depth3.onnx", "onnx/fp32/weights.bin", "tokenizer.json",
             "table.npz" if (ws["export"] / "table.npz").exists() else "exit_table.npz"]
    files = [f for f in files if (ws["export"] / f).exists()]
    cases: list[Case] = []

    def damage(rel: str, how: str) -> Callable[[Path], None]:
        def apply(root: Path) -> None:
            p = root / rel
            data = bytearray(p.read_bytes())
            if how == "flip":
                data[len(data) // 2] ^= 0x5A
            elif how == "truncate":
                data = data[: len(data) // 2]
            elif how == "zero":
                data = bytearray()
            elif how in ("garbage", "garbage+checksum"):
                data = bytearray(b"\x08\x96\x01 not a real file " * 40)
            elif how == "delete":
                p.unlink()
                return
            p.write_bytes(bytes(data))
            if how == "garbage+checksum":
                m = json.loads((root / "manifest.json").read_text())
                for e in [m["tokenizer"], *m["weights"], *m["artifacts"], m.get("exit_table") or {}]:
                    if e.get("file") == rel:
                        e["sha256"], e["bytes"] = sha256_file(p), len(data)
                m[SELF_HASH] = manifest_digest(m)
                (root / "manifest.json").write_text(json.dumps(m))
        return apply

    for rel in files:
        for how, verifies in (("flip", (True,)), ("truncate", (True, False)), ("zero", (True, False)),
                              ("garbage", (True, False)), ("garbage+checksum", (True,)), ("delete", (True, False))):
            for verify in verifies:
                for backend in ("onnxruntime", "torch"):
                    def go(rel: str = rel, how: str = how, verify: bool = verify, backend: str = backend) -> tuple:
                        out = tmp / f"a-{abs(hash((rel, how, verify, backend)))}"
                        shutil.copytree(ws["export"], out)
                        damage(rel, how)(out)
                        res = run_api(lambda: load_and_predict(out, verify=verify, backend=backend),
                                      predict_matches(ref))
                        shutil.rmtree(out, ignore_errors=True)
                        return res
                    cases.append((f"{rel} {how} verify={verify} {backend}", go))
    return cases


def checkpoint_cases(ws: dict[str, Path], tmp: Path) -> list[Case]:
    import torch

    from geep_deploy.checkpoint import content_digest, load_checkpoint

    payload = torch.load(ws["ckpt"], weights_only=True)
    sd = payload["state_dict"]
    key = "heads.0.dense.weight"

    def nudged() -> dict:
        w = sd[key].clone()
        w.view(-1)[0] += 1e-3
        return {**payload, "state_dict": {**sd, key: w}}

    def nan(rehash: bool) -> dict:
        p = {**payload, "state_dict": {**sd, key: torch.full_like(sd[key], float("nan"))}}
        return {**p, "sha256": content_digest(p)} if rehash else p

    def resigned(**edit: Any) -> dict:
        p = {**payload, **edit}
        return {**p, "sha256": content_digest(p)}

    raw = ws["ckpt"].read_bytes()
    variants: dict[str, Any] = {
        "0 bytes": b"", "half": raw[: len(raw) // 2], "garbage": b"\x00garbage" * 100, "one byte": raw[:1],
        "flipped tensor value": nudged(), "edited tokenizer": {**payload, "tokenizer_json": "{}"},
        "swapped label names": {**payload, "label_names": payload["label_names"][::-1]},
        "NaN weights (checksum stale)": nan(False), "NaN weights (checksum recomputed)": nan(True),
        "foreign dict": {"weights": torch.zeros(2)}, "newer version": {**payload, "format_version": 99},
        "version 0 + changed value": {**nudged(), "format_version": 0},
        "version -1 + changed value": {**nudged(), "format_version": -1},
        "version 1 + changed value": {**nudged(), "format_version": 1},
        "version True + changed value": {**nudged(), "format_version": True},
        "re-signed garbage tokenizer": resigned(tokenizer_json="{}"),
        "re-signed label names [1, 2]": resigned(label_names=[1, 2]),
        "re-signed method 'magic'": resigned(method="magic"),
        "a directory": None,
    }
    cases: list[Case] = []
    for name, v in variants.items():
        def go(name: str = name, v: Any = v) -> tuple[str, str]:
            p = tmp / f"c-{abs(hash(name))}.pt"
            if v is None:
                p.mkdir(exist_ok=True)
            elif isinstance(v, bytes):
                p.write_bytes(v)
            else:
                torch.save(v, p)
            res = run_api(lambda: load_checkpoint(p))
            cli = run_cli(["eval", "--checkpoint", str(p), "--data", str(ws["data"])])
            return res if res[0] in BAD else cli
        cases.append((f"checkpoint {name}", go))
    return cases


def encoding_cases(ws: dict[str, Path], tmp: Path, ref: tuple[list[str], list[int], np.ndarray]) -> list[Case]:
    from geep_deploy.data import load_split

    cases: list[Case] = []
    bom = tmp / "bom"
    shutil.copytree(ws["data"], bom)
    for n in ("labels.txt", "train.tsv", "dev.tsv"):
        (bom / n).write_bytes(b"\xef\xbb\xbf" + (bom / n).read_bytes())
    cases.append(("BOM in labels.txt and dev.tsv (valid)",
                  lambda: run_api(lambda: load_split(bom, "dev"), lambda ds: len(ds) == 16)))
    for name, content in (("latin-1 dev.tsv", b"label\ttext\n1\tgood\n0\tcaf\xe9\n"),
                          ("UTF-16 dev.tsv", "label\ttext\n1\tgood\n".encode("utf-16")),
                          ("binary dev.tsv", bytes(range(256)))):
        def go(content: bytes = content, name: str = name) -> tuple[str, str]:
            d = tmp / f"e-{abs(hash(name))}"
            shutil.copytree(ws["data"], d, dirs_exist_ok=True)
            (d / "dev.tsv").write_bytes(content)
            return run_api(lambda: load_split(d, "dev"))
        cases.append((name, go))

    def bad_labels() -> tuple[str, str]:
        d = tmp / "e-labels"
        shutil.copytree(ws["data"], d, dirs_exist_ok=True)
        (d / "labels.txt").write_bytes(b"neg\npos\xff\n")
        return run_api(lambda: load_split(d, "dev"))
    cases.append(("latin-1 labels.txt", bad_labels))
    for name, content, ok in (("predict --input latin-1", b"text\ngood\ncaf\xe9\n", False),
                              ("predict --input BOM (valid)", "\ufefftext\n" + "\n".join(TEXTS) + "\n", True),
                              # one column without a header is texts (documented); four name no text column
                              ("predict --input no text column", b"words\tid\tdate\tscore\ngood\t1\t2\t3\n", False),
                              ("predict --input header only", b"text\n", False),
                              ("predict --input ragged", b"text\tx\ngood\n", False)):
        def go_in(content: Any = content, ok: bool = ok, name: str = name) -> tuple[str, str]:
            p = tmp / f"in-{abs(hash(name))}.tsv"
            p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
            return run_cli(["predict", "--export", str(ws["export"]), "--input", str(p)], expect_ok=ok)
        cases.append((name, go_in))
    return cases


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def data_loss_cases(ws: dict[str, Path], tmp: Path) -> list[Case]:
    """--force and --out aimed at a user's folders: their files must be untouched."""
    cases: list[Case] = []

    def user_dir(name: str) -> Path:
        d = tmp / name
        (d / "src").mkdir(parents=True, exist_ok=True)
        (d / "notes.txt").write_text("mine")
        (d / "src" / "main.py").write_text("print(1)")
        return d

    def go(target: str | None, cwd_rel: str | None) -> tuple[str, str]:
        d = user_dir(f"user-{abs(hash((target, cwd_rel)))}")
        target = str(d) if target is None else target
        before = _tree(d)
        old = Path.cwd()
        os.chdir(d if cwd_rel is None else d / cwd_rel)
        try:
            out = run_cli(["export", "--checkpoint", str(ws["ckpt"]), "--out", target, "--force", "--quiet"])
        finally:
            os.chdir(old)
        if _tree(d) != before:
            return "data_lost", f"{out[1]} (files changed)"
        return out

    cases.append(("export --out . --force in a user folder", lambda: go(".", None)))
    cases.append(("export --out .. --force from a subfolder", lambda: go("..", "src")))
    cases.append(("export --out <user folder> --force", lambda: go(None, "src")))

    def export_cwd() -> tuple[str, str]:
        out = tmp / "exp-cwd"
        shutil.copytree(ws["export"], out, dirs_exist_ok=True)
        before = _tree(out)
        old = Path.cwd()
        os.chdir(out / "onnx")
        try:
            res = run_cli(["export", "--checkpoint", str(ws["ckpt"]), "--out", str(out), "--force", "--quiet"])
        finally:
            os.chdir(old)
        return ("data_lost", res[1]) if _tree(out) != before else res
    cases.append(("export --force of the export the shell is in", export_cwd))
    return cases


def interrupt_cases(ws: dict[str, Path], tmp: Path, ref: tuple[list[str], list[int], np.ndarray]) -> list[Case]:
    """A real export process killed at several moments: the previous export must stay loadable with the same
    answers, and the next export run must leave no temporary folders."""
    cases: list[Case] = []

    def go(sig: int, delay: float) -> tuple[str, str]:
        out = tmp / f"kill-{sig}-{delay}"
        shutil.copytree(ws["export"], out)
        # a background job inherits SIGINT ignored; a user's Ctrl-C reaches a foreground process with the default
        code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "from geep_deploy.cli import main; sys.exit(main(sys.argv[1:]))")
        argv = ["export", "--checkpoint", str(ws["ckpt"]), "--out", str(out), "--force", "--quiet",
                "--precision", "fp32,fp16,bf16,int8", "--exit-table", str(ws["table"])]
        proc = subprocess.Popen([sys.executable, "-c", code, *argv], cwd=tmp, stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
        t0 = time.monotonic()
        while not list(tmp.glob(f".{out.name}.tmp-*")) and proc.poll() is None and time.monotonic() - t0 < 300:
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(sig)
        rc = proc.wait(timeout=300)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if "Traceback" in err:
            return "traceback", err.strip().splitlines()[-1][:300]
        try:
            labels = load_and_predict(out)
        except BaseException as e:
            return "data_lost", f"the export no longer loads: {type(e).__name__}: {e}"[:300]
        if not predict_matches(ref)(labels):
            return "data_lost", "the export answers differently after the kill"
        left = sorted(p.name for p in tmp.glob(f".{out.name}.*"))
        from export.pipeline import clean_stale_temps

        clean_stale_temps(out)  # what the next export of the folder does first
        still = sorted(p.name for p in tmp.glob(f".{out.name}.*"))
        if still:
            return "data_lost", f"temporary folders survive the next run: {still}"
        what = "finished before the signal" if rc == 0 else f"exit {rc}"
        return ("correct" if rc == 0 else "clean"), f"{what}; left {len(left)} temp folder(s), cleaned next run"

    for sig, delay in ((signal.SIGTERM, 0.0), (signal.SIGTERM, 1.0), (signal.SIGKILL, 0.3), (signal.SIGKILL, 1.5),
                       (signal.SIGINT, 0.7)):
        cases.append((f"{signal.Signals(sig).name} after {delay}s", lambda s=sig, d=delay: go(s, d)))

    def reader_during_force() -> tuple[str, str]:
        """Load the export in a loop while another process replaces it with --force: never missing or mixed."""
        from runtime.artifacts import load_export

        out = tmp / "readers"
        shutil.copytree(ws["export"], out)
        code = "import sys; from geep_deploy.cli import main; sys.exit(main(sys.argv[1:]))"
        argv = ["export", "--checkpoint", str(ws["ckpt"]), "--out", str(out), "--force", "--quiet",
                "--exit-table", str(ws["table"]), "--no-segments"]
        loads, errors = 0, []
        for _ in range(2):
            proc = subprocess.Popen([sys.executable, "-c", code, *argv], cwd=tmp,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            while proc.poll() is None:
                try:
                    load_export(out)
                    loads += 1
                except GeepError as e:
                    errors.append(str(e)[:200])
            if proc.returncode != 0:
                return "traceback", f"the export failed: exit {proc.returncode}"
        if errors:
            return "data_lost", f"{len(errors)} of {loads + len(errors)} loads failed: {errors[0]}"
        return "correct", f"{loads} loads during two --force exports, none failed"

    cases.append(("readers while export --force replaces the folder", reader_during_force))

    def half_swap() -> tuple[str, str]:
        out = tmp / "half"
        shutil.copytree(ws["export"], tmp / ".half.old-deadbeef")  # crash between the fallback's two renames
        (tmp / ".half.old-deadbeef" / ".export-backup").write_text("1")  # the swap marks its backup
        from export.pipeline import clean_stale_temps

        clean_stale_temps(out)
        res = run_api(lambda: load_and_predict(out), predict_matches(ref))
        return ("data_lost", res[1]) if res[0] != "correct" else res
    cases.append(("crash between the two renames of the fallback swap", half_swap))
    return cases


def output_path_cases(ws: dict[str, Path], tmp: Path) -> list[Case]:
    d = tmp / "outdir"
    d.mkdir(exist_ok=True)
    f = tmp / "plainfile"
    f.write_text("x")
    c, dt = str(ws["ckpt"]), str(ws["data"])
    argvs = {
        "train --out FILE/x.pt": ["train", "--data", dt, "--method", "geep", "--out", str(f / "x.pt")],
        "calibrate --out FILE/x.npz": ["calibrate", "--checkpoint", c, "--data", dt, "--out", str(f / "x.npz")],
        "eval --json FILE/x.json": ["eval", "--checkpoint", c, "--data", dt, "--json", str(f / "x.json")],
        "export --out FILE/x": ["export", "--checkpoint", c, "--out", str(f / "x")],
    }
    return [(n, (lambda a=a: run_cli(a))) for n, a in argvs.items()]
