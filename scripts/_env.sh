# Shared set-up for scripts/run and scripts/test: make sure uv exists and the locked
# environment is installed. Sourced, not executed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# `command -v` is not enough: a pyenv shim exists for a uv installed under another version.
if ! uv --version >/dev/null 2>&1; then
  echo "uv not found: installing it with pip (python3 -m pip install --user uv)" >&2
  python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
  hash -r
fi

# Python >= 3.12 is required; uv picks an installed 3.12 (pyenv, system) or fetches one.
uv sync --locked --quiet "$@"
