"""Rollout engines: sample ``n`` responses per (prompt, image) from the current policy.

The interface (:class:`RolloutEngine`) is what the trainer needs from any engine:

- ``generate(prompts, images, n, sampling) -> Generation``: responses ``i*n .. i*n+n-1``
  belong to prompt ``i``; token ids end with the stop token when the model stopped;
  ``logprobs`` are the engine's own log-probs of the sampled tokens under the policy at
  ``sampling.temperature`` (before top-p/top-k truncation), which the trainer compares
  with its recomputed ones as a health check.
- ``sync_weights(named_tensors)``: load new policy weights, named as in a saved
  checkpoint (``model.layers.*``, ``visual.*``, ``lm_head.*``; see
  ``learner.models.checkpoint_name``), streamed one tensor at a time.
- ``sleep()`` / ``wake_up()``: release and re-acquire accelerator memory between rollout
  phases when the engine shares a GPU with the trainer.

:class:`HFRolloutEngine` runs ``transformers`` ``generate`` on a model object (by default the
training model itself, so ``sync_weights`` has nothing to copy). :class:`VLLMRolloutEngine`
drives a colocated vLLM; it is **untested here**: vLLM cannot run multimodal models on
these CPU-only machines (its Qwen2-VL code needs torchvision), so it is written against
vLLM's documented offline API and must be validated on a GPU before use.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from learner.batching import chat_prompt
from learner.models import banned_token_ids, checkpoint_name


@dataclass(frozen=True)
class SamplingParams:
    """How responses are sampled. ``temperature == 0`` means greedy decoding."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature} must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError(f"top_k={self.top_k} must be >= 0 (0 disables it)")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} must be >= 1")


@dataclass
class Generation:
    """``B * n`` responses; row ``i*n + j`` is the ``j``-th response to prompt ``i``."""

    token_ids: list[list[int]]
    texts: list[str]
    logprobs: list[list[float]]
    finished: list[bool] = field(default_factory=list)  # stopped on a stop token (not cut at the limit)


class RolloutEngine(Protocol):
    def generate(self, prompts: Sequence[str], images: Sequence[np.ndarray], n: int,
                 sampling: SamplingParams) -> Generation: ...

    def sync_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None: ...

    def sleep(self) -> None: ...

    def wake_up(self) -> None: ...


def _stop_ids(model: Any, processor: Any) -> list[int]:
    ids = {processor.tokenizer.convert_tokens_to_ids("<|im_end|>")}
    configured = getattr(model.generation_config, "eos_token_id", None)
    if configured is not None:
        ids.update([configured] if isinstance(configured, int) else configured)
    if processor.tokenizer.eos_token_id is not None:
        ids.add(processor.tokenizer.eos_token_id)
    return sorted(i for i in ids if i is not None and i >= 0)


def truncate_at_stop(tokens: Sequence[int], stop_ids: Iterable[int]) -> tuple[list[int], bool]:
    """The tokens up to and including the first stop token, and whether one was found.

    >>> truncate_at_stop([5, 6, 2, 0, 0], [2])
    ([5, 6, 2], True)
    >>> truncate_at_stop([5, 6], [2])
    ([5, 6], False)
    """
    stops = set(stop_ids)
    for i, token in enumerate(tokens):
        if token in stops:
            return list(tokens[: i + 1]), True
    return list(tokens), False


class HFRolloutEngine:
    """Rollouts with ``transformers`` ``generate`` (the reference engine; CPU-friendly).

    Args:
        model: the policy. Pass the training model itself to share its weights (then
            ``sync_weights`` is a no-op for tensors that already are the model's).
        processor: from ``learner.models``.
        gather: a context-manager factory that makes the full parameters available during
            generation (ZeRO-3's ``GatheredParameters``); ``None`` when they already are.
    """

    def __init__(self, model: Any, processor: Any, *, gather: Callable[[], Any] | None = None):
        self.model = model
        self.processor = processor
        self.gather = gather
        self.banned = banned_token_ids(model.config)
        self.stop_ids = _stop_ids(model, processor)

    def generate(self, prompts: Sequence[str], images: Sequence[np.ndarray], n: int,
                 sampling: SamplingParams, *, logprobs: bool = True) -> Generation:
        """``n`` responses per (prompt, image). With ``logprobs=False`` (evaluation) the
        per-step logits are not kept and ``Generation.logprobs`` is empty lists."""
        if n < 1:
            raise ValueError(f"n={n} must be >= 1")
        texts = [chat_prompt(self.processor, p) for p in prompts for _ in range(n)]
        repeated = [np.asarray(im) for im in images for _ in range(n)]
        inputs = self.processor(text=texts, images=repeated, return_tensors="pt", padding=True,
                                padding_side="left")
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        greedy = sampling.temperature == 0
        kwargs: dict[str, Any] = dict(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not greedy,
            suppress_tokens=self.banned,
            eos_token_id=self.stop_ids,
            pad_token_id=self.processor.tokenizer.pad_token_id,
            output_logits=logprobs,
            return_dict_in_generate=True,
            use_cache=True,
        )
        # Explicit neutral values: transformers fills unset fields from the checkpoint's own
        # generation_config (Qwen2.5-VL ships top_k=1, repetition_penalty=1.05, ...), which
        # would silently sample from another distribution than the one being trained.
        kwargs.update(repetition_penalty=1.0, no_repeat_ngram_size=0, typical_p=1.0, epsilon_cutoff=0.0,
                      eta_cutoff=0.0)
        if not greedy:
            kwargs.update(min_p=0.0, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
        # Greedy ignores the sampling flags, and transformers warns about any that is set (a
        # neutral min_p=0 or top_k=0 included, or the checkpoint's own): none is, for greedy.
        generation_config = self.model.generation_config
        if greedy:
            cleared = copy.deepcopy(generation_config)
            for name in ("temperature", "top_p", "top_k", "min_p"):
                setattr(cleared, name, None)
            self.model.generation_config = cleared
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), (self.gather() if self.gather is not None else contextlib.nullcontext()):
                out = self.model.generate(**inputs, **kwargs)
        finally:
            self.model.train(was_training)
            self.model.generation_config = generation_config
        new_tokens = out.sequences[:, inputs["input_ids"].shape[1] :].cpu()
        if not logprobs:
            token_ids, finished = zip(*(truncate_at_stop(row.tolist(), self.stop_ids) for row in new_tokens))
            texts_out = self.processor.tokenizer.batch_decode(list(token_ids), skip_special_tokens=True)
            return Generation(list(token_ids), texts_out, [[] for _ in token_ids], list(finished))
        # Raw logits (no temperature, no truncation, no ban) -> log-probs at the sampling
        # temperature, as the trainer computes them. One generated position at a time: a
        # stacked fp32 copy of all of them would be (sequences, tokens, vocabulary) large.
        temperature = 1.0 if greedy else sampling.temperature
        picked = torch.stack(
            [
                torch.log_softmax(step_logits.float() / temperature, dim=-1)
                .gather(-1, new_tokens[:, i, None].to(step_logits.device))
                .squeeze(-1)
                .cpu()
                for i, step_logits in enumerate(out.logits)
            ],
            dim=1,
        )
        token_ids, logprobs, finished = [], [], []
        for row in range(new_tokens.shape[0]):
            tokens, stopped = truncate_at_stop(new_tokens[row].tolist(), self.stop_ids)
            token_ids.append(tokens)
            logprobs.append(picked[row, : len(tokens)].tolist())
            finished.append(stopped)
        texts_out = self.processor.tokenizer.batch_decode(token_ids, skip_special_tokens=True)
        return Generation(token_ids, texts_out, logprobs, finished)

    def sync_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy checkpoint-named tensors into the engine's model (skipping those that already
        are its own storage, as when the engine shares the training model)."""
        own = {checkpoint_name(name): p for name, p in self.model.named_parameters()}
        with torch.no_grad():
            for name, tensor in named_tensors:
                if name not in own:
                    raise KeyError(f"sync_weights: the rollout model has no parameter named {name!r}")
                target = own[name]
                if target.data_ptr() != tensor.data_ptr():
                    target.copy_(tensor.to(device=target.device, dtype=target.dtype))

    def sleep(self) -> None:
        """Nothing to release: the model is shared with the trainer."""

    def wake_up(self) -> None:
        """Nothing to re-acquire."""


class VLLMRolloutEngine:
    """A colocated vLLM engine, one per training rank (UNTESTED here: vLLM cannot run
    multimodal models on the CPU-only development machines, see
    ``shared/spec/platform.md``; nothing in this class has been executed).

    Written for vLLM's offline ``LLM`` API (about 0.8-0.11): one image per prompt,
    ``max_pixels`` bounded to the board (vLLM otherwise reserves memory for the largest
    possible image), the multimodal preprocessor cache off (every board is new), the vision
    placeholders banned, the ``external_launcher`` executor so that each rank of a
    ``deepspeed`` launch drives its own engine, and sleep mode so the trainer can use the GPU
    between rollouts. The lifecycle per step is ``wake_up()`` (weights back on the GPU) ->
    ``sync_weights(...)`` (after an update) -> ``generate(...)`` (the KV cache is re-allocated
    on first use) -> ``sleep()``. The weight-update call changed across vLLM releases;
    ``sync_weights`` tries the known ones and says when it finds none. Pin the vLLM version
    and validate on a GPU before relying on it: generate, sync perturbed weights, check that
    the generations change.
    """

    def __init__(
        self,
        model_path: str,
        processor: Any,
        *,
        seed: int = 0,
        dtype: str = "bfloat16",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.5,
        max_model_len: int = 9216,
        max_pixels: int = 448 * 448,
        enable_sleep_mode: bool = True,
        distributed_executor_backend: str | None = "external_launcher",
    ):
        try:
            import vllm
        except ImportError as error:
            raise ImportError(
                "rollout_engine='vllm' needs the vllm package on a GPU machine (pip install vllm); use "
                "rollout_engine='hf' on CPU"
            ) from error
        self._vllm = vllm
        self.processor = processor
        self.enable_sleep_mode = enable_sleep_mode
        kwargs: dict[str, Any] = {}
        if distributed_executor_backend is not None:
            kwargs["distributed_executor_backend"] = distributed_executor_backend
        self.llm = vllm.LLM(
            model=model_path,
            seed=seed,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enable_sleep_mode=enable_sleep_mode,
            limit_mm_per_prompt={"image": 1},
            mm_processor_kwargs={"max_pixels": max_pixels},
            disable_mm_preprocessor_cache=True,
            **kwargs,
        )
        config = self.llm.llm_engine.model_config.hf_config
        self.banned = banned_token_ids(config)
        self._kv_cache_awake = True

    def generate(self, prompts: Sequence[str], images: Sequence[np.ndarray], n: int,
                 sampling: SamplingParams) -> Generation:
        from PIL import Image

        if not self._kv_cache_awake:
            self._wake(["kv_cache"])
            self._kv_cache_awake = True
        requests = [
            {"prompt": chat_prompt(self.processor, p), "multi_modal_data": {"image": Image.fromarray(np.asarray(im))}}
            for p, im in zip(prompts, images, strict=True)
        ]
        params = self._vllm.SamplingParams(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,
            max_tokens=sampling.max_new_tokens,
            logprobs=0,
            logit_bias={token: -100.0 for token in self.banned},
        )
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        token_ids, texts, logprobs, finished = [], [], [], []
        for request in outputs:
            for completion in request.outputs:
                tokens = list(completion.token_ids)
                token_ids.append(tokens)
                texts.append(completion.text)
                logprobs.append([
                    step[token].logprob for step, token in zip(completion.logprobs or [], tokens, strict=False)
                ])
                finished.append(completion.finish_reason == "stop")
        return Generation(token_ids, texts, logprobs, finished)

    def _model(self) -> Any:
        engine = self.llm.llm_engine
        for path in (
            ("model_executor", "driver_worker", "worker", "model_runner", "model"),
            ("model_executor", "driver_worker", "model_runner", "model"),
        ):
            target: Any = engine
            for attr in path:
                target = getattr(target, attr, None)
                if target is None:
                    break
            if target is not None:
                return target
        return None

    def sync_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load checkpoint-named tensors, one at a time (each may be a ZeRO-3 gathered
        parameter that is released as soon as the next one is requested)."""
        model = self._model()
        if model is not None:
            for name, tensor in named_tensors:
                model.load_weights(weights=[(name, tensor)])
            return
        if hasattr(self.llm, "collective_rpc"):
            for name, tensor in named_tensors:
                self.llm.collective_rpc(
                    lambda worker, item=(name, tensor): worker.model_runner.model.load_weights(weights=[item])
                )
            return
        raise RuntimeError(f"this vLLM version ({self._vllm.__version__}) exposes no weight-update path known to "
                           f"VLLMRolloutEngine; pin vLLM to a tested version")

    def _wake(self, tags: list[str] | None) -> None:
        try:
            self.llm.wake_up(tags=tags)
        except TypeError:  # releases before tagged wake-up wake everything at once
            self.llm.wake_up()

    def sleep(self) -> None:
        """Offload the weights to host memory and drop the KV cache (sleep level 1)."""
        if self.enable_sleep_mode:
            self.llm.sleep(level=1)
            self._kv_cache_awake = False

    def wake_up(self) -> None:
        """Bring the weights back (the KV cache follows on the next ``generate``)."""
        if self.enable_sleep_mode:
            self._wake(["weights"])
