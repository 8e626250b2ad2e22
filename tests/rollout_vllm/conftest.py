"""Fixtures of the vLLM tests: the tiny model exported once, one vLLM engine for the session
(vLLM takes seconds to start; the tests that change its weights put them back)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class TinyPolicy:
    model: Any
    processor: Any
    path: Path  # the export_policy directory vLLM loads


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyPolicy:
    from learner.models import build_tiny_policy, export_policy

    model, processor = build_tiny_policy(seed=0)
    path = export_policy(model, processor, tmp_path_factory.mktemp("tiny-vllm"))
    return TinyPolicy(model.eval(), processor, path)


@pytest.fixture(scope="session")
def engine(tiny: TinyPolicy) -> Any:
    from learner.rollout import VLLMRolloutEngine

    return VLLMRolloutEngine(str(tiny.path), tiny.processor, seed=0, dtype="float32", max_model_len=2048,
                             max_pixels=448 * 448)
