# Sourced by setup.sh and test.sh: a Python >= 3.11 virtualenv in .venv with the project in it.
# Reinstalls only when pyproject.toml changed, so repeated runs take seconds.

fs_die() { echo "error: $*" >&2; exit 1; }

fs_find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

fs_bootstrap() {  # $1: pip extras, e.g. "[test]" or ""
  local extras="${1:-}" python stamp
  python=$(fs_find_python) || fs_die "Python >= 3.11 is required: install it (Debian: apt-get install python3) or set PYTHON=/path/to/python3.11"
  if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv >/dev/null 2>&1; then
      rm -rf .venv
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing python3-venv (Debian)" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        "$python" -m venv .venv || fs_die "cannot create a virtualenv with $python"
      else
        fs_die "cannot create a virtualenv with $python: install the venv module (Debian: apt-get install python3-venv)"
      fi
    fi
  fi
  stamp=".venv/.installed$(echo "$extras" | tr -cd 'a-z')-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "installing fluidos-sensors${extras} into .venv (once per pyproject.toml change)" >&2
    .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
    .venv/bin/python -m pip install --quiet -e ".${extras}" || fs_die "pip install failed (is PyPI reachable?)"
    touch "$stamp"
  fi
}
