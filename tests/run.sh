#!/usr/bin/env bash
# Runs tollgate's whole test suite: unit, golden and end-to-end tests (the real gateway
# against simulated providers), plus checks that drive the gateway with the official
# OpenAI and Anthropic Python SDKs, installed here into a virtualenv under target/.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/test-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
export TOLLGATE_TEST_PYTHON="$PWD/$venv/bin/python"

cargo test --locked "$@"
