"""Run directories that concurrent commands cannot share.

A default run directory is named by the second it starts in, so commands started together
would pick the same name. :func:`create_run_dir` makes the directory with one ``mkdir`` that
fails if it exists (atomic on every local file system) and adds ``-2``, ``-3``, ... until one
succeeds: each caller gets a directory no other caller got.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> a = create_run_dir("eval-2048", root=root, stamp="20261208-010203")
    >>> b = create_run_dir("eval-2048", root=root, stamp="20261208-010203")
    >>> a.name, b.name
    ('eval-2048-20261208-010203', 'eval-2048-20261208-010203-2')
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path


def create_run_dir(stem: str, *, root: str | Path = "runs", stamp: str | None = None) -> Path:
    """A new, empty directory ``root/stem-<stamp>[-N]``, created by this call and no other.

    ``stamp`` defaults to the local time as ``YYYYmmdd-HHMMSS``; ``root`` is created if missing.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base = f"{stem}-{stamp or time.strftime('%Y%m%d-%H%M%S')}"
    for n in itertools.count(1):
        path = root / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")


def claim_file(path: str | Path) -> Path:
    """Create ``path`` empty, failing with ``FileExistsError`` if it exists (``open(..., "x")``).

    The atomic "this directory is mine" check for a directory the user named: of several
    commands that claim the same file, exactly one succeeds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8"):
        pass
    return path
