"""Run a ``serac.bin`` entry point in-process, as ``python -m serac.bin.<name> ARGS`` would (no module under
serac/bin is imported by another module, tests included: they are run, not imported)."""
from __future__ import annotations

import runpy
import sys
from typing import List


def run_entry_point(name: str, argv: List[str]) -> int:
    """Run ``serac.bin.<name>`` with ``argv``; returns its exit status (a message exit prints it to stderr and
    counts as 1, as the interpreter does)."""
    saved = sys.argv
    sys.argv = [f"serac.bin.{name}", *argv]
    try:
        runpy.run_module(f"serac.bin.{name}", run_name="__main__", alter_sys=False)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    finally:
        sys.argv = saved
    return 0
