#!/usr/bin/env bash
# Build the verl test venv: verl 0.9.1 (CPU) with jaxgym, for tests/integrations_verl.
#   bash .ci/build_verl_venv.sh VENV_DIR      (CI: .venv-verl; a few minutes, mostly downloads)
# Kept apart from the main venv because verl pins its own ray/hydra/tensordict stack and is the
# version docs/integrations.md's verl recipe was checked with.
set -euo pipefail
venv="${1:?usage: build_verl_venv.sh VENV_DIR}"
root="$(cd "$(dirname "$0")/.." && pwd)"

python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q)
# The CPU build of PyTorch first: a plain `torch` (which verl's dependencies pull) is a CUDA build.
"${pip[@]}" torch==2.13.0
# verl and jaxgym (the reward adapter and bridges.export run in verl's process, so jaxgym must be
# installed in verl's environment: the recipe says so) plus what the tests need, in one resolve
# so torch stays the CPU build.
# qwen-vl-utils: RLHFDataset reads a row's images with it (verl/utils/dataset/rl_dataset.py:442).
"${pip[@]}" verl==0.9.1 torch==2.13.0 qwen-vl-utils -e "$root" "pytest>=7"
# qwen-vl-utils imports torchvision without declaring it. The registry's torchvision wheels are CUDA
# builds that fail to load next to CPU torch; the pure-Python one with its op schemas declared at
# every interpreter start works (the same fix as .ci/build_vllm_venv.sh).
bash "$root/.ci/install_cpu_torchvision.sh" "$venv"

# Fail here, not in the tests, if the stack does not import.
"$venv/bin/python" - <<'PY'
import importlib.metadata as md

import torch, transformers, verl, jaxgym, qwen_vl_utils  # noqa: E401,F401
from verl.trainer.ppo import reward  # noqa: F401
from verl.utils.dataset.rl_dataset import RLHFDataset  # noqa: F401

print("verl venv:", ", ".join(f"{p} {md.version(p)}" for p in ("verl", "torch", "transformers", "ray", "jax")))
PY
