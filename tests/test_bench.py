"""The benchmarks run (``--quick``, as CI's smoke test): every figure is printed beside its baseline."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmarks_print_each_figure_with_its_baseline_and_ratio() -> None:
    run = subprocess.run([sys.executable, "-m", "bench.run", "--quick"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert re.search(r"\d+ cores", lines[0])
    rows = {line[:28].strip(): line for line in lines if re.search(r"\d+\.\d%", line)}
    assert set(rows) == {"append (feedback opinions)", "relay (store to Kafka)", "rebuild (trace + dept views)",
                         "audit verify (hash chain)", "audit replay (all views)", "end to end (HTTP→Kafka)",
                         "overload (2× capacity)"}, run.stdout
    for row in rows.values():
        # events, product/s and baseline/s are positive; the ratio is printed as a percentage.
        events, product, baseline = (float(n.replace(",", "")) for n in row[38:].split()[:3])
        assert events > 0 and product > 0 and baseline > 0, row
    assert "p99_vs_pingpong=" in rows["end to end (HTTP→Kafka)"]
    # Whatever the speed, under overload nothing accepted is lost or duplicated, nothing times out.
    overload = rows["overload (2× capacity)"]
    assert all(f in overload for f in ("lost=0 ", "duplicated=0 ", "timeouts_or_errors=0 ", "backlog_ok=True")), overload
    assert "differences=0" in rows["audit replay (all views)"]
