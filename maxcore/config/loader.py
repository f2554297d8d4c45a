"""Reading the configuration directory: YAML, ``${VAR}`` interpolation, validation.

Nothing here stops at the first problem: ``load`` returns every problem of every file
so that ``maxcore check`` can show them all at once.
"""

from __future__ import annotations

import difflib
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
from .structure import FromEnv, join, structure

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
    # value read from the environment -> "${VAR}", to mask it in messages
    env_values: dict[str, str] = attrs.field(factory=dict, repr=False)

    def mask(self, text: str) -> str:
        """``text`` with every value read from the environment shown as ``${VAR}``."""
        return mask_env_values(text, self.env_values)

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
    env: Mapping[str, str], env_values: dict[str, str] | None = None,
) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string, recording secrets.

    A string with a reference becomes a :class:`FromEnv` (its repr is the reference,
    so errors never show the value); ``env_values`` maps each value read from the
    environment to its ``${VAR}`` for masking messages built by other code.
    """
    env_values = {} if env_values is None else env_values
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            child = interpolate(
                item, join(path, str(key)), label, problems, secrets, env, env_values
            )
            if isinstance(child, str) and child and _SECRET_KEY_RE.search(str(key)):
                secrets.add(str(child))
            out[key] = child
        return out
    if isinstance(value, list):
        return [
            interpolate(item, join(path, i), label, problems, secrets, env, env_values)
            for i, item in enumerate(value)
        ]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            resolved = env[name]
            env_values[resolved] = f"${{{name}}}"
            if len(resolved) >= 6:
                secrets.add(resolved)
            return resolved
        if default is not None:
            return default
        problems.append(Problem(
            label, path, f"environment variable {name} is not set (referenced as ${{{name}}})"
        ))
        return ""

    return FromEnv(_VAR_RE.sub(replace, value), value)


def mask_env_values(text: str, env_values: Mapping[str, str]) -> str:
    """Show ``${VAR}`` instead of any value read from the environment in ``text``.

    Quoted occurrences (a repr) are always replaced; bare ones from 6 characters on,
    so that a short value such as ``fr`` does not rewrite ordinary words.
    """
    for value, reference in sorted(env_values.items(), key=lambda item: -len(item[0])):
        text = text.replace(repr(value), repr(reference))
        if len(value) >= 6:
            text = text.replace(value, reference)
    return text


@attrs.define
class _Loading:
    """State shared while one directory is loaded: every problem, secret and env value."""

    plugins: Any
    env: Mapping[str, str]
    problems: list[Problem] = attrs.field(factory=list)
    secrets: set[str] = attrs.field(factory=set)
    env_values: dict[str, str] = attrs.field(factory=dict)

    def read(self, path: Path, label: str) -> Any:
        raw = _read_yaml(path, label, self.problems)
        return interpolate(raw, "", label, self.problems, self.secrets, self.env, self.env_values)

    def add(self, label: str, errors: list[tuple[str, str]]) -> None:
        self.problems.extend(Problem(label, path, message) for path, message in errors)

    def result(self, directory: Path, main: MaxcoreConfig, tenants: list[TenantConfig]) -> LoadedConfig:
        masked = [
            attrs.evolve(p, message=mask_env_values(p.message, self.env_values))
            for p in self.problems
        ]
        return LoadedConfig(directory, main, tenants, masked, self.secrets, self.env_values)


def load_config(directory: Path, plugins: Any, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Load and validate ``directory`` against the connectors and tools ``plugins`` provides."""
    directory = Path(directory)
    state = _Loading(plugins, os.environ if env is None else env)
    main = MaxcoreConfig()
    main_path = directory / "maxcore.yaml"
    if not directory.is_dir():
        state.problems.append(Problem(str(directory), "", "configuration directory does not exist"))
        return state.result(directory, main, [])
    if main_path.is_file():
        parsed, errs = structure(state.read(main_path, "maxcore.yaml"), MaxcoreConfig)
        state.add("maxcore.yaml", errs)
        if parsed is not None:
            main = parsed

    tenants_dir = directory / main.tenants_dir
    tenants: list[TenantConfig] = []
    seen: dict[str, str] = {}
    if not tenants_dir.is_dir():
        state.problems.append(Problem(
            str(Path(main.tenants_dir)), "", "tenants directory does not exist "
            f"(tenants_dir in maxcore.yaml points to {tenants_dir})",
        ))
        return state.result(directory, main, tenants)
    for path in sorted([*tenants_dir.glob("*.yaml"), *tenants_dir.glob("*.yml")]):
        label = f"{main.tenants_dir.rstrip('/')}/{path.name}"
        tenant = _load_tenant(path, label, state)
        if tenant is None:
            continue
        if tenant.tenant in seen:
            state.problems.append(Problem(
                label, "tenant",
                f"tenant id {tenant.tenant!r} is already used by {seen[tenant.tenant]}",
            ))
            continue
        seen[tenant.tenant] = label
        tenants.append(tenant)
    if not tenants and not state.problems:
        state.problems.append(Problem(label_of(main), "", "no tenant file (*.yaml) found"))
    return state.result(directory, main, tenants)


def label_of(main: MaxcoreConfig) -> str:
    return main.tenants_dir.rstrip("/") + "/"


def _load_tenant(path: Path, label: str, state: _Loading) -> TenantConfig | None:
    before = len(state.problems)
    raw = state.read(path, label)
    if raw is None and len(state.problems) > before:
        return None
    if not isinstance(raw, dict):
        state.problems.append(Problem(
            label, "", f"expected a mapping at the top level, got {type(raw).__name__}"
        ))
        return None
    blocks_raw = {kind: raw.pop(kind, None) for kind in KINDS}
    header, errs = structure(raw, TenantHeader)
    state.add(label, errs)
    if header is not None:
        state.add(label, _unknown_tools(header.assistant.allowed_tools, state.plugins))
    blocks: dict[str, ConnectorBlock] = {}
    for kind in KINDS:
        block = _load_block(kind, blocks_raw[kind], label, state)
        if block is not None:
            blocks[kind] = block
    if header is None or len(blocks) != len(KINDS) or len(state.problems) > before:
        return None
    return TenantConfig(
        tenant=header.tenant, source=label, name=header.name, assistant=header.assistant,
        limits=header.limits, **blocks,
    )


def _unknown_tools(allowed: tuple[str, ...] | None, plugins: Any) -> list[tuple[str, str]]:
    """Tool names in ``assistant.allowed_tools`` that no loaded plugin registers."""
    known = sorted(getattr(plugins, "tools", None) or ())
    out: list[tuple[str, str]] = []
    for index, name in enumerate(allowed or ()):
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        out.append((
            f"assistant.allowed_tools[{index}]",
            f"unknown tool {name!r}{hint}; available: {', '.join(known) or 'none'}",
        ))
    return out


def _load_block(kind: str, raw: Any, label: str, state: _Loading) -> ConnectorBlock | None:
    if raw is None:
        raw = {"type": DEFAULT_BLOCKS[kind]}
    if not isinstance(raw, dict):
        state.problems.append(Problem(
            label, kind, f"expected a mapping with a 'type' key, got {raw!r}"
        ))
        return None
    settings = dict(raw)
    type_name = settings.pop("type", None)
    if not isinstance(type_name, str) or not type_name:
        state.problems.append(Problem(label, f"{kind}.type", "required key is missing (which connector?)"))
        return None
    cls = state.plugins.connector_class(kind, type_name)
    if cls is None:
        available = ", ".join(sorted(state.plugins.connectors[kind])) or "none"
        failed = [info.name for info in getattr(state.plugins, "failed", [])]
        why = (
            f"plugins not loaded: {', '.join(failed)} (see `maxcore plugins`)" if failed
            else "a connector from a plugin appears once that plugin is installed"
        )
        state.problems.append(Problem(
            label, f"{kind}.type", f"unknown {kind} type {type_name!r}; available: {available} ({why})",
        ))
        return None
    config, errs = structure(settings, cls.Config, kind)
    state.add(label, errs)
    if config is None:
        return None
    return ConnectorBlock(type=str(type_name), config=config)
