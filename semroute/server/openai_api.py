"""OpenAI's API over the gateway: ``/v1/chat/completions`` (JSON or SSE), ``/v1/embeddings`` (passed to
the named model's pool) and ``/v1/models``, with
OpenAI's shapes and error body (``{"error": {"message", "type", "param", "code"}}``; 429 with
``Retry-After`` when busy, as OpenAI's SDKs expect for a retry).

Sampling fields (``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``stop``) become the
model's options on the uncached path; cached answers ignore them. Not supported (400): ``n`` > 1,
tools, images and other non-text content parts. Who answered is in ``X-Semroute-*`` headers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import InvalidRequest
from ..types import Chunk, Message
from .gateway import ChatCall, headers_of
from .http import Failure, dumps, read_json
from .service import Service

__all__ = ["routes"]

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
_TYPES = {"unauthorized": ("invalid_request_error", "invalid_api_key"), "rate_limited": ("rate_limit_error", None),
          "overloaded": ("rate_limit_error", "server_overloaded"), "model_not_found": ("invalid_request_error",
          "model_not_found"), "too_large": ("invalid_request_error", "request_too_large"),
          "invalid_request": ("invalid_request_error", None)}
_OPTIONS = {"temperature": "temperature", "top_p": "top_p", "max_tokens": "num_predict",
            "max_completion_tokens": "num_predict", "seed": "seed", "stop": "stop",
            "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty"}


def error_response(failure: Failure) -> JSONResponse:
    status = 429 if failure.kind == "overloaded" else failure.status  # OpenAI's SDKs retry a 429
    kind, code = _TYPES.get(failure.kind, ("server_error", None))
    headers = {} if failure.retry_after_s is None else {"retry-after": str(failure.retry_after_s)}
    param = "model" if failure.kind == "model_not_found" else None
    body = {"error": {"message": failure.message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _content(value: object, i: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        return "".join(str(p.get("text", "")) for p in value)
    raise InvalidRequest(f"messages[{i}].content must be a string or text parts")


def _call(payload: Mapping[str, Any], namespace: str | None) -> ChatCall:
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("you must provide a model parameter")
    if payload.get("n", 1) != 1:
        raise InvalidRequest("n must be 1 on the semroute gateway")
    if payload.get("tools") or payload.get("functions"):
        raise InvalidRequest("tools are not supported by the semroute gateway")
    raw = payload.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("messages must be a non-empty array")
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise InvalidRequest(f"messages[{i}] must have a role of system, developer, user, assistant or tool")
        messages.append(Message(_ROLES[m["role"]], _content(m.get("content") or "", i)))  # type: ignore[arg-type]
    options = {_OPTIONS[k]: v for k, v in payload.items() if k in _OPTIONS and v is not None}
    return ChatCall(model, tuple(messages), namespace, options or None)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def chat_completions(service: Service, request: Request) -> Response:
    payload = await read_json(request, service.settings.max_body_bytes)
    tenant = service.identify(request)
    call = _call(payload, tenant.namespace)
    service.gateway.tier_of(call.model)
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    with service.admitted(request, tenant, call.model):
        if not payload.get("stream"):
            reply = await service.answer(request, call)
            headers = reply.headers()
            return JSONResponse({
                "id": ident, "object": "chat.completion", "created": created, "model": call.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": _usage(reply.prompt_tokens, reply.completion_tokens),
            }, headers=headers)
        first, rest = await service.open_stream(request, call)
        head = first[0]
        headers = headers_of(head.source, tier=head.source if head.source in service.tiers else None,
                             instance=head.instance, similarity=head.similarity, model=head.model)
        usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        frames = _sse(service, request, first, rest, {"id": ident, "created": created, "model": call.model}, usage)
        return StreamingResponse(frames, media_type="text/event-stream", headers={**headers, "cache-control": "no-cache"})


async def _sse(service: Service, request: Request, first: Sequence[Chunk], rest: AsyncIterator[Sequence[Chunk]],
               head: dict[str, Any], usage: bool) -> AsyncIterator[bytes]:
    """Server-sent events, one a chunk; the events of a group leave in one write."""
    def frame(delta: dict[str, str], finish: str | None, **extra: Any) -> bytes:
        body = {**head, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
        return b"data: " + dumps(body) + b"\n\n"

    def frames(chunk: Chunk) -> list[bytes]:
        out = [frame({"content": chunk.text}, None)] if chunk.text else []
        if chunk.done:
            out.append(frame({}, "stop"))
            if usage:
                body = {**head, "object": "chat.completion.chunk", "choices": [],
                        "usage": _usage(chunk.prompt_tokens, chunk.completion_tokens)}
                out.append(b"data: " + dumps(body) + b"\n\n")
        return out

    yield frame({"role": "assistant", "content": ""}, None)
    async for item in service.relay(request, first, rest):
        if isinstance(item, Failure):
            kind, code = _TYPES.get(item.kind, ("server_error", None))
            error = {"error": {"message": item.message, "type": kind, "param": None, "code": code}}
            yield b"data: " + dumps(error) + b"\n\n"
            return
        if data := b"".join([part for chunk in item for part in frames(chunk)]):
            yield data
    yield b"data: [DONE]\n\n"


async def embeddings(service: Service, request: Request) -> Response:
    payload = await read_json(request, service.settings.max_body_bytes)
    tenant = service.identify(request)
    model, raw = payload.get("model"), payload.get("input")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("you must provide a model parameter")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest("input must be a string or a non-empty array of strings")
    with service.admitted(request, tenant, model):
        vectors = await service.run(request, service.gateway.embed(model, texts))
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return JSONResponse({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 0, "total_tokens": 0}})


async def models(service: Service, request: Request) -> Response:
    service.identify(request)
    created = int(time.time())
    data = [{"id": m, "object": "model", "created": created, "owned_by": "semroute"} for m in service.gateway.models()]
    return JSONResponse({"object": "list", "data": data})


def _handler(service: Service, fn: Callable[[Service, Request], Any]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        try:
            return await fn(service, request)
        except BaseException as exc:  # noqa: BLE001 - every error leaves in OpenAI's shape
            failure = service.failure(exc)
            if failure is None:
                raise
            return error_response(failure)

    return endpoint


def routes(service: Service) -> list[Route]:
    return [Route("/v1/chat/completions", _handler(service, chat_completions), methods=["POST"]),
            Route("/v1/embeddings", _handler(service, embeddings), methods=["POST"]),
            Route("/v1/models", _handler(service, models), methods=["GET"])]
