#!/bin/sh
# Regenerates the golden fixtures under tests/data/golden/ (see tools/golden/README.md).
#
# Creates the virtualenv .venv-golden/ in the repository root on first use (or when requirements.txt changed since
# it was filled), installs tools/golden/requirements.txt into it, then runs every generator and prints a summary.
# Needs python3 >= 3.10 and PyPI; about 6 GB of disk for the environment when PyTorch's CPU wheel index is out of
# reach (then pip takes PyPI's CUDA build of torch; the fixtures are computed on the CPU either way).
#
#   tools/golden/regenerate.sh           regenerate
#   tools/golden/regenerate.sh --verify  regenerate twice and fail unless both runs wrote identical bytes
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/tools/golden"
venv="$root/.venv-golden"
req="$here/requirements.txt"
python=${PYTHON:-python3}

verify=0
case "${1:-}" in
  "") ;;
  --verify) verify=1 ;;
  *) echo "usage: tools/golden/regenerate.sh [--verify]" >&2; exit 2 ;;
esac

if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
  echo "regenerate: error: $python is missing or older than Python 3.10" >&2
  exit 1
fi

stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "regenerate: preparing $venv"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  reqfile="$req"
  # The CPU wheel index named in requirements.txt is preferred; where it cannot be reached, pip would retry it for
  # every package, so leave it out and take everything from PyPI.
  if ! "$venv/bin/python" - <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen("https://download.pytorch.org/whl/cpu/", timeout=10)
except Exception:
    sys.exit(1)
PY
  then
    echo "regenerate: PyTorch's CPU wheel index is unreachable; installing torch from PyPI instead"
    reqfile="$venv/requirements-pypi.txt"
    grep -v '^--extra-index-url' "$req" > "$reqfile"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqfile"
  echo "$want" > "$stamp"
fi

run_all() {
  "$venv/bin/python" "$here/flux_transformer.py"
  "$venv/bin/python" "$here/nf4.py"
  "$venv/bin/python" "$here/clip.py"
  "$venv/bin/python" "$here/t5.py"
  "$venv/bin/python" "$here/vae.py"
  "$venv/bin/python" "$here/pipeline.py"
}

hashes() {
  (cd "$root/tests/data/golden" && sha256sum flux_*.safetensors nf4_*.safetensors clip_*.safetensors t5_*.safetensors \
     vae_*.safetensors pipeline_*.safetensors && find pipeline_tiny -type f | LC_ALL=C sort | xargs sha256sum)
}

run_all
if [ "$verify" -eq 1 ]; then
  first=$(mktemp)
  trap 'rm -f "$first"' EXIT
  hashes > "$first"
  echo "regenerate: second run, to check the output is deterministic"
  run_all > /dev/null
  if ! hashes | diff -u "$first" - >&2; then
    echo "regenerate: error: a second run wrote different bytes (above)" >&2
    exit 1
  fi
  echo "regenerate: both runs wrote identical bytes"
fi
"$venv/bin/python" "$here/golden_common.py"
