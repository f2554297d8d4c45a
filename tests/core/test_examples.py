"""The production examples validate once their variables are set, and name them when not."""

from __future__ import annotations

import shutil
from pathlib import Path

from dotenv import dotenv_values

from maxcore.config import load_config
from maxcore.plugins import load_plugins

EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "examples"


def test_examples_are_valid_with_their_variables(tmp_path):
    (tmp_path / "tenants").mkdir()
    for example in EXAMPLES.glob("*.yaml"):
        shutil.copy(example, tmp_path / "tenants" / example.name)
    plugins = load_plugins()
    env = {k: v for k, v in dotenv_values(EXAMPLES / ".env.example").items() if v is not None}
    loaded = load_config(tmp_path, plugins, env=env)
    assert loaded.ok, [str(p) for p in loaded.problems]
    assert {t.tenant for t in loaded.tenants} == {"acme", "atelier"}
    missing = load_config(tmp_path, plugins, env={})
    assert "tenants/acme.yaml: crm.api_key: environment variable ACME_ESPOCRM_API_KEY is not set " \
        "(referenced as ${ACME_ESPOCRM_API_KEY})" in [str(p) for p in missing.problems]
