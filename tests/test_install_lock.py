"""path.sh installs the venv on first use under a lock: a second shell that sources path.sh while the first is
still installing waits for that install and then finds its marker, instead of starting a second install into
the same venv. The install is a stub (``SERAC_INSTALL_SCRIPT``), so nothing is really installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STUB_INSTALL = """#!/usr/bin/env bash
# stub tools/install.sh: counts its runs, then waits for the test to release it before marking the venv installed
set -euo pipefail
root={root}
echo run >> "$root/install_runs"
touch "$root/install_started"
for _ in $(seq 300); do [ -f "$root/release" ] && break; sleep 0.1; done
[ -n "${{STUB_FAIL:-}}" ] && exit 3
mkdir -p "$root/.venv"
touch "$root/.venv/.serac-installed"
"""


def _project(tmp_path: Path) -> Path:
    """A project root holding path.sh and a stub installer."""
    shutil.copy(ROOT / "path.sh", tmp_path / "path.sh")
    (tmp_path / "stub_install.sh").write_text(STUB_INSTALL.format(root=tmp_path))
    return tmp_path


def _source(root: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", "-c", "set -euo pipefail; . ./path.sh; echo \"sourced $VIRTUAL_ENV\""],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SERAC_INSTALL_SCRIPT": str(root / "stub_install.sh"), **env})


def _wait_for(path: Path, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.05)


def _runs(root: Path) -> int:
    runs = root / "install_runs"
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def test_second_source_waits_for_the_running_install(tmp_path: Path) -> None:
    root = _project(tmp_path)
    first = _source(root)
    _wait_for(root / "install_started")
    second = _source(root)
    # give the second shell ample time to start an install of its own if nothing stopped it
    end = time.monotonic() + 1.5
    while time.monotonic() < end and _runs(root) == 1:
        time.sleep(0.05)
    assert _runs(root) == 1, "a second install started while the first was running"
    assert second.poll() is None, "the second shell went on before the install had finished"
    (root / "release").touch()
    out1, err1 = first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert out1.strip() == out2.strip() == f"sourced {root}/.venv"
    assert "waiting for it to finish" in err2
    assert _runs(root) == 1
    assert (root / ".venv.install.lock").exists()  # next to the venv, not inside it


def test_installed_venv_runs_no_install(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / ".venv").mkdir()
    (root / ".venv" / ".serac-installed").touch()
    proc = _source(root)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert _runs(root) == 0


def test_failed_install_fails_the_sourcing_shell(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "release").touch()
    proc = _source(root, STUB_FAIL="1")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "installing" in err and "failed" in err
    assert "sourced" not in out
