"""The training engine: DeepSpeed (ZeRO stage 0-3, fp32 or bf16, gradient checkpointing,
gradient clipping) around :class:`learner.logprobs.PolicyLogprobs`.

One process on a CPU (gloo, no compiled DeepSpeed ops: the torch AdamW optimizer and,
for a single rank, no shared-memory communication op) or one process per GPU under the
``deepspeed`` launcher (nccl). DeepSpeed is imported lazily, when an engine is built.

Gradient accumulation is driven by the caller: :meth:`TrainingEngine.backward` takes
``last=True`` on the final micro-batch of an optimizer step, then :meth:`step` applies
the update. The number of micro-batches may change from step to step (groups dropped for
zero variance), which DeepSpeed's fixed ``gradient_accumulation_steps`` could not express.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from learner.checkpoint import CheckpointError, safe_torch_load
from learner.config import PRECISIONS, ZERO_STAGES  # the option tuples live with the config
from learner.logprobs import PolicyBatch, PolicyLogprobs
from learner.models import checkpoint_name, export_policy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def single_process_env() -> None:
    """Without a launcher (no ``RANK`` in the environment), describe a single process: rank 0
    of 1 on a free local port, as ``torch.distributed``'s ``env://`` (and vLLM's
    ``external_launcher``) read it."""
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()))


def init_distributed() -> tuple[int, int, int]:
    """Initialise torch.distributed through DeepSpeed if it is not yet; returns
    ``(rank, local_rank, world_size)``. Without a launcher this is a single process over
    gloo on a free local port."""
    import torch.distributed as dist

    single_process_env()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        import deepspeed

        if not torch.cuda.is_available():
            # The CPU accelerator JIT-compiles a shared-memory all-reduce op (30-80 s); without
            # it DeepSpeed falls back to gloo's all-reduce, which is all a CPU run needs.
            importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo", verbose=False)
    return dist.get_rank(), local_rank, dist.get_world_size()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced elementwise (``op`` ``"sum"`` or ``"max"``) over the data-parallel
    ranks, on the tensor's own device (identity for one rank). NCCL reduces on the GPU, so the
    tensor travels through the current CUDA device when there is one."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return tensor
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    reduced = tensor.to(device)
    dist.all_reduce(reduced, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return reduced.to(tensor.device)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over the data-parallel ranks (identity for one rank)."""
    return all_reduce(tensor, "sum")


def all_reduce_max(value: int) -> int:
    """The largest ``value`` of any data-parallel rank."""
    return int(all_reduce(torch.tensor([value]), "max").item())


def deepspeed_config(*, zero_stage: int, precision: str, grad_clip: float, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config dict: one micro-batch per engine call (the caller accumulates)."""
    if zero_stage not in ZERO_STAGES:
        raise ValueError(f"zero_stage={zero_stage} is not supported; allowed: {ZERO_STAGES}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not supported; allowed: {', '.join(PRECISIONS)}")
    zero: dict[str, Any] = {"stage": zero_stage}
    if zero_stage == 3:
        # Small tensors (norms, biases) stay whole on every rank: gathering them costs more
        # than it saves. The 16-bit gather on save lets DeepSpeed's own exporters work too.
        zero.update(stage3_gather_16bit_weights_on_model_save=True, stage3_prefetch_bucket_size=5e7,
                    stage3_param_persistence_threshold=1e5)
    if zero_stage in (2, 3):
        zero.update(overlap_comm=torch.cuda.is_available(), contiguous_gradients=True)
    return {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "train_batch_size": world_size,
        "gradient_clipping": grad_clip if grad_clip > 0 else 0.0,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def warmup_then_cosine(warmup_steps: int, total_steps: int = 0, min_lr_ratio: float = 1.0) -> Any:
    """Multiplier of the learning rate: linear warm-up over ``warmup_steps``, then a cosine from 1
    down to ``min_lr_ratio`` at ``total_steps`` (``min_lr_ratio`` 1: constant after warm-up).

    >>> f = warmup_then_cosine(2, total_steps=10, min_lr_ratio=0.5)
    >>> [round(f(s), 3) for s in (0, 1, 2, 6, 10, 20)]
    [0.5, 1.0, 1.0, 0.75, 0.5, 0.5]
    """
    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if min_lr_ratio == 1.0 or total_steps <= warmup_steps:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class TrainingEngine:
    """A DeepSpeed engine over the policy, with the reference model if one is needed.

    Args:
        policy: the HF model to train (on CPU; DeepSpeed moves it to this rank's device).
        zero_stage, precision, grad_clip: see ``deepspeed_config``.
        lr, weight_decay, betas, eps, warmup_steps: AdamW with constant LR after warm-up, or a cosine
            down to ``lr * min_lr_ratio`` at ``total_steps``.
        gradient_checkpointing: recompute decoder (and vision) layers in the backward pass.
        temperature: the sampling temperature (log-probs are of the sampling distribution).
        chunk_tokens: LM-head chunk size for log-probs.
        reference: a frozen copy of the initial policy for the KL term, or ``None``.
    """

    def __init__(
        self,
        policy: Any,
        *,
        zero_stage: int = 0,
        precision: str = "fp32",
        lr: float = 1e-6,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        warmup_steps: int = 0,
        total_steps: int = 0,
        min_lr_ratio: float = 1.0,
        grad_clip: float = 1.0,
        gradient_checkpointing: bool = False,
        temperature: float = 1.0,
        chunk_tokens: int = 1024,
        reference: Any = None,
    ):
        import deepspeed

        self.rank, self.local_rank, self.world_size = init_distributed()
        self.zero_stage, self.precision = zero_stage, precision
        config = deepspeed_config(zero_stage=zero_stage, precision=precision, grad_clip=grad_clip,
                                  world_size=self.world_size)
        if gradient_checkpointing:
            policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            policy.config.use_cache = False
        module = PolicyLogprobs(policy, temperature=temperature, chunk_tokens=chunk_tokens)
        module.train()
        params = [p for p in module.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=lr, betas=betas, eps=eps, foreach=False,
        )
        schedule = warmup_then_cosine(warmup_steps, total_steps, min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=module, optimizer=optimizer, lr_scheduler=scheduler, config=config
        )
        self.device = self.engine.device
        # DeepSpeed's own loader unpickles anything (weights_only=False): a crafted file could run code.
        self.engine.checkpoint_engine.load = safe_torch_load
        self.reference = None
        if reference is not None:
            self.reference = self._reference_engine(reference, temperature, chunk_tokens, config)
        self._micro_batches = 0

    def _reference_engine(self, reference: Any, temperature: float, chunk_tokens: int, config: dict) -> Any:
        import deepspeed

        for p in reference.parameters():
            p.requires_grad_(False)
        module = PolicyLogprobs(reference, temperature=temperature, chunk_tokens=chunk_tokens).eval()
        unused = ("gradient_clipping", "zero_allow_untested_optimizer")
        ref_config = {k: v for k, v in config.items() if k not in unused}
        # Inference only: ZeRO-3 shards the reference like the policy; below that a plain copy.
        ref_config["zero_optimization"] = {"stage": 3 if self.zero_stage == 3 else 0}
        engine, *_ = deepspeed.initialize(model=module, config=ref_config)
        engine.eval()
        return engine

    @property
    def policy(self) -> Any:
        """The HF model being trained (partitioned under ZeRO-3)."""
        return self.engine.module.policy

    def logprobs(self, batch: PolicyBatch, *, with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs (differentiable when grad is enabled) and entropies of ``batch``'s response."""
        return self.engine(batch.to(self.device), with_entropy=with_entropy)

    @torch.no_grad()
    def reference_logprobs(self, batch: PolicyBatch) -> torch.Tensor:
        if self.reference is None:
            raise RuntimeError("no reference model was loaded (kl_coef is 0)")
        logp, _ = self.reference(batch.to(self.device))
        return logp

    def backward(self, loss: torch.Tensor, *, last: bool) -> None:
        """Accumulate the gradient of ``loss``; ``last`` marks the step's final micro-batch."""
        self.engine.set_gradient_accumulation_boundary(last)
        self.engine.backward(loss, scale_wrt_gas=False)
        self._micro_batches += 1

    def step(self) -> float:
        """Clip, apply the optimizer and the scheduler; returns the gradient norm (before clipping)."""
        if self._micro_batches == 0:
            raise RuntimeError("step() without any backward() since the last step")
        norm = None
        if self.zero_stage == 0:
            # DeepSpeed keeps no norm for a plain torch optimizer: measure it (gradients are
            # already averaged over ranks) and let DeepSpeed clip.
            grads = [p.grad for p in self.engine.module.parameters() if p.grad is not None]
            norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))
        self.engine.step()
        self._micro_batches = 0
        if norm is None:
            value = self.engine.get_global_grad_norm()
            norm = float(value) if value is not None else float("nan")
        return norm

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @contextlib.contextmanager
    def gathered(self) -> Iterator[None]:
        """Full (unpartitioned) parameters inside the block, e.g. for HF generation under ZeRO-3."""
        if self.zero_stage != 3:
            yield
            return
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(self.policy.parameters())):
            yield

    def named_checkpoint_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The policy's parameters one at a time, under their checkpoint names (what vLLM and
        ``from_pretrained`` load); each is gathered only while it is being consumed."""
        for name, param in self.policy.named_parameters():
            if self.zero_stage == 3:
                import deepspeed

                with deepspeed.zero.GatheredParameters([param]):
                    yield checkpoint_name(name), param.data
            else:
                yield checkpoint_name(name), param.data

    def save(self, directory: str | os.PathLike, client_state: dict[str, Any]) -> None:
        """Model, optimizer, scheduler and ``client_state`` (collective: call on every rank)."""
        self.engine.save_checkpoint(str(directory), tag="state", client_state=client_state)

    def load(self, directory: str | os.PathLike) -> dict[str, Any]:
        """Restore what :meth:`save` wrote; an unsafe, corrupt or mismatched checkpoint raises
        :class:`learner.checkpoint.CheckpointError` naming it."""
        try:
            path, client_state = self.engine.load_checkpoint(str(directory), tag="state", load_optimizer_states=True,
                                                             load_lr_scheduler_states=True)
        except CheckpointError:
            raise
        except (KeyError, RuntimeError, AssertionError, TypeError, ValueError, IndexError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise CheckpointError(f"DeepSpeed cannot restore the checkpoint in {str(directory)!r} (corrupt, or saved "
                                  f"with another model or ZeRO stage): {type(error).__name__}: {first}") from None
        if path is None:
            raise CheckpointError(f"no DeepSpeed checkpoint found in {str(directory)!r}")
        return client_state

    def export(self, directory: str | os.PathLike, processor: Any) -> Path | None:
        """Write the policy for ``from_pretrained`` (collective; rank 0 writes)."""
        state_dict = None
        if self.zero_stage == 3:
            full = self.engine._zero3_consolidated_16bit_state_dict()
            if full is not None:
                state_dict = {k.removeprefix("policy."): v for k, v in full.items()}
        if self.rank != 0:
            return None
        return export_policy(self.policy, processor, directory, state_dict=state_dict)
