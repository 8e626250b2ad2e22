"""Without vLLM (the main venv), ``--rollout_engine vllm`` says in one line how to install it."""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is not None,
                                reason="vLLM is installed here; this checks the message when it is not")


def test_import_vllm_names_the_install_command():
    from learner.rollout import import_vllm

    with pytest.raises(ImportError) as caught:
        import_vllm()
    message = str(caught.value)
    assert "\n" not in message
    assert "pip install 'jaxgym[vllm]'" in message and "bash .ci/build_vllm_venv.sh .venv-vllm" in message
    assert caught.value.__cause__ is None  # no chained ModuleNotFoundError traceback


def test_the_engine_fails_with_that_line_before_touching_the_model(tmp_path):
    from learner.rollout import VLLMRolloutEngine

    with pytest.raises(ImportError, match=r"^rollout_engine='vllm' needs vLLM 0\.32, which is not installed"):
        VLLMRolloutEngine(str(tmp_path / "no-model-here"), processor=None)
