"""Untrusted pickles: the CIFAR-10 loader names exactly the globals a CIFAR file needs."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest

from jaxgym import tile_images


def _pickle_naming(module: str, name: str) -> bytes:
    """A protocol-2 pickle that calls ``module.name()`` when loaded."""
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."


@pytest.mark.parametrize(("module", "name"), [
    ("numpy.f2py.__main__", "main"),  # importing it alone runs f2py
    ("numpy.f2py.__main__", "ndarray"),  # an allowed name in a module that is not
    ("numpy.lib.npyio", "dtype"),
    ("numpy", "load"),
    ("numpy.core.multiarray", "ndarray"),
    ("builtins", "eval"),
    ("os", "system"),
])
def test_cifar_unpickler_refuses_every_other_global(tmp_path, module, name):
    path = tmp_path / "batches.meta"
    path.write_bytes(_pickle_naming(module, name))
    imported_before = module in sys.modules
    with pytest.raises(pickle.UnpicklingError, match=f"refusing to load {module}.{name}"):
        tile_images._unpickle(str(path))
    assert (module in sys.modules) == imported_before  # refused before it was imported


def test_cifar_unpickler_runs_nothing_from_a_numpy_named_module(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("numpy.reliability_probe")
    fake.ndarray = lambda: calls.append("ran")  # what a hostile numpy.* module could hold
    monkeypatch.setitem(sys.modules, "numpy.reliability_probe", fake)
    path = tmp_path / "data_batch_1"
    path.write_bytes(_pickle_naming("numpy.reliability_probe", "ndarray"))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        tile_images._unpickle(str(path))
    assert calls == []


def test_cifar_unpickler_reads_numpy_1_and_numpy_2_array_pickles(tmp_path):
    data = np.arange(12, dtype=np.uint8).reshape(2, 6)
    fresh = pickle.dumps({b"data": data, b"labels": [1, 2], b"n": np.int64(3)}, protocol=2)
    # The original files were written under numpy 1, whose module was numpy.core.multiarray.
    old = fresh.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != fresh
    for i, blob in enumerate((fresh, old)):
        path = tmp_path / f"batch_{i}"
        path.write_bytes(blob)
        loaded = tile_images._unpickle(str(path))
        np.testing.assert_array_equal(loaded["data"], data)
        assert loaded["labels"] == [1, 2] and loaded["n"] == 3
