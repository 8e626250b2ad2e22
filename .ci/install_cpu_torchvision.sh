#!/usr/bin/env bash
# Put the pure-Python torchvision that works next to CPU torch into a venv (the vLLM and verl test
# venvs): remove any CUDA build of torchvision/torchaudio/torchcodec (they fail to load next to CPU
# torch, and a broken torchvision breaks transformers' model imports), install torchvision 0.28.0
# without dependencies, and declare its missing C++ op schemas at every interpreter start
# (.ci/torchvision_schema_fix.py, imported through a .pth file).
#   bash .ci/install_cpu_torchvision.sh VENV_DIR
set -euo pipefail
venv="${1:?usage: install_cpu_torchvision.sh VENV_DIR}"
root="$(cd "$(dirname "$0")/.." && pwd)"
"$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$venv/bin/python" -m pip install -q --no-deps torchvision==0.28.0
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$root/.ci/torchvision_schema_fix.py" "$site/jaxgym_torchvision_schema_fix.py"
echo "import jaxgym_torchvision_schema_fix" > "$site/jaxgym_torchvision_schema_fix.pth"
