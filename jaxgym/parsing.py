"""The response format (its tags and the prompt paragraph that asks for them) and lenient,
linear-time parsing of model responses, shared by every game's prompt and answer parser
and by the scorer.

Responses are untrusted text: anything that is not a ``str``, any size, any unicode. These
helpers never raise on such input and run in time linear in its length (``str.rfind`` and
simple character-class regexes, no backtracking patterns).

:class:`CellPairAnswers` is the answer form of the games whose move names two cells
(Shisen-Sho, Swap): ``<answer>(r1, c1) (r2, c2)</answer>`` read and written once, each game
keeping its own flat encoding of a pair.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from jaxgym.core import INVALID_ACTION, UNPARSEABLE

PERCEPTION_TAG, THINK_TAG, ANSWER_TAG = "perception", "think", "answer"
FORMAT_TAGS = (PERCEPTION_TAG, THINK_TAG, ANSWER_TAG)
"""The tags of a well-formed response, in the order the prompts ask for them."""


def response_format(perception: str, answer: str, example: str, subject: str = "the board") -> str:
    """The closing paragraph of every game's prompt: perception, reasoning, answer.

    ``perception`` says how to write the perception text (a sentence ending in a full stop),
    ``answer`` what the answer names, ``example`` an answer's content.

    >>> print(response_format("one number.", "the number of your move", "3"))
    First describe the board inside <perception></perception>: one number.
    Then reason about your move inside <think></think>.
    Finally give the number of your move inside <answer></answer>, for example <answer>3</answer>.
    """
    p, t, a = FORMAT_TAGS
    return (
        f"First describe {subject} inside <{p}></{p}>: {perception}\n"
        f"Then reason about your move inside <{t}></{t}>.\n"
        f"Finally give {answer} inside <{a}></{a}>, for example {format_answer(example)}."
    )


def format_answer(content: str) -> str:
    """``content`` inside the answer tags.

    >>> format_answer("(0, 1) (0, 2)")
    '<answer>(0, 1) (0, 2)</answer>'
    """
    return f"<{ANSWER_TAG}>{content}</{ANSWER_TAG}>"


def answer_block(text: object) -> str | None:
    """The content of the last answer block of a response, or None (``last_tag_content``)."""
    return last_tag_content(text, ANSWER_TAG)


INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_INT = re.compile(r"[-+]?[0-9]+")
# Digits beyond these are noise: any such number is out of range for every game anyway.
_MAX_DIGITS = 12
MAX_ANSWER_CHARS = 4096
"""Characters of an answer block that are read (an answer is a few numbers; NFKC can
expand one character 18-fold, so the whole block of a hostile response would cost seconds
and tens of MB per MB of text)."""


def last_tag_content(text: object, tag: str) -> str | None:
    """Content of the last complete ``<tag>...</tag>`` block (tag name case-insensitive).

    The last block wins because models often quote the format (``<answer>...</answer>``)
    while thinking before they commit to their final answer.

    >>> last_tag_content("<answer>1</answer> then <ANSWER> 2 </answer>", "answer")
    ' 2 '
    >>> last_tag_content("no tags", "answer") is None
    True
    """
    if not isinstance(text, str):
        return None
    lowered = text.lower()
    open_tag, close_tag = f"<{tag.lower()}>", f"</{tag.lower()}>"
    end = lowered.rfind(close_tag)
    if end < 0:
        return None
    start = lowered.rfind(open_tag, 0, end)
    if start < 0:
        return None
    return text[start + len(open_tag) : end]


def has_tag_pair(text: object, tag: str) -> bool:
    """True if ``text`` has an opening ``<tag>`` followed later by a closing ``</tag>``."""
    if not isinstance(text, str):
        return False
    lowered = text.lower()
    start = lowered.find(f"<{tag.lower()}>")
    return start >= 0 and lowered.find(f"</{tag.lower()}>", start) >= 0


def normalize(text: str) -> str:
    """Unicode NFKC (full-width digits and commas become ASCII) of the first
    ``MAX_ANSWER_CHARS`` characters: what follows them is never read."""
    return unicodedata.normalize("NFKC", text[:MAX_ANSWER_CHARS])


def _to_int(token: str) -> int:
    sign = -1 if token[0] == "-" else 1
    digits = token.lstrip("+-").lstrip("0") or "0"
    if len(digits) > _MAX_DIGITS:
        return sign * (INT32_MAX + 1)
    return sign * int(digits)


def ints(text: str, limit: int) -> list[int]:
    """The first ``limit`` integers in ``text`` (after ``normalize``), in order.

    >>> ints("(0, 1) (0,2)", 4)
    [0, 1, 0, 2]
    """
    out = []
    for match in _INT.finditer(normalize(text)):
        out.append(_to_int(match.group()))
        if len(out) == limit:
            break
    return out


def first_int(text: str) -> int | None:
    """The first integer in ``text``, or None."""
    found = ints(text, 1)
    return found[0] if found else None


def clamp_to_int32(value: int) -> int:
    """Clamp to the int32 range: a huge number stays an out-of-range action, never wraps."""
    return max(INT32_MIN, min(INT32_MAX, value))


def board_cells(perception: str) -> list[list[str]]:
    """The cells of a perception text, trimmed: rows split on newlines, cells on ``|``.

    >>> board_cells(" 2 | - \\n - | 4 ")
    [['2', '-'], ['-', '4']]
    """
    return [[cell.strip() for cell in row.split("|")] for row in perception.strip("\n").split("\n")]


PAIR_NUMBERS = 4
_BRACKETED_PAIR = re.compile(r"[(\[]\s*([-+]?[0-9]+)\s*,\s*([-+]?[0-9]+)\s*[)\]]")


def cell_pair_numbers(text: object, *, first_two_pairs: bool = False) -> list[int] | None:
    """The four numbers ``r1, c1, r2, c2`` of the last answer block, clamped to int32, or
    None when it names no pair: exactly four integers, in any separators. With
    ``first_two_pairs``, the first two bracketed ``(r, c)`` or ``[r, c]`` pairs come first,
    so that an answer with more numbers around its two pairs still names them.

    >>> cell_pair_numbers("<answer>(0,1),(0,2)</answer>"), cell_pair_numbers("<answer>1 2 3</answer>")
    ([0, 1, 0, 2], None)
    >>> text = "<answer>1. First: (5, 5)\\n2. Second: (5, 6)</answer>"
    >>> cell_pair_numbers(text), cell_pair_numbers(text, first_two_pairs=True)
    (None, [5, 5, 5, 6])
    """
    answer = answer_block(text)
    if answer is None:
        return None
    numbers: list[int] = []
    if first_two_pairs:
        for match in _BRACKETED_PAIR.finditer(normalize(answer)):
            numbers += ints(match.group(1), 1) + ints(match.group(2), 1)
            if len(numbers) == PAIR_NUMBERS:
                break
    if len(numbers) < PAIR_NUMBERS:
        numbers = ints(answer, PAIR_NUMBERS + 1)
        if len(numbers) != PAIR_NUMBERS:
            return None
    return [clamp_to_int32(v) for v in numbers]


def format_cell_pair(r1: int, c1: int, r2: int, c2: int) -> str:
    """The answer naming cells ``(r1, c1)`` and ``(r2, c2)``.

    >>> format_cell_pair(0, 1, 2, 1)
    '<answer>(0, 1) (2, 1)</answer>'
    """
    return format_answer(f"({r1}, {c1}) ({r2}, {c2})")


class CellPairAnswers:
    """The answers of a game whose move names two cells of its ``size x size`` board: a
    mixin listed before ``jaxgym.core.Env`` that implements ``parse_answer``,
    ``format_answer`` and ``reasoning_line`` from the game's own pair codec.

    The game provides ``size``, ``num_actions``, ``action_to_pair(action)`` (``(r1, c1, r2,
    c2)``, all -1 for an action out of range) and :meth:`_pair_action`, the flat action of
    four on-board cells on the host (``INVALID_ACTION`` where the cells make no move).
    ``first_two_pairs`` says how lenient its parser is (:func:`cell_pair_numbers`).
    """

    size: int
    num_actions: int
    first_two_pairs: ClassVar[bool] = False

    def action_to_pair(self, action: Any) -> tuple[Any, Any, Any, Any]:
        raise NotImplementedError(f"{type(self).__name__} names cell pairs but has no action_to_pair")

    def _pair_action(self, r1: int, c1: int, r2: int, c2: int) -> int:
        """The flat action of four on-board cells (host ints), or ``INVALID_ACTION``."""
        raise NotImplementedError(f"{type(self).__name__} names cell pairs but has no _pair_action")

    def parse_answer(self, text: str) -> int | Literal["unparseable"]:
        """The pair of the last answer block (:func:`cell_pair_numbers`); a well-formed pair
        with a cell off the board, or one that makes no move, is ``INVALID_ACTION``."""
        numbers = cell_pair_numbers(text, first_two_pairs=self.first_two_pairs)
        if numbers is None:
            return UNPARSEABLE
        if not all(0 <= v < self.size for v in numbers):
            return INVALID_ACTION
        return self._pair_action(*numbers)

    def format_answer(self, action: int) -> str:
        """``<answer>(r1, c1) (r2, c2)</answer>``; ``INVALID_ACTION`` is the off-board pair
        ``(-1, -1) (-1, -1)`` (``jaxgym.core.Env.format_answer``); any other action out of
        range is a ValueError."""
        action = int(action)
        if action == INVALID_ACTION:
            return format_cell_pair(-1, -1, -1, -1)
        if not 0 <= action < self.num_actions:
            raise ValueError(
                f"action={action} is out of range; allowed: 0..{self.num_actions - 1} or INVALID_ACTION (-1)"
            )
        return format_cell_pair(*(int(v) for v in self.action_to_pair(action)))

    def reasoning_line(self, perception: str, action: int, raw_reward: float) -> str:
        """The two cells of the move and what the perception text says they hold.

        >>> import jaxgym
        >>> jaxgym.make("swap").reasoning_line("Red circle | Blue square", 0, 6.0)
        '(0, 0) is Red circle and (0, 1) is Blue square.'
        """
        r1, c1, r2, c2 = (int(v) for v in self.action_to_pair(int(action)))
        cells = board_cells(perception)
        return f"({r1}, {c1}) is {_cell(cells, r1, c1)} and ({r2}, {c2}) is {_cell(cells, r2, c2)}."


def _cell(cells: Sequence[Sequence[str]], r: int, c: int) -> str:
    return cells[r][c] if 0 <= r < len(cells) and 0 <= c < len(cells[r]) else "outside"
