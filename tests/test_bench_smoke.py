"""The benchmark keeps working: one short run of every part of bench/bench.py.

Its timing figures are not checked (a shared CI machine is too noisy); what
is checked is that every server starts, answers as expected, and that the
bursts come out exact, which the bench reports through its exit code and
its PASS lines.
"""

import os
import subprocess
import sys

import pytest

from conftest import ON_POSTGRES, REPO


@pytest.mark.skipif(ON_POSTGRES, reason="the bench makes its own databases; once per CI run is enough")
def test_quick_bench_runs_and_its_bursts_are_exact():
    done = subprocess.run([sys.executable, os.path.join(REPO, "bench", "bench.py"), "--quick", "--keys", "300"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout
    for label in ("A0", "A ", "B ", "B100k", "Bloc"):
        assert f"\n    1 {label}" in out, label  # every load ran
    bursts = [line for line in out.splitlines() if "burst exact" in line]
    assert len(bursts) == 4 and all(line.startswith("PASS") for line in bursts), "\n".join(bursts)
    assert "BROKEN" not in out


@pytest.mark.skipif(ON_POSTGRES, reason="the bench makes its own databases; once per CI run is enough")
def test_history_bench_runs_and_answers_each_key_its_own_items():
    done = subprocess.run([sys.executable, os.path.join(REPO, "bench", "history.py"), "--items", "200",
                           "--rounds", "1", "--requests", "10"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for label in ("A       plain ComfyUI", "B key   one key's own", "B admin everyone's"):
        assert label in done.stdout, label
