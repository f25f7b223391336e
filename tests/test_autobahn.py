"""The Autobahn WebSocket TestSuite (through kosoku) against a real Portico: zero FAILED cases.

CI runs the 301 cases without compression (about 10 s); ``scripts/autobahn --all`` runs all 517.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "autobahn"


def test_autobahn_cases_without_compression(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "reports")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "301 cases" in report
    assert "FAILED: 0" in report
    assert (tmp_path / "reports" / "index.html").exists()
