"""Every file prakit reads back, damaged at random (raw bytes and structure): the commands that
read it end in a result or in one line saying what is wrong, never in a traceback.

The quick suite tries a few dozen damages; the full suite (``slow``) at least 2,000.
"""

import json
import shutil
from pathlib import Path

import pytest
from helpers import QUICKSTART, small_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prakit.cli import main
from prakit.config import load_config
from prakit.run import EVAL_RECORD, Run
from prakit.training.loop import train

#: The commands that read each file back (``{run}``, ``{sweep}``, ``{out}``: the run, a sweep
#: of one run, a fresh output), by the file's path in the folder holding both.
READERS = {
    "run/config.toml": [["compare", "{run}"], ["sample", "{run}", "--num", "1", "--out", "{out}"]],
    "run/metrics.jsonl": [["compare", "{run}"]],
    f"run/{EVAL_RECORD}": [["compare", "{run}"]],
    "run/checkpoints/ckpt-00000002.pt": [["sample", "{run}", "--num", "1", "--out", "{out}"],
                                         ["export", "{run}", "--out", "{out}"]],
    "sweep/sweep.json": [["sweep", "status", "{sweep}"], ["sweep", "collect", "{sweep}"]],
}


@pytest.fixture(scope="module")
def pristine(store, tmp_path_factory):
    """A folder holding a micro run trained for 2 steps, with an evaluation record as `prakit eval`
    writes one, and a sweep of one such run trained in this process."""
    root = tmp_path_factory.mktemp("fuzz")
    run = root / "run"
    assert main(["sweep", str(QUICKSTART), *small_run(store, "train.steps=2"), f"launch.folder={root / 'jobs'}",
                 "--cluster", "debug", "--out", str(root / "sweep")]) == 0
    train(load_config(QUICKSTART, small_run(store, "train.steps=2", "train.ckpt_every=2")), run, progress=False)
    record = {"prakit": "0", "date": "2026-01-01T00:00:00", "run": str(run),
              "checkpoint": str(run / "checkpoints" / "ckpt-00000002.pt"), "device": "cpu",
              "sampling": {"num": 4, "batch_size": 4, "cfg_scale": 3.0, "cfg_schedule": "linear",
                           "temperature": 1.0, "steps": 3, "ema": "slow", "seed": 0},
              "reference": {"path": str(store), "kind": "store", "images": 1797},
              "numbers": {"fid": 12.5, "precision": 0.5}, "higher_is_better": {"fid": False, "precision": True},
              "evaluators": [{"name": "fid", "config": {"name": "fid"}, "numbers": {"fid": 12.5}, "curves": {},
                              "seconds": 1.0}],
              "samples": {"path": str(run / "samples"), "count": 4, "fingerprint": "0"},
              "features": {"featnet": {"fingerprint": "0", "held_out_accuracy": 0.98}}}
    Run(run).eval_record.write_text(json.dumps(record, indent=2))
    member = root / "sweep" / "quickstart"
    Run(member).eval_record.write_text(json.dumps({**record, "run": str(member), "checkpoint": str(
        member / "checkpoints" / "ckpt-00000002.pt")}, indent=2))
    return root


def json_damage(data):
    """Structured damage of a JSON value: a key dropped, or a value of another type."""
    others = st.sampled_from([None, True, -1, 1e308, "x", [], {}, [1, "a"], {"a": None}])
    if isinstance(data, dict) and data:
        key = st.sampled_from(sorted(data))
        return st.one_of(key.map(lambda k: {n: v for n, v in data.items() if n != k}),
                         st.tuples(key, others).map(lambda kv: {**data, kv[0]: kv[1]}),
                         key.flatmap(lambda k: json_damage(data[k]).map(lambda v: {**data, k: v})))
    if isinstance(data, list) and data:
        return st.integers(0, len(data) - 1).flatmap(
            lambda i: json_damage(data[i]).map(lambda v: [*data[:i], v, *data[i + 1:]]))
    return others


def as_json(name: str, content: bytes) -> list | None:
    """The JSON values of a file (a line each in a ``.jsonl``), or None where it is not JSON."""
    try:
        lines = content.decode().splitlines() if name.endswith(".jsonl") else [content.decode()]
        return [json.loads(line) for line in lines]
    except ValueError:
        return None


@st.composite
def damage(draw, files: dict[str, bytes]):
    """(a file's name, how to damage it, and where or with what): small, so that a failure reads."""
    name = draw(st.sampled_from(sorted(files)))
    size = len(files[name])
    hows = ["truncate", "flip", "splice", "replace"] + (["json"] if as_json(name, files[name]) else [])
    how = draw(st.sampled_from(hows))
    if how == "truncate":
        return name, how, draw(st.integers(0, size - 1))
    if how == "flip":
        return name, how, draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(1, 255)), min_size=1, max_size=8))
    if how == "splice":
        return name, how, (draw(st.integers(0, size)), draw(st.binary(max_size=64)))
    if how == "replace":
        return name, how, draw(st.binary(max_size=256))
    values = as_json(name, files[name])
    at = draw(st.integers(0, len(values) - 1))
    return name, how, (at, draw(json_damage(values[at])))


def damaged(content: bytes, name: str, how: str, what) -> bytes:
    """``content`` damaged as :func:`damage` drew."""
    if how == "truncate":
        return content[:what]
    if how == "flip":
        for at, mask in what:
            content = content[:at] + bytes([content[at] ^ mask]) + content[at + 1:]
        return content
    if how == "splice":
        at, extra = what
        return content[:at] + extra + content[at:]
    if how == "replace":
        return what
    values = as_json(name, content)
    at, value = what
    values[at] = value
    return "\n".join(map(json.dumps, values)).encode()


def check_reads(root: Path, name: str, content: bytes, capsys, expect=(0, 2)) -> None:
    (root / name).write_bytes(content)
    out = root / "out"
    for command in READERS[name]:
        shutil.rmtree(out, ignore_errors=True)
        code = main([part.format(run=root / "run", sweep=root / "sweep", out=out) for part in command])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("prakit: error:")]
        assert code in (expect if isinstance(expect, tuple) else (expect,)), (command, err)
        assert (code == 2) == bool(errors) and len(errors) <= 1, (command, err)


def fuzz(pristine, tmp_path_factory, capsys, examples: int) -> None:
    root = tmp_path_factory.mktemp("damaged") / "root"
    shutil.copytree(pristine, root)
    files = {name: (pristine / name).read_bytes() for name in READERS}
    for name in READERS:  # undamaged, every reader gives its result
        check_reads(root, name, files[name], capsys, expect=0)

    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(damage(files))
    def reads(case):
        name, how, what = case
        try:
            check_reads(root, name, damaged(files[name], name, how, what), capsys)  # a traceback raises here
        finally:
            (root / name).write_bytes(files[name])

    reads()


@pytest.mark.filterwarnings("ignore")
def test_damaged_run_files_end_in_a_result_or_one_line(pristine, tmp_path_factory, capsys):
    fuzz(pristine, tmp_path_factory, capsys, examples=40)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_two_thousand_damaged_run_files_end_in_a_result_or_one_line(pristine, tmp_path_factory, capsys):
    fuzz(pristine, tmp_path_factory, capsys, examples=2000)
