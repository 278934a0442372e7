"""utils/parse_options.sh, driven through a small Kaldi-style script."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

PARSE_OPTIONS = Path(__file__).resolve().parent.parent / "utils" / "parse_options.sh"

SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
nj=4
feat_type=fbank
use_gpu=false
help_message="Usage: $0 [options] <data-dir>
  --nj <n>            # number of jobs
  --feat-type <type>  # fbank or mfcc
  --use-gpu <bool>    # true or false"
. {parse_options}
echo "nj=$nj"
echo "feat_type=$feat_type"
echo "use_gpu=$use_gpu"
echo "nargs=$#"
for arg in "$@"; do echo "arg=$arg"; done
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "script.sh"
    path.write_text(SCRIPT.replace("{parse_options}", str(PARSE_OPTIONS)))
    path.chmod(0o755)
    return path


def run(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True, cwd=script.parent, timeout=30
    )


def values(proc: subprocess.CompletedProcess) -> dict[str, str]:
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if not line.startswith("arg="))


def test_defaults_untouched(script: Path) -> None:
    proc = run(script)
    assert proc.returncode == 0, proc.stderr
    assert values(proc) == {"nj": "4", "feat_type": "fbank", "use_gpu": "false", "nargs": "0"}


def test_string_option_and_hyphen_to_underscore(script: Path) -> None:
    proc = run(script, "--nj", "8", "--feat-type", "mfcc hires")
    assert proc.returncode == 0, proc.stderr
    assert values(proc)["nj"] == "8"
    assert values(proc)["feat_type"] == "mfcc hires"


def test_equals_form(script: Path) -> None:
    proc = run(script, "--nj=2", "--feat-type=a=b")
    assert proc.returncode == 0, proc.stderr
    assert values(proc)["nj"] == "2"
    assert values(proc)["feat_type"] == "a=b"


def test_boolean_accepted(script: Path) -> None:
    proc = run(script, "--use-gpu", "true")
    assert proc.returncode == 0, proc.stderr
    assert values(proc)["use_gpu"] == "true"


def test_boolean_rejects_other_values(script: Path) -> None:
    proc = run(script, "--use-gpu", "yes")
    assert proc.returncode == 1
    assert "--use-gpu" in proc.stderr and "true or false" in proc.stderr
    assert proc.stderr.startswith(str(script))


def test_unknown_option(script: Path) -> None:
    proc = run(script, "--no-such-option", "1")
    assert proc.returncode == 1
    assert "unknown option --no-such-option" in proc.stderr
    assert proc.stdout == ""


def test_missing_value(script: Path) -> None:
    proc = run(script, "--nj")
    assert proc.returncode == 1
    assert "--nj needs a value" in proc.stderr


def test_config_is_read_first(script: Path, tmp_path: Path) -> None:
    conf = tmp_path / "opts.conf"
    conf.write_text("nj=16\nfeat_type=mfcc\n")
    # --config comes last on the line, yet --nj given before it still wins.
    proc = run(script, "--nj", "3", "--config", str(conf), "data/train")
    assert proc.returncode == 0, proc.stderr
    assert values(proc)["nj"] == "3"
    assert values(proc)["feat_type"] == "mfcc"
    assert "arg=data/train" in proc.stdout


def test_missing_config_file(script: Path) -> None:
    proc = run(script, "--config", "no/such.conf")
    assert proc.returncode == 1
    assert "no/such.conf" in proc.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(script: Path, flag: str) -> None:
    proc = run(script, "--nj", "2", flag)
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"Usage: {script} [options] <data-dir>")
    assert "--feat-type <type>" in proc.stdout
    assert "nj=" not in proc.stdout  # exited before the script went on


def test_positional_arguments_preserved(script: Path) -> None:
    proc = run(script, "--nj", "2", "data/train", "exp dir", "--nj", "9")
    assert proc.returncode == 0, proc.stderr
    assert values(proc)["nj"] == "2"  # options stop at the first positional argument
    assert values(proc)["nargs"] == "4"
    args = [line[4:] for line in proc.stdout.splitlines() if line.startswith("arg=")]
    assert args == ["data/train", "exp dir", "--nj", "9"]


def test_double_dash_ends_options(script: Path) -> None:
    proc = run(script, "--nj", "5", "--", "--looks-like-an-option")
    assert proc.returncode == 0, proc.stderr
    assert values(proc)["nj"] == "5"
    assert "arg=--looks-like-an-option" in proc.stdout


RECIPE = """#!/usr/bin/env bash
set -euo pipefail
stage=0
stop_stage=6
help_message="Usage: $0 [--stage N] [--stop-stage M]"
. {parse_options}
for s in 0 1 2 3 4 5 6; do
  if [ $stage -le $s ] && [ $stop_stage -ge $s ]; then echo "Stage $s"; fi
done
echo "succeeded"
"""


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "run.sh"
    path.write_text(RECIPE.replace("{parse_options}", str(PARSE_OPTIONS)))
    return path


@pytest.mark.parametrize("args", [[], ["--stage", "2", "--stop-stage", "2"], ["--stage", "-1"]])
def test_stage_range_accepted(recipe: Path, args: list[str]) -> None:
    proc = run(recipe, *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("succeeded\n") and "Stage" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--stage", "abc"], "--stage must be an integer, not 'abc'"),
    (["--stop-stage", "2x"], "--stop-stage must be an integer, not '2x'"),
    (["--stage", ""], "--stage must be an integer, not ''"),
    (["--stage", "9", "--stop-stage", "2"], "--stage 9 is after --stop-stage 2"),
    (["--stage", "7"], "--stage 7 is after --stop-stage 6"),
])
def test_bad_stage_range_refused(recipe: Path, args: list[str], message: str) -> None:
    proc = run(recipe, *args)
    assert proc.returncode == 1
    assert message in proc.stderr and proc.stderr.startswith(str(recipe))
    assert proc.stdout == ""  # nothing ran, no "succeeded"


def test_stage_check_only_when_defined(script: Path) -> None:
    # a step script without stage variables is not affected (test_defaults_untouched covers the output)
    assert run(script, "--nj", "abc").returncode == 0
