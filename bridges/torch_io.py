"""Rendered boards to model inputs: torch tensors (zero-copy), PIL images, numpy arrays.

    images = jax.jit(jax.vmap(env.render))(states)     # (B, H, W, 3) uint8 JAX array
    pixels = images_to_torch(images)                    # torch.uint8, shares JAX's buffer
    pils = images_to_pil(images)                        # for HF processors
    prompts = prompts_for(env, len(pils))

.. warning::
    ``images_to_torch`` returns a tensor that ALIASES the JAX buffer (DLPack, no copy).
    JAX assumes its arrays are immutable and may reuse or share the buffer, so never
    modify that tensor in place (``t.div_(255)``, ``t[0] = 0``, ``out=t``, ...): do
    ``t.float() / 255`` (a new tensor), or ask for ``copy=True``. ``images_to_numpy`` is
    read-only for the same reason (numpy enforces it).

torch is imported lazily: ``bridges`` works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import numpy as np

import renderers  # noqa: F401  (registers the games' renderers: this module renders boards)
from jaxgym.core import Env

if TYPE_CHECKING:
    import PIL.Image
    import torch


def _check_images(images: Any) -> None:
    shape, dtype = np.shape(images), getattr(images, "dtype", None)
    if len(shape) not in (3, 4) or shape[-1] != 3 or np.dtype(dtype) != np.uint8:
        raise ValueError(
            f"expected uint8 images of shape (B, H, W, 3) or (H, W, 3), got shape {shape} dtype {dtype}"
        )


def images_to_torch(
    images: jax.Array | np.ndarray, *, channels_first: bool = False, copy: bool = False
) -> torch.Tensor:
    """A torch uint8 tensor of the images, zero-copy by DLPack for a JAX array.

    Args:
        images: ``(B, H, W, 3)`` (or ``(H, W, 3)``) uint8, a JAX array (aliased) or a numpy
            array (aliased by ``torch.from_numpy``).
        channels_first: return the ``(B, 3, H, W)`` view (a permutation of the same memory:
            still zero-copy, not contiguous).
        copy: return a tensor that owns its memory (safe to modify in place).

    Returns:
        A tensor sharing the input's buffer unless ``copy``. NEVER modify it in place
        (see the module warning): JAX's buffer would change under it.
    """
    import torch

    _check_images(images)
    if isinstance(images, jax.Array):
        tensor = torch.from_dlpack(images)
    else:
        array = np.asarray(images)
        if not array.flags.writeable:
            # torch warns on read-only numpy memory; a copy is the honest answer there.
            array = array.copy()
        tensor = torch.from_numpy(array)
    if copy:
        tensor = tensor.clone()
    if channels_first:
        tensor = tensor.movedim(-1, -3)
    return tensor


def images_to_numpy(images: Any) -> np.ndarray:
    """The images as a read-only numpy uint8 array (no copy for a JAX array on the CPU)."""
    _check_images(images)
    array = np.asarray(images)
    if array.flags.writeable and isinstance(images, jax.Array):
        array.flags.writeable = False
    return array


def images_to_pil(images: Any) -> list[PIL.Image.Image]:
    """One RGB PIL image per board of a ``(B, H, W, 3)`` batch (or a one-image list for
    ``(H, W, 3)``). PIL copies the pixels, so the images are independent of JAX."""
    from PIL import Image

    array = images_to_numpy(images)
    if array.ndim == 3:
        array = array[None]
    return [Image.fromarray(np.ascontiguousarray(image)) for image in array]


def prompts_for(env: Env, batch_size: int) -> list[str]:
    """The game's prompt for each of ``batch_size`` boards (every board of a game shares it)."""
    return [env.prompt()] * int(batch_size)
