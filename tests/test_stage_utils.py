"""utils/stage_utils.sh: stage timing, and a recipe stopped by `set -e` says which command stopped it."""
from __future__ import annotations

import subprocess
from pathlib import Path

STAGE_UTILS = Path(__file__).resolve().parent.parent / "utils" / "stage_utils.sh"

SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
. {utils} exp/timing.tsv
echo "Stage 1: ok"
[ -f no-such-file ] || echo "a failing test inside || does not stop anything"
stage_done 1 first
echo "Stage 2: a pipeline whose grep finds nothing"
grep -h "no such line" exp/timing.tsv | tail -n 1
echo "never reached"
"""


def test_a_failing_command_is_named_and_stages_are_timed(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text(SCRIPT.replace("{utils}", str(STAGE_UTILS)))
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert proc.returncode == 1
    assert "a failing test inside ||" in proc.stdout and "never reached" not in proc.stdout
    assert "stage 1 (first):" in proc.stdout
    assert "run.sh: failed (exit 1) at line 8: tail -n 1" in proc.stderr, proc.stderr
    rows = (tmp_path / "exp/timing.tsv").read_text().splitlines()
    assert rows[0] == "stage\tname\tseconds\tfinished" and rows[1].startswith("1\tfirst\t")
