"""Log-probs of response tokens for a vision-language batch, without a full-vocabulary
fp32 log-softmax over the whole sequence.

A :class:`PolicyBatch` holds ``B`` sequences laid out as ``[left-padded prompt | right-padded
response]``: the prompt (with its image placeholders) ends at column ``P`` for every row, so
the response tokens are the fixed slice ``P:P+T`` and the hidden states that predict them are
``P-1:P+T-1``. :func:`response_logprobs` runs the model body once (the vision tower exactly
once per call, which ZeRO-3 needs), keeps only the hidden states at real response tokens,
and applies the LM head to them in chunks: each chunk's fp32 logits live only inside that
chunk (and are recomputed in the backward pass, not stored), so memory is
``chunk_tokens x vocab`` instead of ``B x (P+T) x vocab``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint


@dataclass
class PolicyBatch:
    """Sequences ``[left-padded prompt | right-padded response]`` and their images.

    Attributes:
        input_ids: ``(B, P + T)`` int64.
        attention_mask: ``(B, P + T)`` int64, 0 on padding (both sides).
        response_mask: ``(B, T)`` float32, 1 on generated tokens (the stop token included).
        pixel_values: ``(num_patches, patch_dim)`` the images' patches, in row order.
        image_grid_thw: ``(num_images, 3)`` int64, one image per row.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor

    @property
    def prompt_length(self) -> int:
        return self.input_ids.shape[1] - self.response_mask.shape[1]

    @property
    def response_ids(self) -> torch.Tensor:
        """``(B, T)`` the response tokens (padding where ``response_mask`` is 0)."""
        return self.input_ids[:, self.prompt_length :]

    def to(self, device: Any) -> PolicyBatch:
        return PolicyBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def rope_position_ids(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      image_grid_thw: torch.Tensor) -> torch.Tensor:
    """``(3, B, L)`` multimodal rotary positions, computed as the model does in ``generate``
    (positions count only unpadded tokens; an image advances them by its grid size)."""
    inner = model.model
    accepted = inspect.signature(inner.get_rope_index).parameters
    kwargs: dict[str, Any] = dict(image_grid_thw=image_grid_thw, attention_mask=attention_mask)
    if "mm_token_type_ids" in accepted:
        # transformers >= 5 takes the modality of every token instead of finding the images.
        config = model.config
        kwargs["mm_token_type_ids"] = (input_ids == config.image_token_id).int() + 2 * (
            input_ids == config.video_token_id
        ).int()
    position_ids, _ = inner.get_rope_index(input_ids, **kwargs)
    return position_ids


def _chunk_logprobs(
    hidden: torch.Tensor, labels: torch.Tensor, head_weight_owner: Any, temperature: float, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = head_weight_owner(hidden).float()
    if temperature != 1.0:
        logits = logits / temperature
    lse = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, labels[:, None]).squeeze(-1) - lse
    if with_entropy:
        with torch.no_grad():
            entropy = lse - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)
    else:
        entropy = torch.zeros_like(lse)
    return logp, entropy


def token_logprobs(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    lm_head: Any,
    *,
    temperature: float = 1.0,
    chunk_tokens: int = 1024,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``log softmax(lm_head(hidden) / temperature)[label]`` and the entropy, chunk by chunk.

    Args:
        hidden: ``(N, H)`` hidden states (one per predicted token).
        labels: ``(N,)`` int64 token ids.
        lm_head: the output projection module.
        chunk_tokens: tokens per chunk; each chunk's fp32 logits are ``chunk_tokens x vocab``.
        with_entropy: also return the entropy (no gradient) for logging.

    Returns:
        ``(N,)`` float32 log-probs (differentiable) and ``(N,)`` float32 entropies (zeros when
        ``with_entropy`` is False).
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens={chunk_tokens} must be >= 1")
    logps, entropies = [], []
    recompute = torch.is_grad_enabled() and hidden.requires_grad
    for start in range(0, hidden.shape[0], chunk_tokens):
        args = (hidden[start : start + chunk_tokens], labels[start : start + chunk_tokens], lm_head, temperature,
                with_entropy)
        if recompute:
            logp, entropy = checkpoint(_chunk_logprobs, *args, use_reentrant=False)
        else:
            logp, entropy = _chunk_logprobs(*args)
        logps.append(logp)
        entropies.append(entropy)
    if not logps:
        empty = hidden.new_zeros((0,), dtype=torch.float32)
        return empty, empty
    return torch.cat(logps), torch.cat(entropies)


def response_logprobs(
    model: Any,
    batch: PolicyBatch,
    *,
    temperature: float = 1.0,
    chunk_tokens: int = 1024,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs (and entropies) of the response tokens of ``batch`` under ``model``.

    Args:
        model: a Qwen2-VL-family ``...ForConditionalGeneration`` (``.model`` and ``.lm_head``).
        batch: see :class:`PolicyBatch`.
        temperature: the sampling temperature the responses were drawn at.

    Returns:
        ``(B, T)`` float32 log-probs and entropies, 0 where ``response_mask`` is 0.
    """
    position_ids = rope_position_ids(model, batch.input_ids, batch.attention_mask, batch.image_grid_thw)
    outputs = model.model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=position_ids,
        pixel_values=batch.pixel_values,
        image_grid_thw=batch.image_grid_thw,
        use_cache=False,
    )
    hidden = outputs.last_hidden_state
    prompt_length, response_length = batch.prompt_length, batch.response_mask.shape[1]
    if prompt_length < 1:
        raise ValueError("every sequence needs a prompt of at least one token before its response")
    predicting = hidden[:, prompt_length - 1 : prompt_length - 1 + response_length]
    keep = batch.response_mask > 0
    logp_flat, entropy_flat = token_logprobs(
        predicting[keep],
        batch.response_ids[keep],
        model.lm_head,
        temperature=temperature,
        chunk_tokens=chunk_tokens,
        with_entropy=with_entropy,
    )
    logp = torch.zeros(keep.shape, dtype=torch.float32, device=hidden.device).masked_scatter(keep, logp_flat)
    entropy = torch.zeros(keep.shape, dtype=torch.float32, device=hidden.device).masked_scatter(keep, entropy_flat)
    return logp, entropy


class PolicyLogprobs(torch.nn.Module):
    """The module handed to DeepSpeed: ``forward(batch) -> (logp, entropy)``.

    Wrapping keeps every parameter access inside one root-module forward, as ZeRO-3's
    parameter prefetching expects; the vision tower runs once per call."""

    def __init__(self, policy: Any, *, temperature: float = 1.0, chunk_tokens: int = 1024):
        super().__init__()
        self.policy = policy
        self.temperature = temperature
        self.chunk_tokens = chunk_tokens

    def forward(self, batch: PolicyBatch, with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        return response_logprobs(
            self.policy, batch, temperature=self.temperature, chunk_tokens=self.chunk_tokens,
            with_entropy=with_entropy,
        )
