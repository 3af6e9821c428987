# Sourced by the other scripts: a virtual environment in .venv with requirements-dev.txt installed.
# It reinstalls only when requirements-dev.txt changed since the last install.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.requirements-dev.sha256"
want="$(sha256sum "$repo/requirements-dev.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r "$repo/requirements-dev.txt"
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
export PYTHONDONTWRITEBYTECODE=1
