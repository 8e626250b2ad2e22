"""The trainer recipes of docs/integrations.md, read from the page itself, so that the tests run
the text users copy (tests/test_recipes.py, tests/integrations_verl)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"


def recipe_block(heading: str, language: str) -> str:
    """The first fenced ``language`` block after the paragraph that starts with ``**heading**``."""
    text = DOC.read_text()
    start = text.find(f"\n**{heading}**")
    if start < 0:
        raise ValueError(f"docs/integrations.md has no **{heading}** paragraph")
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    if match is None:
        raise ValueError(f"no ```{language} block after **{heading}** in docs/integrations.md")
    return match.group(1)


def substitute(text: str, old: str, new: str) -> str:
    """``text`` with the one occurrence of ``old`` replaced: fails when the recipe changed shape, so
    that a test never silently runs something other than the documented text."""
    if text.count(old) != 1:
        raise AssertionError(f"the recipe should contain {old!r} exactly once; it contains it {text.count(old)} "
                             f"times:\n{text}")
    return text.replace(old, new)
