"""The layers import only downwards: jaxgym -> renderers -> bridges -> learner -> benchmarks.

Each module's imports are read from its source with ``ast`` (lazy imports inside functions
count, and so do ``importlib.import_module("...")`` calls with a literal name), so a back edge
fails here even where nothing imports it at run time. Layers above may use everything below;
a layer that needs something from above takes it through a registration (the games' renderers:
``jaxgym.registry.register_renderer``; ``hf:`` policies: ``bridges.policies.register_policy``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("jaxgym", "renderers", "bridges", "learner", "benchmarks")
RANK = {name: rank for rank, name in enumerate(LAYERS)}


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every module ``path`` imports, wherever the import stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's own package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.append((node.lineno, base))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def upward_imports(layer: str) -> list[str]:
    """``file:line imports module`` for each import of a layer above ``layer``."""
    problems = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        relative = path.relative_to(ROOT)
        package = ".".join(relative.with_suffix("").parts[:-1])
        for line, module in imported_modules(path, package):
            top = module.split(".")[0]
            if top in RANK and RANK[top] > RANK[layer]:
                problems.append(f"{relative}:{line} imports {module} ({top} is above {layer})")
    return problems


def test_the_import_reader_sees_lazy_relative_and_importlib_imports(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        "import jaxgym.core\n"
        "def f():\n"
        "    from learner.models import load_policy\n"
        "    from . import sibling\n"
        "    importlib.import_module('benchmarks.throughput')\n"
    )
    assert imported_modules(source, "bridges.rewards") == [
        (1, "jaxgym.core"), (3, "learner.models"), (4, "bridges.rewards"), (5, "benchmarks.throughput"),
    ]


@pytest.mark.parametrize("layer", LAYERS)
def test_no_layer_imports_a_layer_above_it(layer):
    problems = upward_imports(layer)
    assert not problems, "\n".join(problems)


def test_every_layer_is_a_directory_of_modules():
    # A renamed or moved layer would make the checks above pass vacuously.
    for layer in LAYERS:
        assert len(list((ROOT / layer).rglob("*.py"))) >= 2, layer


def test_hf_policies_come_from_a_registration_not_an_import(monkeypatch):
    import learner.hf_policy
    from bridges import policies

    assert "hf" in policies.policy_kinds()  # importing the learner's module registered it
    assert learner.hf_policy.HFPolicy.__module__ == "learner.hf_policy"
    without_hf = {k: v for k, v in policies._POLICY_KINDS.items() if k != "hf"}
    monkeypatch.setattr(policies, "_POLICY_KINDS", without_hf)
    with pytest.raises(ValueError, match="no policy kind 'hf' is registered.*learner.hf_policy"):
        policies.make_policy("hf:tiny", None)  # type: ignore[arg-type]

    calls = []
    policies.register_policy("hf", lambda rest, env, **options: calls.append((rest, options)) or "made")
    assert policies.make_policy("hf:some/dir", None, max_tokens=5) == "made"  # type: ignore[arg-type]
    assert calls == [("some/dir", dict(seed=0, model=None, max_tokens=5))]
    with pytest.raises(ValueError, match="'random'"):
        policies.register_policy("random", lambda *a, **k: None)
