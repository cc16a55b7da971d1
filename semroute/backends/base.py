"""The backend seam: one LLM instance (an Ollama server) that can chat, stream and embed.

Sync and async variants share names (``chat``/``achat``, ``stream``/``astream``). A backend
raises only ``BackendError`` subclasses, with ``instance`` set to its name, so pools can
fail over. Streaming backends raise ``BackendError`` on a failure after the first chunk;
the caller must not retry then (the user would see text twice). A backend may also offer
``astream_groups`` (the chunks that arrived in one read, together: ``semroute.backends.groups``);
``OllamaBackend`` does, and the gateway relays a proxied stream group by group.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Protocol, runtime_checkable

from ..settings import Timeout
from ..types import Chunk, Completion, Message

__all__ = ["Backend", "BackendFactory", "AsyncClosable", "EmbeddingBackend", "GroupStreaming"]


@runtime_checkable
class Backend(Protocol):
    """One LLM instance."""

    name: str

    # Each call may also take ``options=`` (Ollama's model options); pools pass it only when a
    # caller or the tier gave some, so a backend without the keyword still serves plain calls.

    def chat(self, model: str, messages: Sequence[Message]) -> Completion: ...

    def stream(self, model: str, messages: Sequence[Message]) -> Iterator[Chunk]: ...

    async def achat(self, model: str, messages: Sequence[Message]) -> Completion: ...

    def astream(self, model: str, messages: Sequence[Message]) -> AsyncIterator[Chunk]: ...

    def models(self) -> list[str]:
        """Models the instance has (``/api/tags``)."""
        ...

    def loaded_models(self) -> list[str]:
        """Models currently loaded in memory (``/api/ps``)."""
        ...

    def health(self) -> bool:
        """True when the instance answers; never raises."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class BackendFactory(Protocol):
    """Makes the backend for one host of a tier, with the tier's ``Timeout``.

    ``OllamaBackend`` is one (``OllamaBackend(host, timeout=...)``); pass your own to
    ``Router(backend_factory=...)`` to put another client behind the same pool.
    """

    def __call__(self, host: str, *, timeout: Timeout) -> Backend: ...


@runtime_checkable
class AsyncClosable(Protocol):
    """A backend that also holds event-loop connections, closed with ``await aclose()``."""

    async def aclose(self) -> None: ...


@runtime_checkable
class EmbeddingBackend(Backend, Protocol):
    """A backend that also embeds texts (Ollama's ``/api/embed``, OpenAI's ``/v1/embeddings``)."""

    async def aembed(self, model: str, texts: Sequence[str]) -> list[list[float]]: ...


@runtime_checkable
class GroupStreaming(Protocol):
    """A backend that can hand over a stream's chunks in the groups that arrived in one read
    (``semroute.backends.groups``): a proxy relaying them pays its per-chunk costs once per read."""

    def astream_groups(self, model: str, messages: Sequence[Message]) -> AsyncIterator[Sequence[Chunk]]: ...
