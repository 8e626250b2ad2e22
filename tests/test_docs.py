"""The README and docs/ say only what a user of the repository can follow.

Every repository path they cite must exist (a renamed file leaves no dead reference), no prose
line runs past 200 characters (long tables belong in lists), and nothing cites the project's
private specification (``shared/``), which users do not have.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP_LEVEL = ("jaxgym/", "renderers/", "bridges/", "learner/", "benchmarks/", "tests/", "docs/", ".ci/")
GENERATED = ("benchmarks/results/",)  # what a command writes (git-ignored), not what the repository holds
MAX_LINE = 200

# `code spans` and the targets of [links](...) and ![images](...)
CITATION = re.compile(r"`([^`\n]+)`|\]\(([^)\s]+)\)")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, line)`` of every line outside fenced code blocks."""
    lines, in_code = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if not in_code:
            lines.append((number, line))
    return lines


def cited_paths(text: str, *, here: Path, root: Path = ROOT) -> list[tuple[int, str, bool]]:
    """``(line, path, exists)`` for each repository path a markdown text cites outside code blocks.

    A citation is a code span or a link target that starts with a top-level folder of the
    repository (or, for a link, is relative to the document's folder). Placeholders (``<run>``,
    ``*``, ``{}``) are not paths; ``#anchors`` and ``:line`` suffixes are dropped.
    """
    found = []
    for number, line in prose_lines(text):
        for span, link in CITATION.findall(line):
            for token in (span.split() if span else [link]):
                token = token.strip(".,;:()'\"")
                if not token or any(c in token for c in "<>*{}$") or "://" in token or token.startswith("#"):
                    continue
                path = token.split("#")[0]
                path = re.sub(r"::.*$", "", path)  # a test id: tests/test_x.py::test_y
                path = re.sub(r":(\d+(-\d+)?|[A-Za-z_]\w*)$", "", path)  # file:line, file:function
                is_link = bool(link)
                if path.startswith(GENERATED):
                    continue
                if path.startswith(TOP_LEVEL) or (path in ("pyproject.toml", "README.md")):
                    found.append((number, path, (root / path).exists()))
                elif is_link and not path.startswith(("http", "mailto")) and path:
                    found.append((number, path, (here / path).exists() or (root / path).exists()))
    return found


def problems(path: Path, root: Path = ROOT) -> list[str]:
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(root) if path.is_relative_to(root) else path
    out = [f"{name}:{n}: cites {p}, which does not exist" for n, p, ok in cited_paths(text, here=path.parent, root=root)
           if not ok]
    out += [f"{name}:{n}: {len(line)} characters (over {MAX_LINE}); wrap it or make the table a list"
            for n, line in prose_lines(text) if len(line) > MAX_LINE]
    out += [f"{name}:{n}: cites shared/, which users do not have; bring what they need into docs/"
            for n, line in enumerate(text.splitlines(), 1) if re.search(r"(^|[\s`(/])shared/", line)]
    return out


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_docs_cite_only_paths_that_exist_and_keep_lines_short(path):
    assert problems(path) == []


def test_the_readme_stays_a_page_a_researcher_reads_in_five_minutes():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 230, f"README.md has {lines} lines; move what is not the front page into docs/"


def test_the_checker_finds_a_dead_path_a_long_line_and_a_private_citation(tmp_path):
    (tmp_path / "learner").mkdir()
    (tmp_path / "learner" / "train.py").write_text("")
    doc = tmp_path / "page.md"
    doc.write_text(
        "Run `learner/train.py:main`, `learner/train.py::test_x` and `learner/gone.py`;\n"
        "see [the page](missing.md) and `runs/<time>/`.\n"
        + "x" * 201 + "\n"
        + "```\n" + "y" * 300 + " `learner/also_gone.py`\n```\n"
        + "As `shared/spec/games.md` says.\n"
    )
    found = problems(doc, root=tmp_path)
    assert any("learner/gone.py" in p for p in found)
    assert any("missing.md" in p for p in found)
    assert any("201 characters" in p for p in found)
    assert any("shared/" in p for p in found)
    assert not any("train.py" in p or "also_gone" in p or "300 characters" in p or "<time>" in p for p in found)
