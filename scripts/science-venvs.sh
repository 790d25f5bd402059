#!/usr/bin/env bash
# Makes, under DIR, one virtual environment per Python 3 of this machine (Debian's
# /usr/bin/python3 as DIR/debian, each pyenv version as DIR/pyenv-X.Y.Z), each with numpy and
# matplotlib from binary wheels only, for the native suite's test that the packages users
# bring most work inside whatever interpreter a venv was made from (issue 18, item 4).
# Debian's gets the pinned versions the rest of CI uses; older Pythons get the newest wheels
# pip finds for them. Prints each venv and how long it took; fails if any cannot be made.
# Usage: scripts/science-venvs.sh DIR
set -euo pipefail
dir=${1:?usage: science-venvs.sh DIR}
rm -rf "$dir"
mkdir -p "$dir"
make_venv() { # NAME PYTHON PACKAGES...
  local name=$1 python=$2 started=$SECONDS
  shift 2
  "$python" -m venv "$dir/$name"
  "$dir/$name/bin/python" -m pip install -q --disable-pip-version-check \
    --only-binary=:all: "$@"
  echo "  $name ($("$dir/$name/bin/python" -c 'import sys, numpy, matplotlib; print(sys.version.split()[0], "numpy", numpy.__version__, "matplotlib", matplotlib.__version__)')): $((SECONDS - started))s"
}
make_venv debian /usr/bin/python3 numpy==2.4.6 matplotlib==3.11.2
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
for base in "$pyenv_root"/versions/3*/bin/python3; do
  [ -x "$base" ] || continue
  version=$(basename "$(dirname "$(dirname "$base")")")
  make_venv "pyenv-$version" "$base" numpy matplotlib
done
chmod -R a+rX "$dir"
