"""Shared helpers of the deploy tests: repo paths, free ports, binaries required under CI."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
VENV_BIN = REPO / ".venv" / "bin"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(*names: str) -> str:
    """The first binary found; skipped locally when none is, a failure under CI=true."""
    for name in names:
        found = shutil.which(name) or next(
            (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d) / name).exists()), None
        )
        if found:
            return found
    reason = f"{' or '.join(names)} not installed (Debian packages in scripts/apt-packages.txt)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)
    raise AssertionError("unreachable")


def maxcore_binary() -> str:
    path = VENV_BIN / "maxcore"
    return str(path) if path.exists() else require_binary("maxcore")
