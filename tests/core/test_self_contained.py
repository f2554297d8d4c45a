"""The suite reads nothing beside the repository: a clone in an empty folder passes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_test_reading_beside_the_repository_fails(tmp_path: Path) -> None:
    # A throwaway test file run by pytest with this suite's conftest: it opens ../<sibling>.
    sibling = REPO.parent / "maxcore-sibling-probe.txt"
    probe = REPO / "tests" / "core" / "_probe_outside_test.py"
    probe.write_text(textwrap.dedent(f"""
        def test_reads_beside():
            try:
                open({str(sibling)!r}).close()
            except OSError:
                pass
    """))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        )
    finally:
        probe.unlink()
    assert result.returncode == 1, result.stdout
    assert "read outside the repository" in result.stdout and str(sibling) in result.stdout
