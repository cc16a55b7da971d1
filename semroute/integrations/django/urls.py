"""``path("semroute/", include("semroute.integrations.django.urls"))``: ask/, ask/stream/, metrics/."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "semroute"
urlpatterns = [
    path("ask/", views.ask, name="ask"),
    path("ask/stream/", views.ask_stream, name="ask-stream"),
    path("metrics/", views.metrics, name="metrics"),
]
