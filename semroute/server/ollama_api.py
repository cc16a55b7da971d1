"""Ollama's API over the gateway: ``/api/chat``, ``/api/generate``, ``/api/embed``, ``/api/tags``,
``/api/ps``, ``/api/version`` and ``/``, with Ollama's JSON and NDJSON shapes and its error body
(``{"error": "..."}``; 503 when busy, as Ollama says it).

It parses, calls the ``Gateway`` and writes; who answered goes in ``X-Semroute-*`` headers, so
the bodies stay exactly what Ollama's clients expect. Not supported (400, never silently
ignored): images, tools and structured ``format`` (the cache cannot key them).
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import __version__
from ..errors import InvalidRequest
from ..types import Chunk, Message
from .gateway import ChatCall, Reply, headers_of
from .http import Failure, dumps, read_json
from .service import Service

__all__ = ["routes"]

_ROLES = ("system", "user", "assistant", "tool")
_UNSUPPORTED = ("images", "tools", "format")
NDJSON = "application/x-ndjson"


def _now() -> str:
    """UTC now as Ollama writes ``created_at`` (RFC 3339, microseconds). Once per streamed group:
    the date and time are formatted once a second, the microseconds each call (a third of
    ``datetime.now(...).isoformat()``'s cost; it showed in the profile of 1,000 held streams)."""
    now = time.time()
    second = int(now)
    return f"{_second_text(second)}.{int((now - second) * 1e6):06d}Z"


@functools.lru_cache(maxsize=1)
def _second_text(second: int) -> str:
    return datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def error_response(failure: Failure) -> JSONResponse:
    headers = {} if failure.retry_after_s is None else {"retry-after": str(failure.retry_after_s)}
    return JSONResponse({"error": failure.message}, status_code=failure.status, headers=headers)


def _refuse_unsupported(payload: Mapping[str, Any], where: Mapping[str, Any] | None = None) -> None:
    for name in _UNSUPPORTED:
        if payload.get(name) or (where is not None and where.get(name)):
            raise InvalidRequest(f"'{name}' is not supported by the semroute gateway")


def _messages(payload: Mapping[str, Any]) -> tuple[Message, ...]:
    raw = payload.get("messages")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidRequest("messages must be an array of {role, content} objects")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content", ""), str):
            raise InvalidRequest(f"messages[{i}] must be {{role: system|user|assistant|tool, content: string}}")
        _refuse_unsupported(m)
        out.append(Message(m["role"], m.get("content") or ""))
    return tuple(out)


def _model(payload: Mapping[str, Any]) -> str:
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model is required")
    return model


def _options(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    options = payload.get("options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("options must be an object")
    return options


def _final_fields(reply_or_chunk: Reply | Chunk, started: float) -> dict[str, Any]:
    total = int((time.perf_counter() - started) * 1e9)
    return {"done": True, "done_reason": "stop", "total_duration": total, "load_duration": 0,
            "prompt_eval_count": reply_or_chunk.prompt_tokens, "prompt_eval_duration": 0,
            "eval_count": reply_or_chunk.completion_tokens, "eval_duration": 0}


def _body(kind: str, model: str, text: str) -> dict[str, Any]:
    base: dict[str, Any] = {"model": model, "created_at": _now()}
    if kind == "chat":
        base["message"] = {"role": "assistant", "content": text}
    else:
        base["response"] = text
    return base


def _load_only(kind: str, model: str) -> JSONResponse:
    """Ollama answers an empty prompt by loading the model: ``done_reason: "load"``."""
    return JSONResponse({**_body(kind, model, ""), "done": True, "done_reason": "load"})


async def _answer(service: Service, request: Request, kind: str, call: ChatCall, stream: bool) -> Response:
    started = time.perf_counter()
    if not stream:
        reply = await service.answer(request, call)
        body = dumps({**_body(kind, call.model, reply.text), **_final_fields(reply, started)})  # orjson, not json
        return Response(body, headers=reply.headers(), media_type="application/json")
    first, groups = await service.open_stream(request, call)
    head = first[0]
    headers = headers_of(head.source, tier=head.source if head.source in service.tiers else None,
                         instance=head.instance, similarity=head.similarity, model=head.model)
    return StreamingResponse(_ndjson(service, request, kind, call.model, first, groups, started), media_type=NDJSON,
                             headers=headers)


async def _ndjson(service: Service, request: Request, kind: str, model: str, first: Sequence[Chunk],
                  rest: AsyncIterator[Sequence[Chunk]], started: float) -> AsyncIterator[bytes]:
    """One NDJSON line a chunk; the lines of a group leave in one write."""
    def line(chunk: Chunk, now: str) -> bytes:
        body: dict[str, Any] = {"model": model, "created_at": now}
        if kind == "chat":
            body["message"] = {"role": "assistant", "content": chunk.text}
        else:
            body["response"] = chunk.text
        body.update(_final_fields(chunk, started) if chunk.done else {"done": False})
        return dumps(body) + b"\n"

    async for item in service.relay(request, first, rest):
        if isinstance(item, Failure):
            yield dumps({"error": item.message}) + b"\n"
        else:
            now = _now()
            yield b"".join([line(chunk, now) for chunk in item])


def _handler(service: Service, fn: Callable[[Service, Request], Any]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        try:
            return await fn(service, request)
        except BaseException as exc:  # noqa: BLE001 - every error leaves in Ollama's shape
            failure = service.failure(exc)
            if failure is None:
                raise
            return error_response(failure)

    return endpoint


async def chat(service: Service, request: Request) -> Response:
    payload = await read_json(request, service.settings.max_body_bytes)
    tenant = service.identify(request)
    model = _model(payload)
    _refuse_unsupported(payload)
    messages = _messages(payload)
    if not messages:
        service.gateway.tier_of(model)  # an unknown model is still a 404
        return _load_only("chat", model)
    call = ChatCall(model, messages, tenant.namespace, _options(payload))
    with service.admitted(request, tenant, model):
        return await _answer(service, request, "chat", call, payload.get("stream", True) is not False)


async def generate(service: Service, request: Request) -> Response:
    payload = await read_json(request, service.settings.max_body_bytes)
    tenant = service.identify(request)
    model = _model(payload)
    _refuse_unsupported(payload)
    prompt, system = payload.get("prompt") or "", payload.get("system") or ""
    if not isinstance(prompt, str) or not isinstance(system, str):
        raise InvalidRequest("prompt and system must be strings")
    if not prompt:
        service.gateway.tier_of(model)
        return _load_only("generate", model)
    messages = ((Message("system", system),) if system else ()) + (Message("user", prompt),)
    call = ChatCall(model, messages, tenant.namespace, _options(payload))
    with service.admitted(request, tenant, model):
        return await _answer(service, request, "generate", call, payload.get("stream", True) is not False)


async def embed(service: Service, request: Request) -> Response:
    payload = await read_json(request, service.settings.max_body_bytes)
    tenant = service.identify(request)
    model = _model(payload)
    raw = payload.get("input", "")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest("input must be a string or an array of strings")
    with service.admitted(request, tenant, model):
        vectors = await service.run(request, service.gateway.embed(model, texts))
    return JSONResponse({"model": model, "embeddings": vectors})


async def tags(service: Service, request: Request) -> Response:
    service.identify(request)
    entries = [{"name": m, "model": m, "modified_at": _now(), "size": 0, "digest": "",
                "details": {"format": "", "family": "", "parameter_size": "", "quantization_level": ""}}
               for m in service.gateway.models()]
    return JSONResponse({"models": entries})


async def ps(service: Service, request: Request) -> Response:
    service.identify(request)
    entries = [{"name": m, "model": m, "size": 0, "digest": "", "expires_at": _now(), "size_vram": 0,
                "details": {"format": "", "family": "", "parameter_size": "", "quantization_level": ""}}
               for m in service.gateway.loaded()]
    return JSONResponse({"models": entries})


async def version(service: Service, request: Request) -> Response:
    return JSONResponse({"version": __version__})


async def root(service: Service, request: Request) -> Response:
    return PlainTextResponse("Ollama is running")


def routes(service: Service) -> list[Route]:
    table = [("/api/chat", chat, ["POST"]), ("/api/generate", generate, ["POST"]), ("/api/embed", embed, ["POST"]),
             ("/api/tags", tags, ["GET"]), ("/api/ps", ps, ["GET"]), ("/api/version", version, ["GET"]),
             ("/", root, ["GET", "HEAD"])]
    return [Route(path, _handler(service, fn), methods=methods) for path, fn, methods in table]
