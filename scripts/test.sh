#!/usr/bin/env bash
# One command that sets everything up and runs the whole test suite:
# Python venv with maxcore and every plugin under plugins/, the Debian packages the
# real-server tests use (PostgreSQL, nginx, MariaDB, Chromium; installed when running
# as root and missing), ruff and mypy, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ "$(id -u)" = "0" ] && [ -s scripts/apt-packages.txt ]; then
  missing=()
  while read -r pkg; do
    [ -z "$pkg" ] || [ "${pkg#\#}" != "$pkg" ] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done < scripts/apt-packages.txt
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
targets=(-e ".[test]")
for plugin in plugins/*/; do
  if [ -f "$plugin/pyproject.toml" ]; then
    if grep -q '^test *=' "$plugin/pyproject.toml"; then
      targets+=(-e "${plugin%/}[test]")
    else
      targets+=(-e "${plugin%/}")
    fi
  fi
done
.venv/bin/python -m pip install --quiet "${targets[@]}"
# Example third-party plugins: installed as built distributions (not editable), as a
# user would install them, so the tests exercise the entry points, never the source tree.
for example in examples/*/; do
  if [ -f "$example/pyproject.toml" ]; then
    .venv/bin/python -m pip install --quiet --no-deps --force-reinstall "${example%/}"
  fi
done

.venv/bin/ruff check .
# Type-check the core, every plugin's and every example's package (not *.egg-info folders).
packages=(maxcore)
for package in plugins/*/maxcore_*/ examples/*/maxcore_*/; do
  if [ -f "$package/__init__.py" ]; then packages+=("${package%/}"); fi
done
.venv/bin/mypy "${packages[@]}"
set +e
.venv/bin/pytest "$@"
status=$?
set -e
# pytest's 5 means "no test collected": that is a failure of the suite, not a pass.
exit $status
