"""The ``prakit`` command line, run as a real subprocess."""

import argparse
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import write_store

from prakit.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "experiments" / "quickstart.toml")


def prakit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prakit", *args], capture_output=True, text=True)


def command_paths(parser: argparse.ArgumentParser, prefix=()):
    """Every command and subcommand of the parser, e.g. ('config', 'show')."""
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from command_paths(sub, prefix + (name,))


COMMANDS = list(command_paths(build_parser()))


def test_the_command_tree_has_the_documented_commands():
    assert {("plugins", "list"), ("config", "show"), ("config", "validate"), ("model", "summary"), ("eval",),
            ("reference",), ("compare",)} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "prakit")
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args([*command, "--help"])
    assert exit.value.code == 0
    assert "usage: prakit" in capsys.readouterr().out


@pytest.mark.slow
def test_plugins_list_shows_kind_name_plugin_module_and_description():
    out = prakit("plugins", "list")
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split() == ["KIND", "NAME", "PLUGIN", "MODULE", "DESCRIPTION"]
    assert any(r.split()[:4] == ["decoder", "mlp", "pra", "prakit_pra.mlp_decoder"] for r in rows)
    assert any(r.split()[:4] == ["backbone", "transformer", "models", "prakit_models.transformer"] for r in rows)


@pytest.mark.slow
def test_plugins_list_json_filters_by_kind():
    out = prakit("plugins", "list", "--kind", "rollout", "--json")
    rows = json.loads(out.stdout)
    assert {r["kind"] for r in rows} == {"rollout"}
    assert {"teacher_forcing", "noise_injection", "pra"} <= {r["name"] for r in rows}
    assert all(r["plugin"] and r["description"] for r in rows)


@pytest.mark.slow
def test_an_unknown_kind_is_a_clean_error():
    out = prakit("plugins", "list", "--kind", "decodr")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "prakit: error: unknown component kind 'decodr'; did you mean 'decoder'? "
        "known: backbone, dataset, decoder, evaluator, features, generator, rollout, tracker"
    )


@pytest.mark.parametrize("pattern, said", [
    ("[", "prakit: error: pattern '[' is not a valid glob: a '[' opens a set that no ']' closes; "
          "write [[] for a literal '['\n"),
    ("ml[p", "prakit: error: pattern 'ml[p' is not a valid glob: a '[' opens a set that no ']' closes; "
             "write [[] for a literal '['\n"),
    ("zz*", "no components match --pattern 'zz*' for kind 'decoder'\n"),
])
def test_plugins_list_says_when_a_pattern_is_invalid_or_matches_nothing(pattern, said, capsys):
    from prakit.cli import main

    code = main(["plugins", "list", "--kind", "decoder", "--pattern", pattern])
    out, err = capsys.readouterr()
    assert (code, out + err) == (0 if pattern == "zz*" else 2, said)


def test_plugins_list_takes_a_set_in_its_pattern(capsys):
    from prakit.cli import main

    assert main(["plugins", "list", "--kind", "decoder", "--pattern", "[m]l[]p]", "--json"]) == 0
    assert [row["name"] for row in json.loads(capsys.readouterr().out)] == ["mlp"]


def test_building_the_command_line_does_not_import_torch():
    check = "import sys; from prakit.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # --help stays instant


@pytest.mark.slow
def test_config_show_prints_the_resolved_config():
    out = prakit("config", "show", QUICKSTART, "model.rollout.sigma_max=0.3")
    assert out.returncode == 0, out.stderr
    assert "sigma_max = 0.3" in out.stdout
    assert "[launch]" in out.stdout  # defaults are filled in


@pytest.mark.slow
def test_config_validate_reports_success_and_every_problem():
    ok = prakit("config", "validate", QUICKSTART)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: ") and "M parameters, training state >= " in ok.stdout
    bad = prakit("config", "validate", QUICKSTART, "model.decoder.stat_dim=3", "model.rollout.name=pr")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "model.decoder.stat_dim: unknown key 'stat_dim'; did you mean 'state_dim'?" in bad.stderr
    assert "model.rollout.name: unknown rollout 'pr'; did you mean 'pra'?" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_the_console_script_is_installed():
    script = Path(sys.executable).with_name("prakit")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("prakit ")


@pytest.mark.slow
def test_model_summary_counts_parameters_and_flops():
    out = prakit("model", "summary", QUICKSTART, "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    params = summary["parameters"]
    assert params["total"] == sum(params[k] for k in ("backbone", "generator", "decoder", "rollout"))
    assert 3e6 < params["total"] < 8e6
    assert (summary["seq_len"], summary["token_dim"], summary["state_dim"]) == (16, 48, 16)
    flops = summary["flops"]
    assert flops["train_per_step"] == 64 * flops["train_per_image"] > 0
    # 50 head steps, guided: the head dominates sampling
    assert flops["sample_per_image"] > 50 * 2 * 16 * 2 * 3 * 256 * 256
    table = prakit("model", "summary", QUICKSTART, "--no-flops")
    assert "backbone   transformer" in table.stdout and "FLOPs" not in table.stdout


@pytest.mark.slow
@pytest.mark.parametrize("order", ["overrides first", "overrides last", "around an option"])
def test_overrides_stand_anywhere_after_the_command(order):
    overrides, option = ["model.decoder.state_dim=32", "model.patch_size=2"], ["--no-flops"]
    args = {"overrides first": [*overrides, *option], "overrides last": [*option, *overrides],
            "around an option": [overrides[0], *option, overrides[1]]}[order]
    result = prakit("model", "summary", QUICKSTART, *args)
    assert result.returncode == 0, result.stderr
    assert "state 32 dims" in result.stdout and "64 tokens" in result.stdout


def test_an_unknown_argument_is_still_refused():
    result = prakit("model", "summary", QUICKSTART, "--no-flops", "--what")
    assert result.returncode == 2 and "unrecognized arguments: --what" in result.stderr


def test_documented_component_lists_match_the_registry():
    """README.md's and docs' lists of registered names (a ``list_components`` comment, an unknown name's ``known:``)."""
    import re

    from prakit import registry

    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        for kind, listed in re.findall(r'list_components\("(\w+)"\)\s+# \[([^\]]*)\]', text):
            assert [name.strip(" '") for name in listed.split(",")] == registry.list_components(kind), doc.name
        for kind, listed in re.findall(r"unknown (\w+) '\w+'; did you mean '\w+'\? known: ([\w, ]+)", text):
            if kind == "key":  # a config table's fields, not a registry
                continue
            assert listed.split(", ") == registry.list_components(kind), doc.name


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A one-step run of a tiny model on 8x8 digits, without EMAs."""
    from prakit import registry
    from prakit.config import load_config
    from prakit.data import prepare
    from prakit.training.loop import train

    root = tmp_path_factory.mktemp("sample-run")
    prepare(registry.get("dataset").config("digits"), root / "digits.zarr", size=8, progress=False)
    cfg = load_config(QUICKSTART, [
        f"data.store={json.dumps(str(root / 'digits.zarr'))}", "data.image_size=8", "data.num_workers=0",
        "model.patch_size=4", "model.preset=micro",
        "train.steps=1", "train.batch_size=4", "train.sample_every=0", "optim.ema_decays=[]",
        "sample.steps=2", "sample.batch_size=2",
    ])
    return train(cfg, root / "run", progress=False).run_dir


def sample(run, out, *options, capsys):
    """``prakit sample RUN --out OUT --num 2 OPTIONS`` in this process: (exit code, stderr)."""
    from prakit.cli import main

    code = main(["sample", str(run), "--out", str(out), "--num", "2", *options])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("options, problem", [
    (["--num", "0"], "--num must be > 0, got 0"),
    (["--num", "-3"], "--num must be > 0, got -3"),
    (["--batch-size", "0"], "--batch-size must be > 0, got 0"),
    (["--steps", "0"], "--steps must be > 0, got 0"),
    (["--temperature", "0"], "--temperature must be > 0.0, got 0.0"),
    (["--guidance", "-1"], "--guidance must be >= 0.0, got -1.0"),
    (["--guidance", "nan"], "--guidance must be a finite number, got nan"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--classes", "99"], "class ids must be in 0..9 (the model's data.num_classes is 10), got 99"),
    (["--classes", "3", "-1"], "class ids must be in 0..9 (the model's data.num_classes is 10), got -1"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_sample_refuses_bad_options_before_making_a_store(run_dir, tmp_path, capsys, options, problem):
    code, err = sample(run_dir, tmp_path / "s.zarr", *options, capsys=capsys)
    assert (code, err) == (2, f"prakit: error: {problem}\n")
    assert not (tmp_path / "s.zarr").exists()


def test_guidance_has_one_name_as_cfg_means_config_everywhere_else(run_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        sample(run_dir, tmp_path / "s.zarr", "--cfg", "2", capsys=capsys)
    assert exit.value.code == 2 and capsys.readouterr().err.endswith("prakit: error: unrecognized arguments: --cfg 2\n")


def test_a_failed_sample_run_does_not_block_the_corrected_one(run_dir, tmp_path, capsys):
    assert sample(run_dir, tmp_path / "s.zarr", "--classes", "99", capsys=capsys)[0] == 2
    code, err = sample(run_dir, tmp_path / "s.zarr", "--classes", "9", capsys=capsys)
    assert code == 0, err


def test_sampling_a_config_file_says_to_train_it_first(tmp_path, capsys):
    code, err = sample(QUICKSTART, tmp_path / "s.zarr", capsys=capsys)
    assert (code, err) == (2, f"prakit: error: {QUICKSTART} is an experiment config; prakit sample takes a run "
                              f"directory (runs/NAME) or a checkpoint file: train it first with `prakit train {QUICKSTART}`\n")


def test_a_store_of_other_options_names_them_and_the_commands_fixes(run_dir, tmp_path, capsys):
    from prakit.data import open_store

    out = tmp_path / "s.zarr"
    assert sample(run_dir, out, "--guidance", "2", capsys=capsys)[0] == 0
    sampling = open_store(out).attrs["sampling"]
    assert sampling["ema"] == sampling["ema_weights"] == "none"  # no EMA to load: the live weights
    code, err = sample(run_dir, out, "--guidance", "3", "--seed", "4", capsys=capsys)
    assert code == 2 and err.count("\n") == 1
    assert ("sampling.cfg_scale: 2.0 in the store, 3.0 now; sampling.seed: 0 in the store, 4 now); "
            "rerun with --restart to delete them and start over, or choose another --out\n") in err
    assert "on_mismatch" not in err


@pytest.mark.slow
def test_validate_builds_the_model_so_cross_field_problems_show():
    result = prakit("config", "validate", QUICKSTART, "model.patch_size=3")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "model.patch_size: 3 does not divide data.image_size 16" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("where", ["a file", "under /proc"])
def test_an_impossible_run_directory_is_a_one_line_error(where, tmp_path):
    run_dir = {"a file": tmp_path / "file", "under /proc": Path("/proc/prakit-run")}[where]
    (tmp_path / "file").write_text("not a directory")
    result = prakit("train", QUICKSTART, "--run-dir", str(run_dir), "train.steps=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert str(run_dir) in error and "choose a" in error


@pytest.mark.parametrize("number, problem", [
    (errno.ENOSPC, "no space left to write /x/out.npz (the device is full, or the disk quota used up): free some space, "
                   "then run the same command again"),
    (errno.EDQUOT, "no space left to write /x/out.npz (the device is full, or the disk quota used up): free some space, "
                   "then run the same command again"),
    (errno.ELOOP, "a symlink loop at /x/out.npz; point the link at a real file or folder"),
    (errno.EEXIST, "something already exists at /x/out.npz; move it away or choose another path"),
    (errno.EACCES, "Permission denied: /x/out.npz; choose a path that exists or can be created, "
                   "and that this user may write"),
])
def test_each_os_error_is_told_with_its_own_fix(number, problem, capsys, monkeypatch):
    from prakit.cli import main, plugins

    def fail(args):
        raise OSError(number, os.strerror(number), "/x/out.npz")

    monkeypatch.setattr(plugins, "run_list", fail)
    assert main(["plugins", "list"]) == 2
    assert capsys.readouterr().err == f"prakit: error: {problem}\n"


@pytest.mark.parametrize("out, problem", [
    ("folder.npz", "cannot write {out}: it is a folder, and a file goes there; name a file, such as {out}/samples.npz"),
    ("loop/s.npz", "something already exists at {loop}; move it away or choose another path"),
])
def test_an_output_the_file_system_refuses_is_named_with_its_fix(tmp_path, out, problem):
    write_store(tmp_path / "s.zarr", np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, np.int64))
    (tmp_path / "folder.npz").mkdir()
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    result = prakit("data", "export", str(tmp_path / "s.zarr"), str(tmp_path / out))
    expected = problem.format(out=tmp_path / out, loop=tmp_path / "loop")
    assert (result.returncode, result.stderr) == (2, f"prakit: error: {expected}\n")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from prakit.config import load_config
    from prakit.training.loop import train

    root = tmp_path_factory.mktemp("tiny")
    cfg = load_config(QUICKSTART, [
        "data.image_size=8", "model.patch_size=4", "data.num_workers=0", f'data.store="{root / "d.zarr"}"',
        "train.steps=1", "train.batch_size=8", "model.preset=micro",
        "sample.steps=2", "sample.num=4", "eval.num=4",
    ])
    train(cfg, root / "run", progress=False)
    return root


@pytest.mark.parametrize("command", [
    "sample RUN --num 4 --out OK/s.zarr --npz /proc/s.npz", "sample RUN --num 4 --out OK/s.zarr --grid FILE/g.png",
    "sample RUN --num 4 --out /proc/s.zarr", "eval RUN --out /proc/eval", "reference STORE --out /proc/r.npz",
    "compare RUN --out /proc/cmp", "data export STORE /proc/s.npz", "data prepare digits /proc/d.zarr --size 8",
    "train CONFIG --run-dir /proc/run",
])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(command, tiny_run, tmp_path, capsys):
    from prakit.cli import main

    (tmp_path / "file").write_text("a file, not a folder")
    argv = command.replace("RUN", str(tiny_run / "run")).replace("STORE", str(tiny_run / "d.zarr"))
    argv = argv.replace("CONFIG", QUICKSTART).replace("OK", str(tmp_path)).replace("FILE", str(tmp_path / "file"))
    assert main(argv.split()) == 2
    (error,) = capsys.readouterr().err.splitlines()
    bad = next(arg for arg in argv.split() if arg.startswith(("/proc", str(tmp_path / "file"))))
    assert error.startswith(f"prakit: error: cannot write {bad}: ") and "choose a" in error
    assert not (tmp_path / "s.zarr").exists()  # nothing was sampled


@pytest.mark.parametrize("choice, weights", [("fast", "ema_0.99"), ("ema_0.999", "ema_0.999"), ("none", "none")])
def test_a_sample_store_records_the_ema_chosen_on_the_command_line(tiny_run, tmp_path, capsys, choice, weights):
    from prakit.data import open_store

    code, err = sample(tiny_run / "run", tmp_path / "s.zarr", "--ema", choice, capsys=capsys)
    assert code == 0, err
    sampling = open_store(tmp_path / "s.zarr").attrs["sampling"]
    assert (sampling["ema"], sampling["ema_weights"]) == (choice, weights)


def test_an_unknown_ema_is_refused_before_loading(tiny_run, tmp_path, capsys):
    code, err = sample(tiny_run / "run", tmp_path / "s.zarr", "--ema", "quick", capsys=capsys)
    assert (code, err) == (2, "prakit: error: --ema must be 'none', 'slow', 'fast' or an EMA's name like "
                              "'ema_0.9999', got 'quick'\n")


def test_the_sampling_and_resource_flags_come_from_the_schema(capsys):
    import attrs

    from prakit.cli import main
    from prakit.config import LaunchConfig, SampleConfig
    from prakit.config.schema import flags

    assert {f.field for f in flags(SampleConfig)} == {f.name for f in attrs.fields(SampleConfig)} - {"num"}
    assert {f.field for f in flags(LaunchConfig)} == {f.name for f in attrs.fields(LaunchConfig)} - {
        "cluster", "folder", "slurm_options"}  # the cluster has --cluster; folder and options stay in the file
    for command, cls in (("sample", SampleConfig), ("submit", LaunchConfig)):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        shown = capsys.readouterr().out
        assert all(option.name in shown for option in flags(cls)), command
