"""Backend settings as value objects: ``Timeout``.

Settings hold numbers only; they open nothing and read no environment. A backend turns them
into its client's configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["Timeout"]


@dataclass(frozen=True, slots=True)
class Timeout:
    """How long a backend waits, in seconds.

    ``connect``: to open the TCP connection (also bounds ``health()``).
    ``read``: the longest silence while a request runs, that is the wait for the first token
    (which includes queueing and model loading on the server) and each gap between streamed
    tokens. ``total``: the whole request, first byte to last (None: no limit). A streamed
    answer that passes ``total`` fails with ``BackendTimeout`` after the chunks already given.
    """

    connect: float = 3.0
    read: float = 120.0
    total: float | None = None

    def __post_init__(self) -> None:
        for name in ("connect", "read", "total"):
            value = getattr(self, name)
            if value is None and name == "total":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
                raise ConfigError(f"Timeout.{name} must be a positive number of seconds, got {value!r}")

    @property
    def effective_read(self) -> float:
        """A single silence longer than ``total`` breaks ``total`` too, so it bounds ``read``."""
        return self.read if self.total is None else min(self.read, self.total)
