"""What must never cross a boundary: another namespace's answers, and credentials in URLs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import tempfile
from pathlib import Path

from reliability_helpers import SMALL, light_router
from semroute.errors import SemrouteError
from semroute.testing import FakeOllama

SCOPES = [(f"tenant-{t}", system) for t in range(8) for system in (None, "be brief", "answer as a pirate")]


def isolation(questions: int = 40) -> dict[str, object]:
    """Warm every question in one scope with a marked answer, ask it from every other scope."""
    asks = leaks = 0
    examples: list[str] = []
    with FakeOllama([SMALL]) as fake, light_router([fake.url], Path(tempfile.mkdtemp())) as router:
        texts = [f"What does rule {i} of the road say about cyclists?" for i in range(questions)]
        for n, (namespace, system) in enumerate(SCOPES):
            router.warm([(q, f"MARK[{n}]{i}") for i, q in enumerate(texts[n % 4::4])], namespace=namespace, system=system)
        for n, (namespace, system) in enumerate(SCOPES):
            for q in texts:
                answer = router.ask(q, namespace=namespace, system=system)
                asks += 1
                own = answer.text.startswith(f"MARK[{n}]")
                if answer.text.startswith("MARK[") and not own:
                    leaks += 1
                    examples.append(f"{namespace}/{system}: {q} -> {answer.text}")
    return {"cross_scope_asks": asks, "leaks": leaks, "examples": examples[:5], "target_met": leaks == 0}


def redaction() -> dict[str, object]:
    """Secrets in host URLs, counted in everything the library shows while instances fail."""
    password, token = "pa55w0rd-BENCH", "t0ken-BENCH"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("semroute")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    shown: list[str] = []
    try:
        with FakeOllama([SMALL]) as a, FakeOllama([SMALL]) as b:
            hosts = [f"http://admin:{password}@127.0.0.1:{a.port}", f"http://127.0.0.1:{b.port}/?token={token}"]
            with light_router(hosts, Path(tempfile.mkdtemp())) as router:
                router.ask("warm up")
                for fake in (a, b):
                    fake.set_fault("refuse")
                for i in range(20):
                    for call in (lambda: router.ask(f"q{i}"), lambda: list(router.stream(f"s{i}")),
                                 lambda: asyncio.run(router.aask(f"a{i}"))):
                        try:
                            call()
                        except SemrouteError as exc:
                            shown += [str(exc), repr(exc), repr(getattr(exc, "attempts", ""))]
                shown += [json.dumps(router.stats(), default=str), router.metrics.prometheus()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    shown.append(stream.getvalue())
    found = sum(text.count(password) + text.count(token) for text in shown)
    return {"texts_checked": len(shown), "log_chars": len(stream.getvalue()), "secrets_found": found,
            "target_met": found == 0}
