"""Argument checks shared by stores: ids, keys, times and feed positions from callers.

A store's public methods take values from users (ids from an API, ``now`` from a clock they
pass in); a wrong type must be an ``InvalidRequest``, not a ``TypeError`` from a dict lookup
three frames down. ``str`` subclasses become plain ``str`` so their own ``__hash__`` or
``__eq__`` never run inside the store. No I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..errors import InvalidRequest

__all__ = ["check_text_id", "check_ids", "check_now", "check_since"]


def check_text_id(value: object, what: str = "entry id") -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a str, got {type(value).__name__}")
    return str.__str__(value)


def check_ids(values: object) -> list[str]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InvalidRequest(f"entry ids must be an iterable of str (not a single string), got {type(values).__name__}")
    return [check_text_id(v) for v in values]


def check_now(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidRequest(f"now must be a number of seconds, got {value!r}")
    return float(value)


def check_since(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"since must be an int feed position, got {value!r}")
    return int(value)
