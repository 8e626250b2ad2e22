"""Layout rules: the games and renderers stay pure JAX (no torch), and import only the
core dependencies that `pip install jaxgym` brings."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
CORE_MODULES = {"jax", "jaxlib", "chex", "flax", "numpy", "PIL", "imageio", "tqdm"}
OPTIONAL_OK = {"jaxgym/vector_env.py": {"gymnasium"}, "jaxgym/gym_env.py": {"gymnasium"}}


def imported_top_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_games_and_renderers_import_only_core_dependencies():
    stdlib = set(sys.stdlib_module_names)
    for package in ("jaxgym", "renderers"):
        for path in (ROOT / package).rglob("*.py"):
            rel = str(path.relative_to(ROOT))
            if "assets" in rel:  # the maintainer's font builder, never imported
                continue
            extra = imported_top_modules(path) - stdlib - CORE_MODULES - {"jaxgym", "renderers"}
            assert extra <= OPTIONAL_OK.get(rel, set()), f"{rel} imports {sorted(extra)}"


def test_core_dependencies_are_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in project["dependencies"]}
    assert {"jax", "jaxlib", "chex", "flax", "numpy", "pillow", "imageio", "tqdm"} <= declared


@pytest.mark.slow
def test_importing_jaxgym_and_renderers_loads_no_torch():
    code = (
        "import sys, jaxgym, renderers.game2048, jax; "
        "env = jaxgym.make('2048', image_size=56); env.render(env.reset(jax.random.key(0))); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_every_command_is_an_entry_point_and_no_module_edits_sys_path():
    import importlib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"jaxgym-train", "jaxgym-cold-start", "jaxgym-evaluate", "jaxgym-export", "jaxgym-serve"} <= set(scripts)
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), f"{name} -> {target} is not callable"
    edits = [f"{path.relative_to(ROOT)}:{n}" for layer in ("jaxgym", "renderers", "bridges", "learner", "benchmarks")
             for path in sorted((ROOT / layer).rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if "sys.path." in line and not line.lstrip().startswith("#")]
    assert edits == [], f"install the project (pip install -e .) instead of editing sys.path: {edits}"
