"""The semroute views under ``/semroute/`` plus one view of the project's own that uses the Router."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import include, path

from semroute.errors import InvalidRequest
from semroute.integrations.django import get_router


def faq(request: HttpRequest) -> JsonResponse:
    """``GET /faq?q=...``: your own view, calling this process's Router directly."""
    try:
        answer = get_router().ask(request.GET.get("q", ""))
    except InvalidRequest as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"answer": answer.text, "cached": answer.cached})


urlpatterns = [
    path("semroute/", include("semroute.integrations.django.urls")),  # ask/, ask/stream/, metrics/
    path("faq", faq),
]
