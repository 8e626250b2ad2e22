"""The ``hf:<path>`` evaluation policy: a local transformers checkpoint, batched generation.

The model and processor come from ``learner.models.load_policy``, the one way this project
loads a policy: the learner's exported checkpoints, any saved Qwen2-VL-family model, or
``hf:tiny`` (the built-in tiny random-weight model, for smoke tests). torch and
transformers are imported only when such a policy is built.

Importing this module registers the ``hf:`` kind with ``bridges.policies.register_policy``:
bridges sits below the learner and never imports it (``tests/test_layers.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bridges.policies import Observation, Policy, register_policy
from bridges.torch_io import images_to_numpy
from jaxgym.core import Env


class HFPolicy(Policy):
    """Generates one response per board with a local vision-language model.

    Args:
        path: a checkpoint directory (or ``"tiny"``), as ``learner.models.load_policy`` takes.
        max_new_tokens: generation budget per response.
        temperature: 0 for greedy decoding, else sampling at this temperature (seeded from
            the evaluation's key, so runs are reproducible).
        batch_size: boards per ``generate`` call.
        dtype: ``None`` (the checkpoint's), ``"bf16"`` or ``"fp32"``.
        device: a torch device (default: CUDA if available, else CPU).
    """

    def __init__(
        self,
        path: str,
        *,
        max_new_tokens: int = 1024,
        temperature: float = 0.0,
        batch_size: int = 8,
        dtype: Any = None,
        device: str | None = None,
    ):
        import torch

        from learner.models import load_policy
        from learner.rollout import HFRolloutEngine, SamplingParams

        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        # Sampling settings are checked (by SamplingParams) before the model is loaded.
        self.sampling = SamplingParams(temperature=float(temperature), max_new_tokens=int(max_new_tokens))
        self.model, self.processor = load_policy(path, dtype=dtype)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        # The learner's rollout engine owns generation (neutral sampling settings, banned
        # vision tokens, stop tokens), so evaluation samples what training samples.
        self.engine = HFRolloutEngine(self.model, self.processor)
        self.batch_size = int(batch_size)
        self.name = f"hf-{str(path).rstrip('/').split('/')[-1]}"

    def generate(self, images: Sequence[Any] | Any, prompts: list[str], seed: int = 0) -> list[str]:
        """Responses for images (``(H, W, 3)`` uint8 boards: a list, or a numpy or JAX batch)
        and prompts, ``batch_size`` at a time."""
        import torch

        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            # manual_seed seeds every device: fork the GPU's generator too, so it is restored.
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed(seed + start)
                generation = self.engine.generate(
                    prompts[start : start + self.batch_size],
                    # A slice of a JAX batch stays on its device: the engine turns it into
                    # patches in JAX (learner.batching.encode_prompts) where the processor allows.
                    images[start : start + self.batch_size],
                    1,
                    self.sampling,
                    logprobs=False,
                )
            out.extend(generation.texts)
        return out

    def __call__(self, obs: Observation) -> list[str]:
        import jax

        seed = int(np.asarray(jax.random.randint(obs.key, (), 0, 2**31 - 1)))
        images = obs.images if isinstance(obs.images, jax.Array) else images_to_numpy(obs.images)
        return self.generate(images, list(obs.prompts), seed=seed)


def _hf_policy(path: str, env: Env, *, seed: int, model: str | None, max_tokens: int | None = None,
               **options: Any) -> HFPolicy:
    # The evaluator's command line names every model's generation budget max_tokens.
    if max_tokens is not None:
        options.setdefault("max_new_tokens", max_tokens)
    return HFPolicy(path, **options)


register_policy("hf", _hf_policy)
