"""One model request inside ``FakeOllama``: wait as ``Timing`` says, then answer like Ollama.

``Generation`` answers ``/api/chat``, ``/api/generate`` (NDJSON stream or one object) and
``/api/embed`` on a connection that already holds a parallel slot. It knows nothing about
capacity, routing or counters; it calls ``on_complete`` when the whole answer is about to go
out, and its methods return False when the connection must close.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import fake_content as content
from .fake_config import Fault, Timing
from .http11 import HttpConnection

__all__ = ["Generation"]

_JSON = "application/json; charset=utf-8"
_NDJSON = "application/x-ndjson"
# How often a non-streamed answer re-reads the number of streams under a speed curve: short
# next to the 100 ms-plus answers the curve is meant for, long next to the event loop's wakeup
# cost (at 5 ms, 16 streams woke the loop 3,200 times a second and a fleet on a busy 2-core
# machine fell behind its own clock in bench/plan_check.py).
_QUANTUM_MS = 20.0


async def _sleep_ms(ms: float) -> None:
    if ms > 0:
        await asyncio.sleep(ms / 1000.0)


def _line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


class Generation:
    """Answers one inference request."""

    def __init__(
        self,
        conn: HttpConnection,
        endpoint: str,
        model: str,
        payload: Mapping[str, Any],
        timing: Timing,
        extra_words: int,
        on_complete: Callable[[int], None],
        *,
        reply: Callable[[str, str], str | None] | None = None,
        streams: Callable[[], int] = lambda: 1,
    ) -> None:
        self._conn = conn
        self._endpoint = endpoint
        self._model = model
        self._payload = payload
        self._timing = timing
        self._extra_words = extra_words
        # Called with the token count just before the last bytes go out, so a client that has
        # its answer always finds it counted (counting after the write would race the client).
        self._on_complete = on_complete
        self._reply_fn = reply  # scripted answers (see FakeOllama's ``reply``)
        self._streams = streams  # requests holding slots now: sets the per-stream speed

    async def _reply(self, status: int, body: Mapping[str, Any]) -> bool:
        await self._conn.respond(status, json.dumps(body).encode(), _JSON)
        return True

    def _prompt(self) -> tuple[str, list[str]] | str:
        """(prompt to answer, all prompt texts) or an error message."""
        payload = self._payload
        if self._endpoint == "chat":
            messages = payload.get("messages") or []
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                return "messages must be a list of objects"
            return content.last_user_message(messages), [str(m.get("content") or "") for m in messages]
        prompt, system = payload.get("prompt") or "", payload.get("system") or ""
        if not isinstance(prompt, str) or not isinstance(system, str):
            return "prompt and system must be strings"
        return prompt, [system, prompt]

    def _tokens(self, prompt: str, load_only: bool) -> tuple[list[str], str]:
        if load_only:  # Ollama answers an empty request by loading the model
            return [], "load"
        scripted = self._reply_fn(self._model, prompt) if self._reply_fn is not None else None
        if scripted is None:
            tokens = content.answer_tokens(self._model, prompt, self._extra_words)
        else:
            tokens = [w if i == 0 else f" {w}" for i, w in enumerate(str(scripted).split())]
        options = self._payload.get("options") or {}
        limit = options.get("num_predict") if isinstance(options, dict) else None
        if isinstance(limit, int) and 0 < limit < len(tokens):
            return tokens[:limit], "length"
        return tokens, "stop"

    def _piece(self, text: str) -> dict[str, Any]:
        base: dict[str, Any] = {"model": self._model, "created_at": content.now_iso()}
        if self._endpoint == "chat":
            base["message"] = {"role": "assistant", "content": text}
        else:
            base["response"] = text
        base["done"] = False
        return base

    async def generate(self, fault: Fault | None) -> bool:
        """Answer chat/generate; ``fault`` (a drop) cuts the answer short."""
        t0 = time.perf_counter_ns()
        parsed = self._prompt()
        if isinstance(parsed, str):
            return await self._reply(400, {"error": parsed})
        prompt, texts = parsed
        load_only = (self._endpoint == "chat" and not self._payload.get("messages")) or (
            self._endpoint == "generate" and not prompt
        )
        try:
            tokens, reason = self._tokens(prompt, load_only)
        except Exception as exc:  # a broken reply script is the test's bug: show it as a 500
            return await self._reply(500, {"error": f"fake ollama: reply function failed: {exc!r}"})
        timing = self._timing
        await _sleep_ms(timing.latency_ms)
        t_loaded = time.perf_counter_ns()
        await _sleep_ms(timing.ttft_ms)
        t_first = time.perf_counter_ns()
        stream = self._payload.get("stream", True) is not False
        if stream:
            if not await self._stream(tokens, fault):
                return False
        else:
            await self._decode(max(0, len(tokens) - 1))
            if fault is not None:
                return False  # drop: close without any response
        t_end = time.perf_counter_ns()
        final = self._piece("" if stream else "".join(tokens))
        final["done_reason"], final["done"] = reason, True
        if not load_only:
            final.update(
                total_duration=t_end - t0,
                load_duration=t_loaded - t0,
                prompt_eval_count=content.count_prompt_tokens(texts),
                prompt_eval_duration=t_first - t_loaded,
                eval_count=len(tokens),
                eval_duration=t_end - t_first,
            )
            if self._endpoint == "generate":
                final["context"] = list(range(1, len(tokens) + 1))
        self._on_complete(len(tokens))
        if stream:
            await self._conn.send_chunk(_line(final))
            await self._conn.end_stream()
        else:
            await self._reply(200, final)
        return True

    async def _decode(self, tokens: int) -> None:
        """Wait while ``tokens`` are generated; with a speed curve, at the speed the current
        number of streams allows, re-evaluated every few milliseconds (processor sharing)."""
        timing = self._timing
        if not timing.parallel_speedup:
            await _sleep_ms(timing.token_delay_ms * tokens)
            return
        left = float(tokens)
        while left > 1e-9 and timing.token_delay_ms > 0:
            per_token = timing.token_delay_ms * timing.slowdown(self._streams())
            t0 = time.perf_counter()
            await _sleep_ms(min(left * per_token, _QUANTUM_MS))
            # Progress by the time actually slept: an oversleep is not lost time for the total.
            left -= (time.perf_counter() - t0) * 1000.0 / per_token

    async def _stream(self, tokens: list[str], fault: Fault | None) -> bool:
        """Send the tokens, one NDJSON line each; False when a drop fault cut the stream."""
        await self._conn.start_stream(200, _NDJSON)
        for i, token in enumerate(tokens):
            if fault is not None and i >= fault.after_chunks:
                return False
            if i:
                await _sleep_ms(self._timing.token_delay_ms * self._timing.slowdown(self._streams()))
            await self._conn.send_chunk(_line(self._piece(token)))
        return fault is None  # a drop after every token still loses the final line

    async def embed(self, dim: int, fault: Fault | None) -> bool:
        """Answer ``/api/embed`` with deterministic unit vectors, one per input."""
        t0 = time.perf_counter_ns()
        raw = self._payload.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs):
            return await self._reply(400, {"error": "invalid input type: input must be a string or a list of strings"})
        await _sleep_ms(self._timing.latency_ms)
        if fault is not None:
            return False
        vectors = [content.embed_vector(self._model, text, dim) for text in inputs]
        t_end = time.perf_counter_ns()
        self._on_complete(0)
        await self._reply(
            200,
            {
                "model": self._model,
                "embeddings": vectors,
                "total_duration": t_end - t0,
                "load_duration": 0,
                "prompt_eval_count": content.count_prompt_tokens(inputs),
            },
        )
        return True
