#!/usr/bin/env sh
# scripts/install.sh VENV SPEC: install SPEC ("." or ".[dev]", read from pyproject.toml) into the
# virtualenv VENV, with timings. Uses uv (pip-installed into VENV on first use: it resolves and
# installs many times faster than pip; --compile-bytecode as pip does, or every process of the
# first runs would compile the imports itself) and falls back to pip when uv can't be had or fails
# (e.g. no package index reachable but pip's own configuration finds the wheels).
# INSTALLER=pip forces pip.
set -eu
VENV=$1
SPEC=$2
PY="$VENV/bin/python"
start=$(date +%s)
if [ "${INSTALLER:-uv}" != pip ] && [ ! -x "$VENV/bin/uv" ]; then
	echo "install: getting uv (pip install uv)"
	"$PY" -m pip install --quiet --disable-pip-version-check uv >/dev/null 2>&1 || \
		echo "install: uv not available; using pip"
fi
if [ "${INSTALLER:-uv}" != pip ] && [ -x "$VENV/bin/uv" ]; then
	echo "install: $SPEC with uv"
	if "$VENV/bin/uv" pip install --quiet --compile-bytecode --python "$PY" ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} "$SPEC"; then
		echo "install: $SPEC installed in $(( $(date +%s) - start ))s (uv)"
		exit 0
	fi
	echo "install: uv failed; falling back to pip"
fi
echo "install: $SPEC with pip"
"$PY" -m pip install --quiet --disable-pip-version-check "$SPEC"
echo "install: $SPEC installed in $(( $(date +%s) - start ))s (pip)"
