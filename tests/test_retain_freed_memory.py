"""serac.utils.retain_freed_memory: glibc keeps freed blocks, so a training step's activations are not page-faulted
in anew every step (issue 20). Checked by the minor page faults of a small MLP's training steps (~120 MB of
activations and gradients each), in a subprocess each (the setting is per process)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import resource, torch
from serac.utils import retain_freed_memory
on = retain_freed_memory()
assert retain_freed_memory() == on  # idempotent
torch.manual_seed(0); torch.set_num_threads(1)
net = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 256))
                            for _ in range(4)])
x = torch.randn(8, 400, 256)
def step():
    net.zero_grad(set_to_none=True)
    net(x).pow(2).mean().backward()
for _ in range(2):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(6):
    step()
print(int(on), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 6)
"""


def probe(env_value):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("SERAC_MALLOC", None)
    if env_value is not None:
        env["SERAC_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    on, faults = out.stdout.split()
    return bool(int(on)), int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_training_steps_reuse_freed_memory():
    on, faults = probe(None)
    assert on
    # a step allocates ~30,000 pages; with freed memory kept, 0-1,600 of them fault per step (measured), with
    # glibc's defaults 2,600-14,000
    assert faults < 4000, faults


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_serac_malloc_default_keeps_glibc_defaults():
    on, _ = probe("default")
    assert not on
