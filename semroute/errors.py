"""The error tree. Every error semroute raises is a ``SemrouteError``.

::

    SemrouteError
    ├── InvalidRequest            bad input; nothing was touched
    ├── ConfigError               bad settings or files
    ├── EmbeddingError
    │   └── DimensionMismatch
    ├── StoreError
    │   └── StoreUnavailable
    ├── BackendError(instance=)
    │   ├── BackendUnavailable
    │   ├── BackendTimeout
    │   │   └── DeadlineExceeded  the caller's per-request deadline passed
    │   └── BackendProtocolError(status=)
    ├── Overloaded(queue_length=, waited_s=)
    ├── NoInstanceAvailable(attempts=)
    └── ModelError
        └── ModelMismatch

Errors from httpx, ollama or redis are wrapped at the edge with ``raise ... from exc``.
Messages, ``BackendError.instance`` and ``NoInstanceAvailable.attempts`` are redacted on
construction (``semroute.redact``): a URL's userinfo and tokens never reach a log or a user.
"""

from __future__ import annotations

from .redact import redact_text

__all__ = [
    "SemrouteError",
    "InvalidRequest",
    "ConfigError",
    "EmbeddingError",
    "DimensionMismatch",
    "StoreError",
    "StoreUnavailable",
    "BackendError",
    "BackendUnavailable",
    "BackendTimeout",
    "DeadlineExceeded",
    "BackendProtocolError",
    "Overloaded",
    "NoInstanceAvailable",
    "ModelError",
    "ModelMismatch",
]


class SemrouteError(Exception):
    """Base of every error semroute raises. String arguments are redacted (no credentials)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact_text(a) if isinstance(a, str) else a for a in args))


class InvalidRequest(SemrouteError, ValueError):
    """The request is malformed (empty, too long, not text, ...). Nothing was read or written."""


class ConfigError(SemrouteError, ValueError):
    """Settings, a config file or an input file is invalid."""


class EmbeddingError(SemrouteError):
    """The embedder failed or returned something unusable."""


class DimensionMismatch(EmbeddingError):
    """A vector's dimension differs from what the index or model expects."""


class StoreError(SemrouteError):
    """The cache store failed."""


class StoreUnavailable(StoreError):
    """The cache store cannot be reached or opened: a ``MemoryStore`` directory that cannot be
    created or is held by another process, or a shared store's server that is down."""


class BackendError(SemrouteError):
    """An LLM instance failed. ``instance`` names it (its host)."""

    def __init__(self, message: str, *, instance: str | None = None) -> None:
        super().__init__(message)
        self.instance = None if instance is None else redact_text(instance)


class BackendUnavailable(BackendError):
    """The instance refused the connection, is unhealthy or said 503.

    ``retry_after`` is the server's ``Retry-After`` in seconds when it sent one, else None.
    """

    def __init__(self, message: str, *, instance: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, instance=instance)
        self.retry_after = retry_after


class BackendTimeout(BackendError):
    """Connect, first-token or total timeout elapsed."""


class DeadlineExceeded(BackendTimeout):
    """The caller's per-request deadline (``deadline_s=``) passed: queued, retrying or streaming."""


class BackendProtocolError(BackendError):
    """The instance answered with an unexpected status or body."""

    def __init__(self, message: str, *, instance: str | None = None, status: int | None = None) -> None:
        super().__init__(message, instance=instance)
        self.status = status


class Overloaded(SemrouteError):
    """Every instance was busy and the request's queue deadline passed."""

    def __init__(self, message: str, *, queue_length: int = 0, waited_s: float = 0.0) -> None:
        super().__init__(message)
        self.queue_length = queue_length
        self.waited_s = waited_s


class NoInstanceAvailable(SemrouteError):
    """No instance could serve the request. ``attempts`` lists (instance, error) pairs tried."""

    def __init__(self, message: str, *, attempts: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.attempts = tuple((redact_text(name), redact_text(error)) for name, error in attempts)


class ModelError(SemrouteError):
    """A trained artifact (classifier, verifier) is missing or unreadable."""


class ModelMismatch(ModelError):
    """A trained artifact was made for another embedder (name or dimension)."""
