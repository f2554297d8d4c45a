"""Reading the configuration directory: YAML, ``${VAR}`` interpolation, validation.

Nothing here stops at the first problem: ``load`` returns every problem of every file
so that ``maxcore check`` can show them all at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from ..connectors import KINDS
from . import safe_yaml
from .models import (
    DEFAULT_BLOCKS,
    ConnectorBlock,
    MaxcoreConfig,
    TenantConfig,
    TenantHeader,
)
from .structure import join, structure

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_SECRET_KEY_RE = re.compile(r"(token|key|secret|password|passwd)", re.IGNORECASE)


@attrs.frozen
class Problem:
    """One configuration problem: which file, which key, what is wrong."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"


@attrs.define
class LoadedConfig:
    """The result of loading a configuration directory."""

    directory: Path
    main: MaxcoreConfig
    tenants: list[TenantConfig]
    problems: list[Problem]
    secrets: set[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def data_dir(self) -> Path:
        return Path(os.environ.get("MAXCORE_DATA_DIR") or self.main.data_dir).expanduser()


def load_dotenv_files(directory: Path) -> None:
    """Load ``.env`` from the working directory and the config directory (never overriding)."""
    from dotenv import load_dotenv

    for candidate in (Path.cwd() / ".env", directory / ".env"):
        if candidate.is_file():
            load_dotenv(candidate, override=False)


def _read_yaml(path: Path, label: str, problems: list[Problem]) -> Any:
    try:
        size = path.stat().st_size
        if size > safe_yaml.MAX_BYTES:
            problems.append(Problem(
                label, "", f"file is {size:,} bytes; configuration files are limited to "
                f"{safe_yaml.MAX_BYTES:,}",
            ))
            return None
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(Problem(label, "", f"cannot read file ({exc.strerror})"))
        return None
    except UnicodeDecodeError as exc:
        problems.append(Problem(label, "", f"not UTF-8 text (byte {exc.start})"))
        return None
    try:
        parsed = safe_yaml.parse(text)
    except safe_yaml.YAMLRefused as exc:
        problems.append(Problem(label, "", f"refused: {exc}"))
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        problems.append(Problem(label, "", f"invalid YAML: {where}{reason}"))
        return None
    problems.extend(Problem(label, key_path, message) for key_path, message in parsed.duplicates)
    return parsed.data


def interpolate(
    value: Any, path: str, label: str, problems: list[Problem], secrets: set[str],
    env: Mapping[str, str],
) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string, recording secrets."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            child = interpolate(item, join(path, str(key)), label, problems, secrets, env)
            if isinstance(child, str) and child and _SECRET_KEY_RE.search(str(key)):
                secrets.add(child)
            out[key] = child
        return out
    if isinstance(value, list):
        return [
            interpolate(item, join(path, i), label, problems, secrets, env)
            for i, item in enumerate(value)
        ]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            resolved = env[name]
            if len(resolved) >= 6:
                secrets.add(resolved)
            return resolved
        if default is not None:
            return default
        problems.append(Problem(
            label, path, f"environment variable {name} is not set (referenced as ${{{name}}})"
        ))
        return ""

    return _VAR_RE.sub(replace, value)


def load_config(directory: Path, plugins: Any, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Load and validate ``directory`` against the connectors ``plugins`` provides."""
    directory = Path(directory)
    env = os.environ if env is None else env
    problems: list[Problem] = []
    secrets: set[str] = set()

    main = MaxcoreConfig()
    main_path = directory / "maxcore.yaml"
    if not directory.is_dir():
        problems.append(Problem(str(directory), "", "configuration directory does not exist"))
        return LoadedConfig(directory, main, [], problems, secrets)
    if main_path.is_file():
        raw = _read_yaml(main_path, "maxcore.yaml", problems)
        raw = interpolate(raw, "", "maxcore.yaml", problems, secrets, env)
        parsed, errs = structure(raw, MaxcoreConfig)
        problems.extend(Problem("maxcore.yaml", p, m) for p, m in errs)
        if parsed is not None:
            main = parsed

    tenants_dir = directory / main.tenants_dir
    tenants: list[TenantConfig] = []
    seen: dict[str, str] = {}
    if not tenants_dir.is_dir():
        problems.append(Problem(
            str(Path(main.tenants_dir)), "", "tenants directory does not exist "
            f"(tenants_dir in maxcore.yaml points to {tenants_dir})",
        ))
    else:
        for path in sorted([*tenants_dir.glob("*.yaml"), *tenants_dir.glob("*.yml")]):
            label = f"{main.tenants_dir.rstrip('/')}/{path.name}"
            tenant = _load_tenant(path, label, plugins, problems, secrets, env)
            if tenant is None:
                continue
            if tenant.tenant in seen:
                problems.append(Problem(
                    label, "tenant",
                    f"tenant id {tenant.tenant!r} is already used by {seen[tenant.tenant]}",
                ))
                continue
            seen[tenant.tenant] = label
            tenants.append(tenant)
        if not tenants and not problems:
            problems.append(Problem(label_of(main), "", "no tenant file (*.yaml) found"))
    return LoadedConfig(directory, main, tenants, problems, secrets)


def label_of(main: MaxcoreConfig) -> str:
    return main.tenants_dir.rstrip("/") + "/"


def _load_tenant(
    path: Path, label: str, plugins: Any, problems: list[Problem], secrets: set[str],
    env: Mapping[str, str],
) -> TenantConfig | None:
    before = len(problems)
    raw = _read_yaml(path, label, problems)
    if raw is None and len(problems) > before:
        return None
    if not isinstance(raw, dict):
        problems.append(Problem(label, "", f"expected a mapping at the top level, got {type(raw).__name__}"))
        return None
    raw = interpolate(raw, "", label, problems, secrets, env)
    blocks_raw = {kind: raw.pop(kind, None) for kind in KINDS}
    header, errs = structure(raw, TenantHeader)
    problems.extend(Problem(label, p, m) for p, m in errs)
    blocks: dict[str, ConnectorBlock] = {}
    for kind in KINDS:
        block = _load_block(kind, blocks_raw[kind], label, plugins, problems)
        if block is not None:
            blocks[kind] = block
    if header is None or len(blocks) != len(KINDS) or len(problems) > before:
        return None
    return TenantConfig(
        tenant=header.tenant, source=label, name=header.name, assistant=header.assistant,
        limits=header.limits, **blocks,
    )


def _load_block(
    kind: str, raw: Any, label: str, plugins: Any, problems: list[Problem]
) -> ConnectorBlock | None:
    if raw is None:
        raw = {"type": DEFAULT_BLOCKS[kind]}
    if not isinstance(raw, dict):
        problems.append(Problem(label, kind, f"expected a mapping with a 'type' key, got {raw!r}"))
        return None
    settings = dict(raw)
    type_name = settings.pop("type", None)
    if not isinstance(type_name, str) or not type_name:
        problems.append(Problem(label, f"{kind}.type", "required key is missing (which connector?)"))
        return None
    cls = plugins.connector_class(kind, type_name)
    if cls is None:
        available = ", ".join(sorted(plugins.connectors[kind])) or "none"
        problems.append(Problem(
            label, f"{kind}.type",
            f"unknown {kind} type {type_name!r}; available: {available} "
            f"(a connector from a plugin appears once that plugin is installed)",
        ))
        return None
    config, errs = structure(settings, cls.Config, kind)
    problems.extend(Problem(label, p, m) for p, m in errs)
    if config is None:
        return None
    return ConnectorBlock(type=type_name, config=config)
