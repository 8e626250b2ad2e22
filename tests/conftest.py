"""Fixtures shared by the test modules (pytest finds them here: no imports, no ``sys.path`` edits).

Helpers that are plain functions stay in ``tests/bridges_support.py`` and
``tests/learner_support.py``, imported by name where they are used.
"""

from __future__ import annotations

import sys

import pytest

import renderers  # noqa: F401  (registers every game's renderer, as a user's `import renderers` does)


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """The trainer sets torch's thread count (``torch_threads``); give the next test its own back.

    torch is not imported here: a run of the game tests alone never loads it. A module that
    trains imports torch when it is collected, before its tests run, so the count is read
    before each of them.
    """
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    yield
    if threads is not None:
        torch.set_num_threads(threads)
