"""The response format (its tags and the prompt paragraph that asks for them) and lenient,
linear-time parsing of model responses, shared by every game's prompt and answer parser
and by the scorer.

Responses are untrusted text: anything that is not a ``str``, any size, any unicode. These
helpers never raise on such input and run in time linear in its length (``str.rfind`` and
simple character-class regexes, no backtracking patterns).
"""

from __future__ import annotations

import re
import unicodedata

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
