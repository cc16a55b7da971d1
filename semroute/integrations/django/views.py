"""Django views over this process's Router: ``ask`` (JSON), ``ask_stream`` (NDJSON), ``metrics``.

Thin shells over ``semroute.integrations.http``: the request body is ``{"question": ...}``;
typed errors become JSON with a status (400 bad input, 502/503 backend trouble). The views are
CSRF-exempt because they take JSON from API clients, not forms; put your own authentication
in front of them (a decorator or middleware) before exposing them.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from ...errors import SemrouteError
from ..http import error_body, ndjson_lines, parse_ask, status_for
from . import get_router

__all__ = ["ask", "ask_stream", "metrics"]


@csrf_exempt
@require_POST
def ask(request: HttpRequest) -> HttpResponse:
    """``POST {"question": ...}`` -> ``Answer.as_dict()`` (text, source, similarity, tier, ...)."""
    try:
        asked = parse_ask(request.body)
        answer = get_router().ask(asked.question, **asked.options())
    except SemrouteError as exc:
        return JsonResponse(error_body(exc), status=status_for(exc))
    return JsonResponse(answer.as_dict())


@csrf_exempt
@require_POST
def ask_stream(request: HttpRequest) -> HttpResponse:
    """``POST {"question": ...}`` -> NDJSON chunks; errors before the first chunk get a status."""
    try:
        asked = parse_ask(request.body)
        chunks = get_router().stream(asked.question, **asked.options())
        first = next(chunks)
    except SemrouteError as exc:
        return JsonResponse(error_body(exc), status=status_for(exc))
    return StreamingHttpResponse(ndjson_lines(first, chunks), content_type="application/x-ndjson")


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text of this process's Router."""
    return HttpResponse(get_router().metrics.prometheus(), content_type="text/plain; version=0.0.4")
