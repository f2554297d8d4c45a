"""``maxcore doctor``: all ✓ on the embedded demo, ✗ with the fix when something is broken."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from maxcore import hookimpl
from maxcore.builtin.offline_llm import OfflineLLM
from maxcore.doctor import Mark, run_doctor, split_fix
from maxcore.plugins import load_plugins
from maxcore.testing.harness import write_config
from maxcore.types import Health

from .conftest import REPO, maxcore_binary

DEMO_TENANT = (REPO / "config" / "tenants" / "demo.yaml").read_text()


def demo_config(tmp_path: Path, tenants: dict[str, str] | None = None) -> Path:
    return write_config(tmp_path / "config", tenants or {"demo": DEMO_TENANT},
                        data_dir=tmp_path / "data")


@attrs.frozen
class ProbeConfig:
    status: str = "ok"
    reason: str = ""
    fail_open: bool = False


class ProbeLLM(OfflineLLM):
    """An LLM whose health (or open) is what the tenant YAML says: a stand-in for a broken upstream."""

    name: ClassVar[str] = "probe"
    Config = ProbeConfig

    def __init__(self, config: ProbeConfig, context: Any) -> None:
        super().__init__(OfflineLLM.Config(), context)
        self.probe = config
        self.closed = False

    async def open(self) -> None:
        if self.probe.fail_open:
            raise ConnectionRefusedError("connection refused by 127.0.0.1:9")

    async def health(self) -> Health:
        return Health(self.probe.status, self.probe.reason)


class ProbePlugin:
    @hookimpl
    def register_llms(self) -> list[type]:
        return [ProbeLLM]


def probe_tenant(name: str, llm_block: str) -> str:
    return DEMO_TENANT.replace("tenant: demo", f"tenant: {name}").replace(
        "llm:\n  type: offline", f"llm:\n  type: probe\n{llm_block}"
    )


def marks(report: Any) -> list[str]:
    return [str(c.mark) for c in report.checks]


async def test_demo_config_is_all_green(tmp_path: Path) -> None:
    report = await run_doctor(demo_config(tmp_path), load_plugins())
    assert report.ok
    assert set(marks(report)) == {"✓"}
    subjects = [c.subject for c in report.checks]
    for kind, kind_type in (("channel", "webchat"), ("crm", "sqlite"), ("memory", "sqlite"),
                            ("llm", "offline")):
        assert f"demo · {kind} {kind_type}" in subjects
    assert report.lines()[-1].startswith("✓ all")


async def test_down_connector_is_a_failure_with_its_own_fix(tmp_path: Path) -> None:
    tenants = {
        "good": DEMO_TENANT.replace("tenant: demo", "tenant: good"),
        "acme": probe_tenant(
            "acme",
            '  status: down\n  reason: "401 from GET /v1/models — fix: set llm.api_key to a valid key"\n',
        ),
    }
    plugins = load_plugins(extra=[("probe", ProbePlugin())])
    report = await run_doctor(demo_config(tmp_path, tenants), plugins)
    assert not report.ok
    failed = [c for c in report.checks if c.mark is Mark.FAIL]
    assert len(failed) == 1
    assert failed[0].subject == "acme · llm probe"
    assert "401 from GET /v1/models" in failed[0].detail
    assert failed[0].fix == "set llm.api_key to a valid key"
    # The other tenant is still checked and green.
    assert any(c.subject == "good · llm offline" and c.mark is Mark.OK for c in report.checks)


async def test_connector_that_cannot_open_gets_the_generic_fix_naming_the_file(tmp_path: Path) -> None:
    tenants = {"acme": probe_tenant("acme", "  fail_open: true\n")}
    report = await run_doctor(demo_config(tmp_path, tenants), load_plugins(extra=[("probe", ProbePlugin())]))
    [failed] = [c for c in report.checks if c.mark is Mark.FAIL]
    assert "cannot open: ConnectionRefusedError" in failed.detail
    assert "llm block" in failed.fix and "tenants/acme.yaml" in failed.fix


async def test_degraded_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    tenants = {"acme": probe_tenant("acme", "  status: degraded\n  reason: rate limited (429)\n")}
    report = await run_doctor(demo_config(tmp_path, tenants), load_plugins(extra=[("probe", ProbePlugin())]))
    assert report.ok
    assert next(c for c in report.checks if c.mark is Mark.WARN).detail == "degraded — rate limited (429)"


async def test_invalid_config_names_file_key_and_fix(tmp_path: Path) -> None:
    broken = DEMO_TENANT.replace("  max_tool_rounds: 4", "  max_tool_rounds: 4\n  colour: blue")
    config = demo_config(tmp_path, {"demo": broken})
    report = await run_doctor(config, load_plugins())
    assert not report.ok
    [failed] = report.checks
    assert "tenants/demo.yaml" in failed.subject and "colour" in failed.detail
    assert "maxcore check" in failed.fix


async def test_unwritable_data_dir_is_a_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    config = write_config(tmp_path / "config", {"demo": DEMO_TENANT}, data_dir=blocker / "data")
    report = await run_doctor(config, load_plugins())
    failed = [c for c in report.checks if c.mark is Mark.FAIL]
    assert failed and failed[0].subject.startswith("data directory")
    assert "MAXCORE_DATA_DIR" in failed[0].fix


def test_split_fix() -> None:
    assert split_fix("webhook URL is http://x — fix: run maxcore greenapi setup") == (
        "webhook URL is http://x", "run maxcore greenapi setup")
    assert split_fix("all good") == ("all good", "")


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAXCORE_DATA_DIR": str(data_dir), "NO_COLOR": "1"}
    return subprocess.run([maxcore_binary(), "doctor", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_cli_demo_exits_zero(tmp_path: Path) -> None:
    config = demo_config(tmp_path)
    result = run_cli("--config", str(config), data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ demo · crm sqlite" in result.stdout
    assert "✗" not in result.stdout


def test_cli_unknown_tenant_and_bad_config_exit_one(tmp_path: Path) -> None:
    config = demo_config(tmp_path)
    result = run_cli("--config", str(config), "--tenant", "nope", data_dir=tmp_path / "data")
    assert result.returncode == 1
    assert "✗ runtime: unknown tenant nope" in result.stdout
    shutil.rmtree(config / "tenants")
    result = run_cli("--config", str(config), data_dir=tmp_path / "data")
    assert result.returncode == 1
    assert "tenants directory does not exist" in result.stdout


@pytest.mark.parametrize("flag", ["--help"])
def test_cli_help_lists_options(flag: str, tmp_path: Path) -> None:
    result = run_cli(flag, data_dir=tmp_path)
    assert result.returncode == 0 and "--tenant" in result.stdout and "--timeout" in result.stdout
