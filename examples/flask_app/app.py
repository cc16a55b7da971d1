"""A Flask app in front of semroute: ``POST /ask``, ``POST /ask/stream`` and ``GET /metrics``.

Run it (with ``pip install 'semroute[flask]'`` and an Ollama server):

    SEMROUTE_OLLAMA_URLS=http://localhost:11434 flask --app examples/flask_app/app.py run
    curl -s localhost:5000/ask -H 'content-type: application/json' -d '{"question": "Why is the sky blue?"}'
    curl -sN localhost:5000/ask/stream -d '{"question": "Why is the sky blue?"}'   # NDJSON chunks
    curl -s localhost:5000/metrics                                                   # Prometheus text

Under gunicorn (``gunicorn -w 4 --preload 'app:create_app()'``) each worker builds its own
Router on its first request. Settings are read from ``SEMROUTE_*`` environment variables here
; an app factory's ``config`` argument overrides them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request

from semroute.errors import SemrouteError
from semroute.integrations.flask import Semroute
from semroute.integrations.http import error_body, ndjson_lines, parse_ask, status_for

semroute = Semroute()
ENV_KEYS = ("SEMROUTE_CONFIG", "SEMROUTE_DATA_DIR", "SEMROUTE_OLLAMA_URLS", "SEMROUTE_NAMESPACE")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    for key in ENV_KEYS:  # the deployment's settings; the factory's argument wins
        if os.environ.get(key):
            app.config[key] = os.environ[key]
    app.config.update(config or {})
    semroute.init_app(app)

    @app.errorhandler(SemrouteError)
    def semroute_error(exc: SemrouteError):
        return jsonify(error_body(exc)), status_for(exc)

    @app.post("/ask")
    def ask():
        asked = parse_ask(request.get_data())
        answer = semroute.router.ask(asked.question, **asked.options())
        return jsonify(answer.as_dict())

    @app.post("/ask/stream")
    def ask_stream():
        asked = parse_ask(request.get_data())
        chunks = semroute.router.stream(asked.question, **asked.options())
        first = next(chunks)  # errors before the first byte still get a proper status
        return Response(ndjson_lines(first, chunks), mimetype="application/x-ndjson")

    @app.get("/metrics")
    def metrics():
        return Response(semroute.router.metrics.prometheus(), mimetype="text/plain; version=0.0.4")

    return app
