"""Image classes for image-tile Shisen-Sho: the embedded default and a CIFAR-10 loader.

A tile image set is data: a uint8 array ``(classes, images, height, width, 3)`` and one name
per class (``TileImages``). Two sources ship with jaxgym:

- ``"patterns"`` (the default, no download): 10 procedurally drawn texture classes
  (stripes, checkers, dots, ...), 8 different 32x32 images each, committed as
  ``jaxgym/assets/pattern_tiles.npz`` and rebuilt bit for bit by
  ``jaxgym/assets/build_pattern_tiles.py``. Every image of a class shares its structure and
  differs in colours, scale, angle and phase, like photographs of one object class.
- ``"cifar10"``: the CIFAR-10 images from the standard python-pickle directory
  ``cifar-10-batches-py/`` (``load_cifar10``), which must be downloaded once by hand.
"""

from __future__ import annotations

import functools
import os
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_DIRNAME = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch",)
CIFAR10_DEFAULT_IMAGES_PER_CLASS = 100
DATA_DIR_ENV = "JAXGYM_DATA_DIR"
_PATTERNS_PATH = os.path.join(os.path.dirname(__file__), "assets", "pattern_tiles.npz")


@dataclass(frozen=True, eq=False)
class TileImages:
    """Images of ``len(class_names)`` classes, the same number of images for each.

    Attributes:
        images: uint8 ``(classes, images_per_class, height, width, 3)``.
        class_names: one printable-ASCII name per class, as perception texts print it.
        name: where the images come from (for messages and ``repr``).
    """

    images: np.ndarray
    class_names: tuple[str, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        if images.dtype != np.uint8 or images.ndim != 5 or images.shape[-1] != 3:
            raise ValueError(
                f"images must be uint8 (classes, images, height, width, 3), got {images.shape} {images.dtype}"
            )
        if 0 in images.shape:
            raise ValueError(f"images must not be empty, got shape {images.shape}")
        names = tuple(str(n) for n in self.class_names)
        if len(names) != images.shape[0]:
            raise ValueError(f"{len(names)} class names for {images.shape[0]} classes")
        for n in names:
            if not n or not n.isprintable() or not n.isascii() or "|" in n or "\n" in n or n != n.strip() or n == "-":
                raise ValueError(f"class name {n!r} must be non-empty printable ASCII without '|' or edge spaces")
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be distinct, got {names}")
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "class_names", names)

    @property
    def num_classes(self) -> int:
        return self.images.shape[0]

    @property
    def images_per_class(self) -> int:
        return self.images.shape[1]

    def __repr__(self) -> str:
        c, k, h, w, _ = self.images.shape
        return f"TileImages({self.name!r}: {c} classes x {k} images of {h}x{w})"


@functools.lru_cache(maxsize=1)
def pattern_tiles() -> TileImages:
    """The embedded default: 10 procedural texture classes, 8 images of 32x32 each.

    >>> tiles = pattern_tiles()
    >>> tiles.images.shape, tiles.class_names[:3]
    ((10, 8, 32, 32, 3), ('stripes', 'checkers', 'dots'))
    """
    with np.load(_PATTERNS_PATH) as data:
        images = data["images"]
        names = tuple(str(n) for n in data["class_names"])
    return TileImages(images, names, "patterns")


# Exactly the globals a CIFAR-10 pickle names, by full module path: the original files
# (numpy 1 era) say numpy.core.multiarray, pickles re-written under numpy 2 say
# numpy._core.multiarray; Python 3 writes bytes into protocol-2 pickles as
# _codecs.encode(text, "latin1"). Any other module, even another numpy.* one, is refused
# before it is imported (importing numpy.f2py.__main__ alone runs f2py).
_CIFAR_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
})


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: CIFAR-10's files need nothing
    else, and a pickle from an untrusted download must not run arbitrary code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a CIFAR-10 file: only numpy arrays and plain containers are "
                f"allowed (is this file really from {CIFAR10_URL}?)"
            )
        if module == "numpy.core.multiarray":  # numpy 2 renamed it; the old path only warns and forwards
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _unpickle(path: str) -> dict:
    with open(path, "rb") as f:
        data = _ArrayUnpickler(f, encoding="bytes").load()
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a CIFAR-10 python-pickle file (expected a dict, got {type(data).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def cifar10_dir(data_dir: str | os.PathLike | None = None) -> str:
    """The ``cifar-10-batches-py`` directory for ``data_dir``: the directory itself, or
    the one inside it. ``None`` means ``$JAXGYM_DATA_DIR``, else ``~/.cache/jaxgym``."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV, os.path.join("~", ".cache", "jaxgym"))
    root = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    if os.path.basename(root) == CIFAR10_DIRNAME:
        return root
    return os.path.join(root, CIFAR10_DIRNAME)


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    *,
    split: str = "train",
    images_per_class: int = CIFAR10_DEFAULT_IMAGES_PER_CLASS,
) -> TileImages:
    """CIFAR-10 from its python-pickle directory: the first ``images_per_class`` images of
    each of the 10 classes, in file order (``data_batch_1`` .. ``data_batch_5`` for
    ``split="train"``, ``test_batch`` for ``"test"``).

    Download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz once and extract it
    into ``data_dir`` (``tar -xzf cifar-10-python.tar.gz -C DATA_DIR``), which creates
    ``DATA_DIR/cifar-10-batches-py/``. Every image in the atlas costs memory (12 KiB per
    image at the default 64-pixel cells), so keep ``images_per_class`` modest.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not a CIFAR-10 split; use 'train' or 'test'")
    if isinstance(images_per_class, bool) or not isinstance(images_per_class, (int, np.integer)):
        raise ValueError(f"images_per_class must be an integer, got {images_per_class!r}")
    if images_per_class < 1:
        raise ValueError(f"images_per_class={images_per_class} is out of range; allowed: >= 1")
    directory = cifar10_dir(data_dir)
    files = CIFAR10_TRAIN_FILES if split == "train" else CIFAR10_TEST_FILES
    needed = ["batches.meta", *files]
    missing = [f for f in needed if not os.path.isfile(os.path.join(directory, f))]
    if missing:
        parent = os.path.dirname(directory)
        raise FileNotFoundError(
            f"CIFAR-10 is not at {directory} (missing {', '.join(missing)}). Download {CIFAR10_URL} "
            f"(163 MB) and extract it with `tar -xzf cifar-10-python.tar.gz -C {parent}`, so that "
            f"{os.path.join(directory, 'data_batch_1')} exists; or pass data_dir= (or set ${DATA_DIR_ENV}) "
            f"to the directory that holds {CIFAR10_DIRNAME}/. Without CIFAR-10, use the embedded "
            f"dataset='patterns'."
        )
    meta = _unpickle(os.path.join(directory, "batches.meta"))
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta["label_names"])
    per_class: list[list[np.ndarray]] = [[] for _ in names]
    for f in files:
        batch = _unpickle(os.path.join(directory, f))
        data = np.asarray(batch["data"], np.uint8)
        labels = np.asarray(batch["labels"], np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
            raise ValueError(f"{f} is not a CIFAR-10 batch: data {data.shape}, {len(labels)} labels")
        # Rows are 1024 red, 1024 green, 1024 blue values of a 32x32 image, row-major.
        pictures = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        for c in range(len(names)):
            room = images_per_class - sum(len(p) for p in per_class[c])
            if room > 0:
                per_class[c].append(pictures[labels == c][:room])
        if all(sum(len(p) for p in pcs) >= images_per_class for pcs in per_class):
            break
    counts = [sum(len(p) for p in pcs) for pcs in per_class]
    if min(counts) < images_per_class:
        raise ValueError(
            f"images_per_class={images_per_class} is more than the CIFAR-10 {split} split has for "
            f"class {names[int(np.argmin(counts))]!r} ({min(counts)})"
        )
    images = np.stack([np.concatenate(pcs)[:images_per_class] for pcs in per_class])
    return TileImages(np.ascontiguousarray(images), names, f"cifar10-{split}")


def resolve_dataset(
    dataset: Any, *, images_per_class: int | None = None, data_dir: str | os.PathLike | None = None
) -> TileImages:
    """The ``TileImages`` that ``make("shisensho-images", dataset=...)`` asks for."""
    if isinstance(dataset, TileImages):
        if images_per_class is not None or data_dir is not None:
            raise ValueError("images_per_class and data_dir apply to dataset='cifar10' only")
        return dataset
    if dataset == "patterns":
        if images_per_class is not None or data_dir is not None:
            raise ValueError("images_per_class and data_dir apply to dataset='cifar10' only")
        return pattern_tiles()
    if dataset == "cifar10":
        return load_cifar10(
            data_dir,
            images_per_class=CIFAR10_DEFAULT_IMAGES_PER_CLASS if images_per_class is None else images_per_class,
        )
    raise ValueError(f"dataset={dataset!r} is unknown; use 'patterns' (embedded), 'cifar10', or a TileImages")
