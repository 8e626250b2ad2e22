"""Checkpoint files that are safe to load and complete when they are found.

A checkpoint directory ``checkpoints/step_000025/`` holds::

    state/               DeepSpeed's model, optimizer and scheduler files (torch zip files)
    rng_rank<r>.json     every RNG state of data-parallel rank r (JSON: no code can hide in it)
    checkpoint.json      the manifest, written last: step, ranks, config, every file's size and sha256

Safety: nothing is unpickled. The RNG states are JSON, and DeepSpeed's ``.pt`` files are
read with ``torch.load(weights_only=True)`` allowing only the few DeepSpeed classes its
optimizer files name (``DEEPSPEED_SAFE_GLOBALS``); a file naming anything else is refused
before any of it runs.

Completeness: a checkpoint is written into ``.step_000025.partial/`` and renamed to
``step_000025/`` after its manifest is in place, so a process killed mid-write leaves
only a partial directory that no resume looks at. On load the manifest's sizes and content
hashes are checked (one flipped byte in a weight file is found before anything loads), and a
run directory's newest intact checkpoint is used, with a warning naming each newer one that
is skipped and its changed file.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CHECKPOINTS = "checkpoints"
MANIFEST = "checkpoint.json"
FORMAT_VERSION = 1
PARTIAL_SUFFIX = ".partial"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: incomplete, corrupt, unsafe or of another run."""


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers see the old
    file or the new one, never a truncated one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# -- safe torch loading ----------------------------------------------------------------------

def deepspeed_safe_globals() -> list[Any]:
    """The non-tensor classes DeepSpeed's ZeRO optimizer files name (plain data classes and
    enums; measured with ``torch.serialization.get_unsafe_globals_in_checkpoint``)."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [ZeroStageEnum, fragment_address, LossScaler, DynamicLossScaler]


def safe_torch_load(path: str | os.PathLike, map_location: Any = None) -> Any:
    """``torch.load`` that unpickles nothing but tensors, containers and the allowed DeepSpeed
    classes; anything else raises :class:`CheckpointError` naming the file."""
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(deepspeed_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"refusing to load {os.fspath(path)}: it holds objects other than tensors and plain "
                              f"data, so it may run code ({first})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{os.fspath(path)} is not a readable checkpoint file (corrupt or truncated?): "
                              f"{error}") from None


# -- RNG states as JSON ------------------------------------------------------------------------

def rng_state(sampler_state: dict[str, Any], score_key: np.ndarray) -> dict[str, Any]:
    """Every RNG of this process as JSON-able data."""
    import torch

    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state().tolist(),
        "cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else None,
        "numpy": [np_name, np.asarray(np_keys).tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "python": [version, list(internal), gauss_next],
        "sampler": sampler_state,
        "score_key": np.asarray(score_key).tolist(),
    }


def set_rng_state(state: dict[str, Any], source: str) -> tuple[dict[str, Any], np.ndarray]:
    """Restore :func:`rng_state`'s output; returns ``(sampler_state, score_key)``. A malformed
    file raises :class:`CheckpointError` naming ``source``."""
    import torch

    try:
        torch_state = torch.tensor(state["torch"], dtype=torch.uint8)
        np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
        numpy_state = (str(np_name), np.asarray(np_keys, dtype=np.uint32), int(np_pos), int(np_has_gauss),
                       float(np_gauss))
        version, internal, gauss_next = state["python"]
        gauss = None if gauss_next is None else float(gauss_next)
        python_state = (int(version), tuple(int(v) for v in internal), gauss)
        cuda = state["cuda"]
        cuda_states = None if cuda is None else [torch.tensor(s, dtype=torch.uint8) for s in cuda]
        sampler, score_key = state["sampler"], np.asarray(state["score_key"], dtype=np.uint32)
        if not isinstance(sampler, dict):
            raise TypeError(f"sampler state is a {type(sampler).__name__}")
        torch.set_rng_state(torch_state)
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as error:
        raise CheckpointError(f"{source} is not a valid RNG state file ({type(error).__name__}: {error})") from None
    if cuda_states is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    return sampler, score_key


def read_json(path: Path) -> Any:
    """A JSON file's value; unreadable or malformed files raise :class:`CheckpointError`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not a readable JSON file ({error})") from None


# -- manifests ---------------------------------------------------------------------------------

def _files(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in chunks (weight files run to gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def partial_dir(checkpoints: Path, name: str) -> Path:
    """Where checkpoint ``name`` is written before it is complete."""
    return checkpoints / f".{name}{PARTIAL_SUFFIX}"


def finish(partial: Path, final: Path, *, step: int, world_size: int, config: dict[str, Any]) -> None:
    """Write ``partial``'s manifest and rename it to ``final`` (rank 0, after every rank wrote)."""
    files = _files(partial)
    manifest = {"format": FORMAT_VERSION, "step": step, "world_size": world_size, "config": config,
                "files": files, "sha256": {name: sha256_of(partial / name) for name in files}}
    write_text_atomic(partial / MANIFEST, json.dumps(manifest, indent=1))
    if final.exists():  # an incomplete or corrupt one of the same step (a resume fell back past it)
        shutil.rmtree(final)
    os.replace(partial, final)


def remove(directory: Path) -> None:
    """Delete a checkpoint, its manifest first, so a kill midway leaves an incomplete one."""
    (directory / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)


def verify(directory: Path) -> dict[str, Any]:
    """The manifest of a complete checkpoint; raises :class:`CheckpointError` saying what is
    wrong (no manifest: the write did not finish; a file missing or of another size)."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        legacy = " (it has rng_rank*.pt files: written by an older version, whose pickled RNG files are not " \
                 "loaded because they could run code)" if any(directory.glob("rng_rank*.pt")) else ""
        raise CheckpointError(f"checkpoint {directory} is incomplete: it has no {MANIFEST}{legacy}")
    manifest = read_json(manifest_path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) \
            or not isinstance(manifest.get("step"), int):
        raise CheckpointError(f"{manifest_path} is not a checkpoint manifest")
    for name, size in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {directory} is missing {name}")
        if path.stat().st_size != size:
            raise CheckpointError(f"checkpoint {directory}: {name} has {path.stat().st_size} bytes, the manifest "
                                  f"says {size} (truncated or overwritten)")
    # Manifests written before hashes were recorded have sizes only; they are checked by size.
    hashes = manifest.get("sha256", {})
    if not isinstance(hashes, dict) or (hashes and set(hashes) != set(manifest["files"])):
        raise CheckpointError(f"{manifest_path} is not a checkpoint manifest (its sha256 entries do not match "
                              f"its files)")
    for name, expected in hashes.items():
        if sha256_of(directory / name) != expected:
            raise CheckpointError(f"checkpoint {directory}: {name} has changed since it was written (its sha256 "
                                  f"differs from the manifest's; a flipped bit or an overwrite)")
    return manifest


def run_dir_of(path: Path) -> Path:
    """The run directory of a run or checkpoint path."""
    return path.parent.parent if path.parent.name == CHECKPOINTS else path


def step_dirs(run_dir: Path) -> list[Path]:
    """A run directory's checkpoint directories (complete or not), newest first."""
    root = run_dir / CHECKPOINTS
    return sorted((p for p in root.glob("step_*") if p.is_dir()), key=lambda p: p.name, reverse=True)


def candidates(source: Path, warn: Callable[[str], None]) -> list[tuple[Path, dict[str, Any]]]:
    """The checkpoints a resume from ``source`` may use, best first, each with its manifest.

    ``source`` is a checkpoint directory (only that one; an unusable one raises) or a run
    directory (its complete checkpoints, newest first; a warning names each skipped one).
    An empty list means the run has no checkpoint at all (killed before its first one).
    """
    if (source / MANIFEST).is_file() or (source / "state").is_dir() or source.parent.name == CHECKPOINTS:
        return [(source, verify(source))]
    found, problems = [], []
    for directory in step_dirs(source):
        try:
            found.append((directory, verify(directory)))
        except CheckpointError as error:
            problems.append(str(error))
            if not found:
                warn(f"warning: skipping {error}")
    if problems and not found:
        raise CheckpointError(f"resume={str(source)!r} has checkpoints but none is complete: "
                              + "; ".join(problems))
    return found
