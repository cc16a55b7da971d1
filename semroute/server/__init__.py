"""The HTTP gateway (``semroute serve``): Ollama's and OpenAI's APIs over one ``Router``.

A thin shell: it parses requests, calls the router, and writes each API's own response and
error shapes. Not here: caching, verification, routing or pooling decisions. May import:
``router`` and what it exposes (types, errors, settings, metrics, backends), and starlette.

Modules: ``settings`` (ServerSettings, ApiKey), ``gateway`` (which way a call goes),
``auth`` (keys -> namespaces, per-key limits), ``service`` (admission, disconnects, streams),
``http`` (bodies, errors -> statuses), ``ollama_api`` and ``openai_api`` (the two APIs),
``observe`` (metrics, health, access logs), ``app`` (the ASGI app and its lifetime).
Needs the ``serve`` extra (starlette, uvicorn, prometheus-client).
"""

from __future__ import annotations

from .app import create_app
from .settings import ApiKey, ServerSettings

__all__ = ["create_app", "ServerSettings", "ApiKey"]
