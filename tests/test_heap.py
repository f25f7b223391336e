"""The worker's malloc thresholds (``portico.worker.heap``), measured in real processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from portico.worker.heap import keep_heap_top

pytestmark = pytest.mark.skipif(
    not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"),
    reason="the thresholds are glibc's",
)

# 64 bodies of 16 KiB (outside CPython's small-object allocator, so from malloc) written and
# freed, 40 times: the swing of a worker's heap under 64 connections POSTing 16 KiB each
_CYCLES = """
import resource, sys
from portico.worker.heap import keep_heap_top
if sys.argv[1] == "keep":
    assert keep_heap_top({})
def cycle():
    bodies = [bytes(16384) for _ in range(64)]
    del bodies
for _ in range(5):
    cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    cycle()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 40)
"""


def _faults_per_cycle(mode: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    done = subprocess.run(
        [sys.executable, "-c", _CYCLES, mode],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    return float(done.stdout)


def test_a_swinging_heap_is_not_given_back_and_faulted_in_again() -> None:
    default = _faults_per_cycle("default")
    kept = _faults_per_cycle("keep")
    # glibc's default trims the 1 MiB freed at the top every cycle: its 256 pages fault again
    assert default > 100
    assert kept < 10


def test_the_operators_own_settings_win() -> None:
    for knob in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"):
        assert keep_heap_top({knob: "131072"}) is False
