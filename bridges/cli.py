"""One command-line grammar for the project's entry points (train, cold start, evaluate).

The options are a dataclass whose fields carry their help text (``option(default, "help")``);
one parser reads any such dataclass from the command line, YAML values or a dict:

- ``--key value``, ``--key=value`` or ``key=value``; dashes and underscores in a key are the same;
- a bool key also stands alone (``--quiet``, followed by the next option or nothing) or takes
  a value (``--progress false``);
- a ``list`` key is repeatable (``--param size=6 --param colors=4``);
- ``None`` (or ``none``/``null``) sets an optional key to ``None``;
- unknown keys, bad values and values outside a field's ``choices`` raise ``ValueError``
  naming the key, the value and what is allowed (close matches of a misspelt key too).

It imports only the standard library, so parsing argv loads neither JAX nor torch.

>>> from dataclasses import dataclass
>>> @dataclass
... class Options:
...     steps: int = option(3, "how many")
...     quiet: bool = option(False, "no progress bar")
>>> parse(Options, ["--steps", "5", "--quiet"])
Options(steps=5, quiet=True)
>>> parse(Options, ["steps=1e3", "--quiet=false"])
Options(steps=1000, quiet=False)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")


def option(default: Any = dataclasses.MISSING, help: str = "", *,  # noqa: A002 (argparse's name)
           default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
           choices: Sequence[Any] | None = None) -> Any:
    """A dataclass field with its help text (and allowed values) in the field's metadata."""
    metadata = {"help": " ".join(help.split()), "choices": tuple(choices) if choices is not None else None}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_help(cls: type) -> dict[str, str]:
    """Each field's help text (``''`` where it has none)."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def _hint(cls: type, key: str) -> tuple[Any, bool]:
    """The field's type with ``None`` taken out, and whether ``None`` is allowed."""
    hint = typing.get_type_hints(cls)[key]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def _is(hint: Any, kind: type) -> bool:
    return hint is kind or typing.get_origin(hint) is kind


def unknown_key(cls: type, key: str) -> ValueError:
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; known keys: {', '.join(names)}"
    return ValueError(f"unknown config key {key!r}{hint}")


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def coerce(cls: type, key: str, value: Any) -> Any:
    """Convert ``value`` (a YAML value or a command-line string) to the type of field ``key``."""
    fields = _fields(cls)
    if key not in fields:
        raise unknown_key(cls, key)
    hint, optional = _hint(cls, key)
    value = _convert(key, value, hint, optional)
    choices = fields[key].metadata.get("choices")
    if choices is not None and value is not None and value not in choices:
        raise ValueError(f"{key}={value!r} is invalid; allowed: {', '.join(map(str, choices))}")
    return value


def _convert(key: str, value: Any, hint: Any, optional: bool) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if optional and text.lower() in ("none", "null", ""):
            return None
        if hint is bool:
            if text.lower() in TRUE:
                return True
            if text.lower() in FALSE:
                return False
            raise ValueError(f"{key}={value!r} is not a boolean; allowed: true or false")
        if _is(hint, dict):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"{key}={value!r} is not a JSON object ({error})") from error
        elif _is(hint, list):
            return [text]
        elif hint in (int, float):
            try:
                number = hint(text) if hint is float or "e" not in text.lower() else float(text)
            except ValueError:
                raise ValueError(f"{key}={value!r} is not a valid {hint.__name__}") from None
            if hint is int and isinstance(number, float):  # 1e3 is an int, 1.5e0 is not
                if not number.is_integer():
                    raise ValueError(f"{key}={value!r} is not a whole number; {key} needs an int")
                number = int(number)
            return number
        else:
            return text
    if value is None:
        if optional:
            return None
        raise ValueError(f"{key}=None is invalid; {key} needs a {getattr(hint, '__name__', hint)}")
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}={value!r} is not a boolean; allowed: true or false")
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint is str and isinstance(value, str):
        return value
    if _is(hint, dict) and isinstance(value, dict):
        return dict(value)
    if _is(hint, list) and isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    raise ValueError(f"{key}={value!r} has the wrong type; expected {getattr(hint, '__name__', hint)}")


def split_overrides(argv: Sequence[str], cls: type | None = None) -> list[tuple[str, str]]:
    """``(key, value)`` pairs of ``argv`` in the grammar of the module doc; ``cls`` tells
    which keys are bools (and so may stand alone)."""
    bools = set()
    if cls is not None:
        bools = {name for name in _fields(cls) if _hint(cls, name)[0] is bool}
    pairs, i = [], 0
    argv = list(argv)
    while i < len(argv):
        token = argv[i]
        if token.startswith("--"):
            body = token[2:]
            if "=" in body:
                key, value = body.split("=", 1)
            elif body.replace("-", "_") in bools and (
                i + 1 >= len(argv) or argv[i + 1].startswith("--") or "=" in argv[i + 1]
            ):  # a flag standing alone: what follows is the next option
                key, value = body, "true"
            else:
                if i + 1 >= len(argv):
                    raise ValueError(f"option --{body} needs a value")
                key, value = body, argv[i + 1]
                i += 1
        elif "=" in token:
            key, value = token.split("=", 1)
        else:
            raise ValueError(f"cannot read argument {token!r}; write --key value, --key=value or key=value")
        pairs.append((key.replace("-", "_"), value))
        i += 1
    return pairs


def apply(config: T, pairs: Iterable[tuple[str, Any]]) -> T:
    """``config`` with each ``(key, value)`` set in turn (a list key appends)."""
    for key, value in pairs:
        converted = coerce(type(config), key, value)
        if isinstance(converted, list) and isinstance(value, str):
            converted = [*getattr(config, key), *converted]
        setattr(config, key, converted)
    return config


def parse(cls: type[T], argv: Sequence[str], base: T | None = None) -> T:
    """``base`` (default: ``cls()``) with the command line ``argv`` applied."""
    config = dataclasses.replace(base) if base is not None else cls()  # type: ignore[type-var]
    return apply(config, split_overrides(argv, cls))


def _type_name(cls: type, key: str) -> str:
    hint, optional = _hint(cls, key)
    name = "flag" if hint is bool else "repeatable" if _is(hint, list) else getattr(
        typing.get_origin(hint) or hint, "__name__", str(hint))
    return f"{name} or None" if optional else name


def help_text(cls: type, usage: str, *, sections: Sequence[str] = (), required: Sequence[str] = ()) -> str:
    """``usage``, any extra ``sections``, then one line per key: type, default, choices, help."""
    lines = [usage.strip(), ""]
    for section in sections:
        lines += [section, ""]
    lines.append("Options (--key value, --key=value or key=value; - or _ in a key; a flag also stands alone):")
    for f in dataclasses.fields(cls):
        if f.name in required:
            default = "required"
        else:
            value = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            default = repr(value)
        choices = f.metadata.get("choices")
        allowed = f"; one of {', '.join(map(str, choices))}" if choices else ""
        text = f.metadata.get("help", "")
        entry = f"  --{f.name} ({_type_name(cls, f.name)}, {default}{allowed})" + (f": {text}" if text else "")
        lines.append(textwrap.fill(entry, width=110, subsequent_indent=" " * 6, break_on_hyphens=False))
    return "\n".join(lines)
