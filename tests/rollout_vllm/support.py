"""Shared by the vLLM tests (``tests/rollout_vllm``): how to run them, boards, trainer log-probs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch

VLLM_TESTS = "bash .ci/build_vllm_venv.sh .venv-vllm && .venv-vllm/bin/python -m pytest tests/rollout_vllm -q"
"""The command that runs these tests (CI runs it every time, after the main suite)."""


def require_vllm() -> None:
    """Skip the calling module unless vLLM imports (it lives in its own venv). CI sets
    ``JAXGYM_REQUIRE_VLLM=1`` when it runs these tests: then a vLLM that does not import fails
    them instead of skipping them."""
    if os.environ.get("JAXGYM_REQUIRE_VLLM") == "1":
        import vllm  # noqa: F401
        return
    pytest.importorskip("vllm", reason=f"vLLM is not installed in this venv; run the vLLM tests with: {VLLM_TESTS}")


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment for a child process that is its own single-process run: the repository
    importable, without the launcher variables (``RANK``, ``MASTER_PORT``, ...) that this
    process's vLLM engine set for itself (its port is taken)."""
    from pathlib import Path

    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return {**env, **extra}


def boards(game: str, count: int, *, seed: int = 0, **params: Any) -> tuple[str, np.ndarray]:
    """``count`` rendered training boards of ``game`` and its prompt: ``(prompt, (count, H, W, 3) uint8)``."""
    import jaxgym
    from bridges.sampler import StateSampler
    from bridges.torch_io import images_to_numpy

    env = jaxgym.make(game, **params)
    _, images = StateSampler(env, seed=seed).sample(count)
    return env.prompt(), images_to_numpy(images)


def trainer_logprobs(model: Any, processor: Any, prompt: str, images: np.ndarray, n: int,
                     responses: Sequence[Sequence[int]], temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The trainer's recomputed log-probs of ``responses`` (``n`` per image, in order) and the
    probability mass of the banned vision tokens at each response position (what a sampler
    that bans them renormalises away). Both ``(B*n, T)``, 0 past each response's end."""
    from learner.batching import chat_prompt, collate, encode_prompts
    from learner.logprobs import response_logprobs, rope_position_ids
    from learner.models import banned_token_ids

    prompts = encode_prompts(processor, [chat_prompt(processor, prompt)] * len(images), images)
    index = [i for i in range(len(images)) for _ in range(n)]
    batch = collate(prompts, index, responses, pad_token_id=processor.tokenizer.pad_token_id)
    with torch.no_grad():
        logp, _ = response_logprobs(model, batch, temperature=temperature)
        # The full next-token distribution at the response positions, for the banned tokens' mass.
        positions = rope_position_ids(model, batch.input_ids, batch.attention_mask, batch.image_grid_thw)
        hidden = model.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=positions,
                             pixel_values=batch.pixel_values, image_grid_thw=batch.image_grid_thw,
                             use_cache=False).last_hidden_state
        start, width = batch.prompt_length - 1, batch.response_mask.shape[1]
        logits = model.lm_head(hidden[:, start : start + width]).float() / temperature
        banned = torch.softmax(logits, dim=-1)[..., banned_token_ids(model.config)].sum(-1) * batch.response_mask
    return logp, banned
