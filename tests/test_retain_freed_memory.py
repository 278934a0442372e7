"""serac.utils.retain_freed_memory: glibc keeps freed blocks, so a training step's activations are not page-faulted
in anew every step (issue 20). Checked by minor page faults, in a subprocess each (the setting is per process)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import resource, sys, torch
from serac.utils import retain_freed_memory
on = retain_freed_memory()
assert retain_freed_memory() == on  # idempotent
def faults_of_one_allocation():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 * 1024 * 1024)  # 64 MB: over glibc's largest dynamic mmap threshold (32 MB)
    del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_allocation()  # the first touch of the memory faults either way
print(int(on), min(faults_of_one_allocation() for _ in range(3)))
"""


def probe(env_value):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SERAC_MALLOC", None)
    if env_value is not None:
        env["SERAC_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    on, faults = out.stdout.split()
    return bool(int(on)), int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults():
    on, faults = probe(None)
    assert on
    assert faults < 1000, faults  # 64 MB is 16384 pages: reused from the heap, not mapped anew


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_serac_malloc_default_keeps_glibc_defaults():
    on, faults = probe("default")
    assert not on
    assert faults >= 16384, faults  # every 4 KB page of the 64 MB block faulted in again
