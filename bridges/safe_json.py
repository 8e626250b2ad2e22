"""JSON from outside (model servers' replies, exported ground truths), parsed within limits.

``json.loads`` recurses once per nesting level, so a reply of 100,000 ``[`` raises
``RecursionError`` deep inside whatever called it, and a 500 MB reply is held whole. Every
place that parses text it did not write goes through :func:`loads_bounded`, which raises
``ValueError`` naming the limit instead.

    >>> loads_bounded('{"a": [1, 2]}')
    {'a': [1, 2]}
    >>> loads_bounded("[" * 100 + "]" * 100, max_depth=64)
    Traceback (most recent call last):
    ...
    ValueError: JSON nested deeper than 64 levels (the limit); refusing to parse it
    >>> loads_bounded("[1]" * 10, max_bytes=8)
    Traceback (most recent call last):
    ...
    ValueError: JSON of 30 bytes is over the 8-byte limit; refusing to parse it
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
MAX_BYTES = 16 * 1024 * 1024


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0, ``[]`` and ``{}`` are 1), without recursion.

    >>> json_depth(1), json_depth([]), json_depth({"a": [[1]]})
    (0, 1, 3)
    """
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in node)
    return deepest


def loads_bounded(data: str | bytes, *, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_BYTES) -> Any:
    """``json.loads(data)``, refused with ``ValueError`` over ``max_bytes`` or ``max_depth`` levels.

    Invalid JSON raises ``json.JSONDecodeError`` (a ``ValueError``), as ``json.loads`` does.
    """
    size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
    if size > max_bytes:
        raise ValueError(f"JSON of {size} bytes is over the {max_bytes}-byte limit; refusing to parse it")
    try:
        value = json.loads(data)
    except RecursionError:
        value = None
        too_deep = True
    else:
        too_deep = json_depth(value) > max_depth
    if too_deep:
        raise ValueError(f"JSON nested deeper than {max_depth} levels (the limit); refusing to parse it")
    return value
