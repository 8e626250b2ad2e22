"""The layers import only downwards: jaxgym -> renderers -> bridges -> learner -> benchmarks;
inside a layer, no module imports itself back through others (no cycle); and no module
imports a module whose name is a variable.

Each module's imports are read from its source with ``ast`` (lazy imports inside functions
count, and so do ``importlib.import_module("...")`` calls with a literal name), so a back edge
fails here even where nothing imports it at run time. An ``import_module`` (or
``__import__``) of a name computed at run time is an edge no reader can check, so it is a
failure of its own, except where :data:`USER_NAMED_IMPORTS` says the name is the user's (a
policy given as ``module:function`` on a command line), never one of the layers'. Layers
above may use everything below; a layer that needs something from above takes it through a
registration (the games' renderers: ``jaxgym.register_renderer``, called by each renderer
module when ``import renderers`` runs; ``hf:`` policies: ``bridges.policies.register_policy``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("jaxgym", "renderers", "bridges", "learner", "benchmarks")
RANK = {name: rank for rank, name in enumerate(LAYERS)}
DYNAMIC = "<a name computed at run time>"
USER_NAMED_IMPORTS = {
    # A callable policy "package.module:function" named by the user on the command line.
    ("bridges/policies.py", "load_callable"),
}


def _import_module_call(node: ast.AST) -> ast.Call | None:
    """The call if ``node`` is ``importlib.import_module(...)``, ``import_module(...)`` or
    ``__import__(...)``."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    return node if name in ("import_module", "__import__") else None


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every module ``path`` imports, wherever the import stands;
    ``from package import name`` gives ``package.name``'s module where that is a module file
    beside ``path``'s package (``from jaxgym import parsing``), and an import whose name is
    computed at run time gives :data:`DYNAMIC` (unless :data:`USER_NAMED_IMPORTS` lists its
    function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    root = path.parents[len(package.split("."))] if package else path.parent
    relative = path.relative_to(root).as_posix()
    user_named = {function for file, function in USER_NAMED_IMPORTS if file == relative}
    exempt = {
        id(call)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in user_named
        for call in ast.walk(node)
    }
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
            submodules = [f"{base}.{alias.name}" for alias in node.names if _is_module(root, f"{base}.{alias.name}")]
            found += [(node.lineno, name) for name in submodules] or [(node.lineno, base)]
        elif (call := _import_module_call(node)) is not None and id(call) not in exempt:
            literal = isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)
            found.append((call.lineno, call.args[0].value if literal else DYNAMIC))
    return found


def _is_module(root: Path, dotted: str) -> bool:
    base = root.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _modules(layer: str, root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of a layer (a package's ``__init__`` is the package)."""
    modules = {}
    for path in sorted((root / layer).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def upward_imports(layer: str, root: Path = ROOT) -> list[str]:
    """``file:line imports module`` for each import of a layer above ``layer``, and for each
    import by a name computed at run time."""
    problems = []
    for path in sorted((root / layer).rglob("*.py")):
        relative = path.relative_to(root)
        package = ".".join(relative.with_suffix("").parts[:-1])
        for line, module in imported_modules(path, package):
            if module == DYNAMIC:
                problems.append(f"{relative}:{line} imports {DYNAMIC} (a layer the import reader cannot check; "
                                f"take it through a registration)")
                continue
            top = module.split(".")[0]
            if top in RANK and RANK[top] > RANK[layer]:
                problems.append(f"{relative}:{line} imports {module} ({top} is above {layer})")
    return problems


def import_cycles(layer: str, root: Path = ROOT) -> list[str]:
    """Each cycle among the modules of ``layer`` (lazy imports included), as
    ``a -> b -> a``; empty when the layer's imports form a tree-like order."""
    modules = _modules(layer, root)
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for _, module in imported_modules(path, package):
            parts = module.split(".")
            # The module itself, else the nearest package of it that is a module of this layer.
            owner = next((".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in modules),
                         None)
            if owner is not None and owner != name:
                targets.add(owner)
        edges[name] = targets
    cycles, state = [], dict.fromkeys(modules, 0)  # 0 new, 1 on the current path, 2 done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges[name]):
            if state[target] == 1:
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif state[target] == 0:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(modules):
        if state[name] == 0:
            visit(name, [name])
    return cycles


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


def _plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_planted_cycle_inside_a_layer_fails(tmp_path):
    _plant(tmp_path, {
        "jaxgym/__init__.py": "from jaxgym.core import Env\n",
        "jaxgym/core.py": "def render():\n    from jaxgym.registry import find\n",  # lazy: still a cycle
        "jaxgym/registry.py": "from jaxgym import core\n",
        "jaxgym/leaf.py": "import jaxgym.core\n",
    })
    assert import_cycles("jaxgym", tmp_path) == ["jaxgym.core -> jaxgym.registry -> jaxgym.core"]
    (tmp_path / "jaxgym/core.py").write_text("def render():\n    pass\n")
    assert import_cycles("jaxgym", tmp_path) == []


def test_a_planted_import_by_a_variable_name_fails(tmp_path):
    _plant(tmp_path, {
        "jaxgym/__init__.py": "",
        "jaxgym/registry.py": (
            "import importlib\n"
            "PACKAGES = ['renderers']\n"
            "def find():\n"
            "    for package in PACKAGES:\n"
            "        importlib.import_module(package)\n"
        ),
        "jaxgym/literal.py": "import importlib\nimportlib.import_module('renderers')\n",
    })
    problems = upward_imports("jaxgym", tmp_path)
    assert len(problems) == 2, problems
    assert problems[0].startswith("jaxgym/literal.py:2 imports renderers (renderers is above jaxgym)")
    assert problems[1].startswith(f"jaxgym/registry.py:5 imports {DYNAMIC}")


@pytest.mark.parametrize("layer", LAYERS)
def test_no_layer_imports_a_layer_above_it_or_a_name_computed_at_run_time(layer):
    problems = upward_imports(layer)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("layer", LAYERS)
def test_no_layer_has_an_import_cycle(layer):
    cycles = import_cycles(layer)
    assert not cycles, "\n".join(cycles)


@pytest.mark.slow
def test_a_game_renders_once_renderers_is_imported_and_says_so_before():
    import subprocess
    import sys

    script = (
        "import jax, jaxgym\n"
        "env = jaxgym.make('2048', image_size=56)\n"
        "try:\n"
        "    env.render(env.reset(jax.random.key(0)))\n"
        "except ValueError as error:\n"
        "    print('refused:', error)\n"
        "import renderers\n"
        "print(env.render(env.reset(jax.random.key(0))).shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    refused, shape = done.stdout.strip().splitlines()
    assert "no renderer is registered for game '2048'" in refused and "`import renderers`" in refused
    assert shape == "(56, 56, 3)"


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
