"""The hook reference (docs/hooks.md) states every hook with its exact signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from maxcore import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS_PAGE = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
SPECS = {
    name: fn for name, fn in vars(hookspecs).items()
    if inspect.isfunction(fn) and hasattr(fn, "maxcore_spec")
}


def signature_text(fn) -> str:
    """``name(arg: Type, ...) -> Return`` as written in hookspecs.py."""
    signature = inspect.signature(fn)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in signature.parameters.values())
    return f"{fn.__name__}({params}) -> {signature.return_annotation}"


def documented() -> dict[str, str]:
    """Hook name -> the signature in the code block under its ``### name`` heading."""
    found = {}
    for match in re.finditer(r"^### (\w+)\n+```python\n([^\n]+)\n```", HOOKS_PAGE, re.MULTILINE):
        found[match.group(1)] = match.group(2).strip()
    return found


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_is_documented_with_its_exact_signature(name):
    docs = documented()
    assert name in docs, f"docs/hooks.md has no '### {name}' section with its signature"
    assert docs[name] == signature_text(SPECS[name])


def test_every_documented_hook_exists():
    assert set(documented()) == set(SPECS)


def test_plugins_page_links_the_channel_page():
    assert "(channels.md)" in (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")


def test_plugins_page_links_the_hook_reference():
    assert "(hooks.md)" in (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")


# -- what plugin authors are promised -------------------------------------------------
def test_package_is_typed():
    assert (ROOT / "maxcore" / "py.typed").is_file()
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_testing_package_and_emulators_import_without_pytest():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['pytest'] = None  # any `import pytest` now raises ImportError\n"
        "import maxcore.testing, maxcore.testing.harness, maxcore.testing.greenapi_emulator\n"
        "import maxcore.testing.openai_emulator, maxcore.testing.espocrm\n"
        "import maxcore.testing.postgrest_emulator\n"
        "maxcore.testing.CRMContract, maxcore.testing.sample_lead  # plain classes and functions\n"
        "maxcore.testing.ChannelContract, maxcore.testing.ChannelDriver\n"
        "try:\n"
        "    maxcore.testing.MemoryContract\n"
        "except ImportError:\n"
        "    print('async contracts need pytest')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "async contracts need pytest"
