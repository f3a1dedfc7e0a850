"""The README's quickstart, run as written on a tiny dataset of the kind a user brings: label names instead of ids,
no labels.txt, no header in train.tsv, a header in dev.tsv, three classes. Only the backbone (a tiny random model)
and the epoch count (1) are added, so the README cannot go stale."""

from __future__ import annotations

import json
import random
import re
import shlex
from pathlib import Path

import pytest
from models import tiny_backbone_dir

from geep_deploy.cli import main

ROOT = Path(__file__).resolve().parents[1]
WORDS = {"sports": ["match", "goal", "league"], "tech": ["chip", "software", "laptop"],
         "politics": ["vote", "senate", "election"]}


def quickstart_commands(program: str = "geep-deploy") -> list[list[str]]:
    """The ``program`` lines of the README's code blocks under '## Quickstart', comments dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Quickstart.*?(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## Quickstart' section"
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", section.group(0), re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith(f"{program} "):
                cmds.append(shlex.split(line)[1:])
    return cmds


def _curl(args: list[str], base_url: str) -> tuple[int, dict]:
    """The README's curl line sent as curl sends it: its -H headers and -d body, POST, to the test server."""
    import urllib.error
    import urllib.request

    url = next(a for a in args if not a.startswith("-") and "/" in a and args[args.index(a) - 1] not in ("-H", "-d"))
    headers = dict(h.split(": ", 1) for h, flag in zip(args[1:], args) if flag == "-H")
    body = args[args.index("-d") + 1].encode()
    req = urllib.request.Request(base_url + url[url.index("/"):], data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # the loopback server this test started
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _write_user_data(d: Path) -> None:
    rng = random.Random(0)
    d.mkdir()
    for split, n, header in (("train", 90, False), ("dev", 24, True)):
        rows = ["label\ttext"] if header else []
        for _ in range(n):
            label = rng.choice(sorted(WORDS))
            rows.append(f"{label}\tthe {rng.choice(WORDS[label])} news of the day was {rng.choice(['long', 'short'])}")
        (d / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def _localise(cmd: list[str], data: Path, out: Path, backbone: Path) -> list[str]:
    cmd = [a.replace("mydata", str(data)).replace("runs/my", str(out)) for a in cmd]
    if cmd[0] == "train":
        cmd += ["--backbone", str(backbone), "--epochs", "1"]
    return cmd


def test_readme_quickstart_runs_on_a_users_own_tsv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from geep_deploy.bench.loadgen import ServerProcess, http_get

    cmds = quickstart_commands()
    assert [c[0] for c in cmds] == ["train", "calibrate", "export", "predict", "serve"], cmds
    data, out = tmp_path / "mydata", tmp_path / "my"
    _write_user_data(data)
    backbone = tiny_backbone_dir(tmp_path / "backbone")
    outputs = {}
    for cmd in cmds[:-1]:
        assert main(_localise(cmd, data, out, backbone)) == 0, cmd
        outputs[cmd[0]] = capsys.readouterr()
    assert (data / "labels.txt").read_text().split() == ["politics", "sports", "tech"]
    assert "wrote it from train.tsv's labels" in outputs["train"].out
    assert "dev acc per depth" in outputs["train"].err + outputs["train"].out
    assert "recommendation: export" in outputs["calibrate"].out
    assert "entropy exit: threshold=" in outputs["export"].out  # the CPU default (names.DEFAULT_PREDICTOR)
    assert re.search(r"# accuracy \d+\.\d\d% \(\d+ of 24 labelled rows\)", outputs["predict"].out)
    serve = _localise(cmds[-1], data, out, backbone)[1:]
    if "--port" in serve:
        i = serve.index("--port")
        del serve[i:i + 2]
    with ServerProcess([*serve, "--threads", "1"], log_path=tmp_path / "serve.log") as srv:
        status, body = http_get(srv.url + "/healthz")
        assert status == 200 and json.loads(body) == {"status": "ok"}
        status, body = http_get(srv.url + "/readyz")
        assert status == 200 and json.loads(body)["model"]["predictor"] == "entropy"
        curls = quickstart_commands("curl")
        assert len(curls) == 1, curls
        status, answer = _curl(curls[0], srv.url)
        assert status == 200 and [p["label"] for p in answer["predictions"]][0] in WORDS, answer
