"""NDJSON off a streamed HTTP body: the body's reads, and the complete lines in them.

Ollama streams one JSON object a line; a read may hold several lines, or end inside one. The
backend parses the lines (``OllamaBackend._group``); here they are only cut out of the reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

__all__ = ["Lines", "body_reads"]


class Lines:
    """Complete, non-blank NDJSON lines out of the reads of a stream (a line may span reads)."""

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        *lines, self._rest = (self._rest + data).split(b"\n")
        return [line for line in lines if line.strip()]


def body_reads(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's reads: raw (one generator less a read) unless the server compressed it."""
    return response.aiter_bytes() if response.headers.get("content-encoding") else response.aiter_raw()
