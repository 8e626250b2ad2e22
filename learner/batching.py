"""Prompts with board images -> token ids and patches; rollouts -> :class:`PolicyBatch`.

The prompts of one step are encoded once (:func:`encode_prompts`): the chat template puts
one image before the game's instructions, the processor expands it into one
``<|image_pad|>`` per merged patch. Each training sequence points at its prompt (its state)
and carries its response tokens; :func:`collate` lays a set of them out as
``[left-padded prompt | right-padded response]`` with their images' patches in row order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from learner.logprobs import PolicyBatch


def chat_prompt(processor: Any, text: str) -> str:
    """The chat-formatted prompt text: one user turn with an image then ``text``, and the
    opening of the assistant's turn."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


@dataclass
class EncodedPrompts:
    """``S`` prompts, each with one image.

    Attributes:
        token_ids: ``S`` lists of prompt token ids (unpadded).
        pixel_values: ``(num_patches, patch_dim)`` float32, the images' patches in order.
        image_grid_thw: ``(S, 3)`` int64.
    """

    token_ids: list[list[int]]
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor

    def __post_init__(self) -> None:
        sizes = self.image_grid_thw.prod(dim=-1)
        ends = torch.cumsum(sizes, 0)
        self._patch_slices = [(int(e - s), int(e)) for s, e in zip(sizes, ends, strict=True)]

    def __len__(self) -> int:
        return len(self.token_ids)

    def patches(self, index: int) -> torch.Tensor:
        start, end = self._patch_slices[index]
        return self.pixel_values[start:end]


def encode_prompts(processor: Any, texts: Sequence[str], images: Sequence[np.ndarray] | np.ndarray | Any,
                   *, max_prompt_tokens: int | None = None) -> EncodedPrompts:
    """Encode chat prompts (from :func:`chat_prompt`) with their ``(H, W, 3)`` uint8 images
    (a list, or one ``(B, H, W, 3)`` numpy or JAX batch).

    Boards the Qwen2-VL-family image processor would not resize become patches in one jitted
    JAX call (``bridges.model_inputs``: equal to the processor's output, handed to torch by
    DLPack); anything else goes through ``processor`` itself.

    Raises ``ValueError`` if a prompt is longer than ``max_prompt_tokens`` (images cannot be
    truncated: raise the limit or render smaller boards)."""
    if len(texts) != len(images):
        raise ValueError(f"got {len(texts)} prompts but {len(images)} images; give one image per prompt")
    encoded = _encode_in_jax(processor, texts, images)
    if encoded is None:
        encoded = processor(text=list(texts), images=[np.asarray(im) for im in images], return_tensors="pt",
                            padding=True, padding_side="left")
    mask = encoded["attention_mask"].bool()
    token_ids = [row[m].tolist() for row, m in zip(encoded["input_ids"], mask, strict=True)]
    longest = max((len(t) for t in token_ids), default=0)
    if max_prompt_tokens is not None and longest > max_prompt_tokens:
        raise ValueError(
            f"a prompt has {longest} tokens (image tokens included), more than max_prompt_tokens="
            f"{max_prompt_tokens}; raise max_prompt_tokens or render smaller boards"
        )
    return EncodedPrompts(token_ids, encoded["pixel_values"].float(), encoded["image_grid_thw"].long())


JAX_PIXELS = True
"""Whether :func:`encode_prompts` computes patches in JAX where it can (``False``: always the
HF processor; for before/after benchmarks such as ``benchmarks/grpo_step.py``)."""


def _uniform_batch(images: Any) -> Any:
    """``images`` as one ``(B, H, W, 3)`` uint8 array (JAX arrays stay on their device), or
    ``None`` when the boards differ in size or type."""
    import jax

    if isinstance(images, (jax.Array, np.ndarray)):
        return images if images.ndim == 4 and images.shape[-1] == 3 and images.dtype == np.uint8 else None
    boards = [np.asarray(im) for im in images]
    if not boards or any(b.shape != boards[0].shape or b.dtype != np.uint8 or b.ndim != 3 or b.shape[-1] != 3
                         for b in boards):
        return None
    return np.stack(boards)


def _encode_in_jax(processor: Any, texts: Sequence[str], images: Any) -> dict[str, torch.Tensor] | None:
    """What ``processor(text=texts, images=images, padding_side="left")`` returns, with the
    patches computed in JAX (``bridges.model_inputs``) and only the texts through the
    tokenizer; ``None`` where the JAX path does not reproduce the processor (its reason:
    ``bridges.model_inputs.fallback_reason``), or a prompt does not hold exactly one image
    placeholder."""
    from bridges.model_inputs import image_tokens, patch_layout, pixel_values, to_torch

    image_processor = getattr(processor, "image_processor", None)
    image_token = getattr(processor, "image_token", None)
    batch = _uniform_batch(images) if JAX_PIXELS and image_processor is not None and image_token else None
    if batch is None or len(batch) == 0 or any(t.count(image_token) != 1 for t in texts):
        return None
    height, width = int(batch.shape[1]), int(batch.shape[2])
    layout = patch_layout(image_processor, height, width)
    if layout is None:
        return None
    patches, grid = pixel_values(batch, layout)
    expanded = [t.replace(image_token, image_token * image_tokens(layout, height, width)) for t in texts]
    encoded = dict(processor.tokenizer(expanded, return_tensors="pt", padding=True, padding_side="left"))
    encoded["pixel_values"] = to_torch(patches)
    encoded["image_grid_thw"] = torch.from_numpy(grid)
    return encoded


def collate(
    prompts: EncodedPrompts,
    prompt_index: Sequence[int],
    responses: Sequence[Sequence[int]],
    *,
    pad_token_id: int,
) -> PolicyBatch:
    """A :class:`PolicyBatch` of the sequences ``prompts[prompt_index[i]] + responses[i]``.

    Prompts are left-padded and responses right-padded to the longest in this batch (the
    log-probs do not depend on the padding). An empty response gets one masked pad token so
    that every row has a response column."""
    if len(prompt_index) != len(responses):
        raise ValueError(f"got {len(prompt_index)} prompt indices but {len(responses)} responses")
    rows = len(responses)
    prompt_len = max(len(prompts.token_ids[i]) for i in prompt_index)
    response_len = max(1, max((len(r) for r in responses), default=1))
    input_ids = torch.full((rows, prompt_len + response_len), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((rows, prompt_len + response_len), dtype=torch.long)
    response_mask = torch.zeros((rows, response_len), dtype=torch.float32)
    for row, (p, response) in enumerate(zip(prompt_index, responses, strict=True)):
        prompt = prompts.token_ids[p]
        input_ids[row, prompt_len - len(prompt) : prompt_len] = torch.tensor(prompt, dtype=torch.long)
        attention_mask[row, prompt_len - len(prompt) : prompt_len + len(response)] = 1
        if len(response):
            input_ids[row, prompt_len : prompt_len + len(response)] = torch.tensor(list(response), dtype=torch.long)
            response_mask[row, : len(response)] = 1.0
    pixel_values = torch.cat([prompts.patches(p) for p in prompt_index])
    image_grid_thw = prompts.image_grid_thw[list(prompt_index)]
    return PolicyBatch(input_ids, attention_mask, response_mask, pixel_values, image_grid_thw)


def format_token_budget(env: Any, tokenizer: Any, *, margin: float = 1.25, extra: int = 16) -> int:
    """Response tokens the protocol's format needs on ``env``: the token count of a cold-start
    target (exact perception of a fresh board, reasoning line, answer) times ``margin`` plus
    ``extra``. A fresh board is the longest perception of the tile games; 2048's cells are one
    token whether empty or not."""
    import jax

    from bridges.teachers import target_text

    state = env.reset(jax.random.key(0))
    action = int(np.argmax(np.asarray(state.legal_action_mask)))
    text = target_text(env, jax.device_get(state), action, 131072.0)
    return int(np.ceil(len(tokenizer(text, add_special_tokens=False)["input_ids"]) * margin)) + extra
