"""Rendered boards straight to a Qwen2-VL-family model's image inputs, in JAX.

For the Qwen2-VL / Qwen2.5-VL / Qwen3-VL image processors, a board whose sides the processor
would not resize is turned into ``pixel_values`` by three fixed steps: rescale (``x / 255``),
normalise (``(x - mean) / std`` per channel) and a patch permutation (patches of
``patch_size``, grouped ``merge_size x merge_size``, each repeated ``temporal_patch_size``
times). :func:`pixel_values` does them in one jitted JAX call on the whole ``(B, H, W, 3)``
uint8 batch, on whatever device holds it, and :func:`to_torch` hands the result to torch by
DLPack (no copy).

Equality: the rescale and normalisation depend only on a pixel's channel and byte value, so
they are a ``(3, 256)`` table computed once in numpy with the processor's own arithmetic
(``float64`` rescale cast to ``float32``, then ``float32`` ``(x - mean) / std``, as
transformers' PIL backend computes it) from the processor's own ``rescale_factor``,
``image_mean`` and ``image_std``; the JAX side only gathers from that table and permutes.
So the result equals the PIL processor's output bit for bit (the torchvision processor fuses
the two steps and may differ from both in the last fp32 bit).

Fallback: :func:`fallback_reason` says why a processor/size pair cannot take this path (another
processor class, a size the processor would resize, a size not divisible into merged
patches); the caller then runs the HF processor, which stays the reference.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    import torch

SUPPORTED_PROCESSORS = ("Qwen2VLImageProcessor", "Qwen2VLImageProcessorPil", "Qwen2VLImageProcessorFast")
"""Image processor classes whose preprocessing :func:`pixel_values` reproduces (Qwen2-VL,
Qwen2.5-VL and Qwen3-VL all use them, with their own patch size, mean and std)."""


@dataclass(frozen=True)
class PatchLayout:
    """What a Qwen2-VL-family image processor does to a board it does not resize.

    Attributes:
        patch_size, temporal_patch_size, merge_size: the processor's own settings.
        table: ``(3, 256)`` float32, the rescaled and normalised value of each byte per channel.
    """

    patch_size: int
    temporal_patch_size: int
    merge_size: int
    table: np.ndarray

    @property
    def factor(self) -> int:
        """Pixels per merged patch side: board sides must be multiples of it."""
        return self.patch_size * self.merge_size

    def grid(self, height: int, width: int) -> tuple[int, int, int]:
        """``(t, h, w)``: the processor's ``image_grid_thw`` row for one board."""
        return 1, height // self.patch_size, width // self.patch_size

    def key(self) -> tuple[Any, ...]:
        return self.patch_size, self.temporal_patch_size, self.merge_size, self.table.tobytes()


def _size_bounds(image_processor: Any) -> tuple[int | None, int | None]:
    size = getattr(image_processor, "size", None) or {}
    get = size.get if isinstance(size, dict) else (lambda name: getattr(size, name, None))
    shortest = get("shortest_edge") or getattr(image_processor, "min_pixels", None)
    longest = get("longest_edge") or getattr(image_processor, "max_pixels", None)
    return shortest, longest


def _smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    return smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)


def _value_table(image_processor: Any) -> np.ndarray:
    """``(3, 256)`` float32: each byte of each channel through the processor's rescale and
    normalisation, in its own arithmetic (transformers' ``rescale`` multiplies in float64 and
    casts to float32; ``normalize`` subtracts and divides in float32)."""
    values = np.arange(256, dtype=np.uint8)
    table = np.empty((3, 256), dtype=np.float32)
    for channel in range(3):
        column = values.astype(np.float32)
        if getattr(image_processor, "do_rescale", True):
            column = (values.astype(np.float64) * float(image_processor.rescale_factor)).astype(np.float32)
        if getattr(image_processor, "do_normalize", True):
            mean, std = (np.broadcast_to(np.asarray(v, dtype=np.float64), (3,))
                         for v in (image_processor.image_mean, image_processor.image_std))
            column = (column - np.float32(mean[channel])) / np.float32(std[channel])
        table[channel] = column
    return table


def fallback_reason(image_processor: Any, height: int, width: int) -> str | None:
    """Why boards of ``height x width`` must go through the HF processor, or ``None`` when
    :func:`pixel_values` reproduces it.

    >>> from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    >>> processor = Qwen2VLImageProcessorPil()
    >>> fallback_reason(processor, 112, 112) is None
    True
    >>> fallback_reason(processor, 100, 112)
    'the processor resizes 100x112 boards to 112x112'
    """
    name = type(image_processor).__name__
    if name not in SUPPORTED_PROCESSORS:
        return f"{name} is not a Qwen2-VL-family image processor ({', '.join(SUPPORTED_PROCESSORS)})"
    patch, merge = int(image_processor.patch_size), int(image_processor.merge_size)
    factor = patch * merge
    if getattr(image_processor, "do_resize", True):
        shortest, longest = _size_bounds(image_processor)
        if not shortest or not longest:
            return f"the processor's size {getattr(image_processor, 'size', None)!r} has no pixel bounds"
        try:
            resized = _smart_resize(height, width, factor, int(shortest), int(longest))
        except ValueError as error:
            return f"the processor rejects {height}x{width} boards ({error})"
        if resized != (height, width):
            return f"the processor resizes {height}x{width} boards to {resized[0]}x{resized[1]}"
    elif height % factor or width % factor:
        return f"{height}x{width} is not a multiple of {factor} (patch {patch} x merge {merge}) per side"
    return None


def patch_layout(image_processor: Any, height: int, width: int) -> PatchLayout | None:
    """The :class:`PatchLayout` of ``image_processor`` for ``height x width`` boards, or
    ``None`` where :func:`fallback_reason` gives a reason."""
    if fallback_reason(image_processor, height, width) is not None:
        return None
    return PatchLayout(int(image_processor.patch_size), int(image_processor.temporal_patch_size),
                       int(image_processor.merge_size), _value_table(image_processor))


def _patchify(images: jax.Array, table: jax.Array, patch: int, temporal: int, merge: int) -> jax.Array:
    batch, height, width, channels = images.shape
    grid_h, grid_w = height // patch, width // patch
    # The permutation first on bytes (a quarter of the float traffic), the table gather after.
    blocks = images.reshape(batch, grid_h // merge, merge, patch, grid_w // merge, merge, patch, channels)
    # (B, gh/m, gw/m, mh, mw, C, ph, pw): the processor's (gh, gw, mh, mw, C, ph, pw) per board.
    blocks = blocks.transpose(0, 1, 4, 2, 5, 7, 3, 6)
    channel = jnp.arange(channels, dtype=jnp.int32)[:, None, None]
    values = table[channel, blocks.astype(jnp.int32)]
    values = jnp.broadcast_to(values[..., None, :, :], (*values.shape[:-2], temporal, patch, patch))
    return values.reshape(batch * grid_h * grid_w, channels * temporal * patch * patch)


@functools.lru_cache(maxsize=32)
def _compiled(key: tuple[Any, ...]) -> Any:
    patch, temporal, merge, table_bytes = key
    table = np.frombuffer(table_bytes, dtype=np.float32).reshape(3, 256)
    return jax.jit(lambda images: _patchify(images, jnp.asarray(table), patch, temporal, merge))


def pixel_values(images: jax.Array | np.ndarray, layout: PatchLayout) -> tuple[jax.Array, np.ndarray]:
    """``(pixel_values, image_grid_thw)`` of a ``(B, H, W, 3)`` uint8 batch, as the processor
    of ``layout`` gives them: ``(B * h * w, 3 * t * p * p)`` float32 patches (board after
    board, on the batch's device) and ``(B, 3)`` int64 grids.

    Raises ``ValueError`` for another shape or dtype, or sides that are not multiples of the
    layout's ``patch_size * merge_size``.
    """
    shape, dtype = np.shape(images), getattr(images, "dtype", None)
    if len(shape) != 4 or shape[-1] != 3 or np.dtype(dtype) != np.uint8:
        raise ValueError(f"expected a uint8 batch of shape (B, H, W, 3), got shape {shape} dtype {dtype}")
    height, width = shape[1], shape[2]
    if height % layout.factor or width % layout.factor:
        raise ValueError(
            f"{height}x{width} boards are not a multiple of {layout.factor} (patch {layout.patch_size} x merge "
            f"{layout.merge_size}) per side; render them at such a size or use the HF processor"
        )
    patches = _compiled(layout.key())(jnp.asarray(images))
    grid = np.tile(np.asarray(layout.grid(height, width), dtype=np.int64), (shape[0], 1))
    return patches, grid


def to_torch(array: jax.Array) -> torch.Tensor:
    """A torch tensor sharing ``array``'s buffer (DLPack, zero-copy for float32 and uint8).

    Never modify it in place: JAX assumes its buffers are immutable (see ``bridges.torch_io``)."""
    import torch

    return torch.from_dlpack(array)


def image_tokens(layout: PatchLayout, height: int, width: int) -> int:
    """The number of image placeholder tokens the processor puts in place of one board's
    ``<|image_pad|>``: one per merged patch.

    >>> image_tokens(PatchLayout(14, 2, 2, np.zeros((3, 256), np.float32)), 448, 448)
    256
    """
    return math.prod(layout.grid(height, width)) // layout.merge_size**2
