"""Fuzzing semroute's public entry points with hypothesis: every call ends in an answer or a
documented ``SemrouteError``, never in another exception.

``calls()`` is a hypothesis strategy of ``Call``s (an entry point name plus arguments drawn
from hostile values: wrong types, lone surrogates, ``str`` subclasses whose methods raise or
lie, huge and empty texts, NaN, nested junk); ``Targets`` holds the real objects a call runs
against (a router, a pool, a store, an Ollama embedder, the CLI) and ``Targets.run`` runs one
call and says how it ended. The standing test suite runs a few hundred cases; the
reliability bench runs tens of thousands.

Needs ``hypothesis`` (installed by the ``dev`` extra); nothing else in semroute imports this.
This module does not start servers: the caller passes targets already pointed at them.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import strategies as st

from ..errors import SemrouteError
from ..types import CacheEntry, Message

__all__ = ["Call", "Outcome", "Targets", "calls", "hostile_values", "ENTRY_POINTS"]

Outcome = Literal["ok", "typed", "untyped"]


class _EvilStr(str):
    """A ``str`` whose own methods misbehave: what a caller's odd string type might do."""

    def encode(self, *args: Any, **kwargs: Any) -> bytes:  # type: ignore[override]
        raise UnicodeEncodeError("utf-8", str(self), 0, 1, "evil encode")

    def strip(self, *args: Any) -> str:  # type: ignore[override]
        raise RuntimeError("evil strip")

    def __len__(self) -> int:
        return -1 if False else 10**9

    def __hash__(self) -> int:
        raise TypeError("evil hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("evil eq")

    def __format__(self, spec: str) -> str:
        raise ValueError("evil format")

    def __str__(self) -> str:
        raise RuntimeError("evil str")

    def lower(self) -> str:  # type: ignore[override]
        raise RuntimeError("evil lower")


class _LyingStr(str):
    """A ``str`` whose methods return the wrong types."""

    def strip(self, *args: Any) -> Any:  # type: ignore[override]
        return None

    def encode(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return 42

    def __len__(self) -> int:
        return 0


def _texts() -> st.SearchStrategy[str]:
    surrogate = st.sampled_from(["\ud800", "\udfff", "\udc80"])
    plain = st.text(max_size=60)
    return st.one_of(
        plain,
        st.builds(lambda a, s, b: a + s + b, plain, surrogate, plain),
        st.sampled_from(["", " ", "\n", "\x00", "What is 5!", "x²", "a" * 5000, "İı", "tenant-a\n", "😀" * 3]),
        plain.map(_EvilStr),
        plain.map(_LyingStr),
    )


def hostile_values() -> st.SearchStrategy[Any]:
    """Anything a caller might pass where a string (or a number) is expected."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.binary(max_size=16),
        _texts(),
        st.just(object()),
        st.just(math.inf),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                                st.dictionaries(st.text(max_size=5), inner, max_size=3)),
        max_leaves=6,
    )


def _messages() -> st.SearchStrategy[Any]:
    message = st.builds(Message, st.one_of(st.sampled_from(["user", "system", "assistant", "tool"]), hostile_values()),
                        st.one_of(_texts(), hostile_values()))
    return st.one_of(st.lists(message, max_size=3), st.lists(message, max_size=2).map(tuple), hostile_values())


def _entries() -> st.SearchStrategy[Any]:
    import numpy as np

    vector = st.one_of(st.just(np.ones(16, dtype=np.float32)), st.just(np.zeros(16, dtype=np.float32)),
                       st.just(np.full(16, np.nan, dtype=np.float32)), st.just(np.ones(3, dtype=np.float32)), hostile_values())
    entry = st.builds(
        CacheEntry,
        id=st.one_of(_texts(), hostile_values()),
        key=st.one_of(_texts(), hostile_values()),
        scope=st.one_of(st.just("ns|p"), _texts(), hostile_values()),
        namespace=st.one_of(st.just("ns"), hostile_values()),
        question=st.one_of(_texts(), hostile_values()),
        answer=st.one_of(_texts(), hostile_values()),
        vector=vector,
        created_at=st.one_of(st.floats(), hostile_values()),
        expires_at=st.one_of(st.none(), st.floats(), hostile_values()),
    )
    return st.one_of(st.lists(entry, max_size=3), hostile_values())


@dataclass(frozen=True)
class Call:
    """One call of an entry point: ``name`` (see ``ENTRY_POINTS``), positional and keyword args."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        try:
            return f"Call({self.name}, {self.args!r:.300}, {dict(self.kwargs)!r:.300})"
        except Exception:  # noqa: BLE001 - an evil str's repr is still a str's repr; this is belt and braces
            return f"Call({self.name}, <unprintable>)"


def _ask_kwargs() -> st.SearchStrategy[dict[str, Any]]:
    optional = st.one_of(st.none(), hostile_values())
    return st.fixed_dictionaries(
        {},
        optional={"namespace": st.one_of(st.just("tenant-a"), optional), "system": optional,
                  "tier": st.one_of(st.sampled_from(["small", "large", ["small"], "huge"]), optional)},
    )


def calls() -> st.SearchStrategy[Call]:
    """A hypothesis strategy over every fuzzed entry point (``ENTRY_POINTS``)."""
    question = st.one_of(_texts(), hostile_values())
    router_call = st.builds(lambda n, q, kw: Call(n, (q,), kw),
                            st.sampled_from(["ask", "aask", "stream", "astream"]), question, _ask_kwargs())
    warm = st.builds(
        lambda pairs, kw: Call("warm", (pairs,), kw),
        st.one_of(st.lists(st.tuples(question, question), max_size=3), hostile_values()),
        st.fixed_dictionaries({}, optional={"namespace": hostile_values(), "batch_size": hostile_values(),
                                            "ttl_s": hostile_values(), "system": hostile_values()}),
    )
    model = st.one_of(st.just("llama3.2:3b"), hostile_values())
    pool_call = st.builds(
        lambda n, m, msgs, opts: Call(n, (m, msgs), {} if opts is None or "stream" in n else {"options": opts}),
        st.sampled_from(["pool.chat", "pool.achat", "pool.stream", "pool.astream"]), model, _messages(),
        st.one_of(st.none(), hostile_values()),
    )
    store_call = st.one_of(
        st.builds(lambda e: Call("store.put_many", (e,)), _entries()),
        st.builds(lambda k, now: Call("store.get_by_key", (k,), {"now": now}), hostile_values(), hostile_values()),
        st.builds(lambda k, now: Call("store.get", (k,), {"now": now}), hostile_values(), hostile_values()),
        st.builds(lambda ids: Call("store.delete", (ids,)), hostile_values()),
        st.builds(lambda since: Call("store.changes", (since,)), hostile_values()),
    )
    embed_call = st.builds(lambda texts: Call("embedder.embed", (texts,)), st.one_of(st.lists(question, max_size=3), hostile_values()))
    cli_call = st.builds(lambda argv: Call("cli", (argv,)), st.lists(st.one_of(
        st.sampled_from(["ask", "cache", "stats", "warm", "--namespace", "--tier", "--json", "-h", "serve", "calibrate",
                         "--data-dir", "/nonexistent/dir", "--config", "x.toml"]), st.text(max_size=12)), max_size=5))
    return st.one_of(router_call, warm, pool_call, store_call, embed_call, cli_call)


ENTRY_POINTS = ("ask", "aask", "stream", "astream", "warm", "pool.chat", "pool.achat", "pool.stream", "pool.astream",
                "store.put_many", "store.get", "store.get_by_key", "store.delete", "store.changes", "embedder.embed", "cli")


@dataclass
class Targets:
    """The real objects calls run against. Missing targets skip their calls (``ok``)."""

    router: Any = None
    pool: Any = None
    store: Any = None
    embedder: Any = None
    cli: Callable[[list[str]], BaseException | None] | None = None

    def run(self, call: Call) -> tuple[Outcome, BaseException | None]:
        """Run one call: ``ok``, ``typed`` (a ``SemrouteError``) or ``untyped`` (anything else)."""
        try:
            self._run(call)
        except SemrouteError as exc:
            return "typed", exc
        except Exception as exc:  # noqa: BLE001 - classifying is the point
            return "untyped", exc
        return "ok", None

    def _run(self, call: Call) -> None:
        name, args, kwargs = call.name, call.args, dict(call.kwargs)
        if name in ("ask", "aask", "stream", "astream", "warm"):
            if self.router is not None:
                _drive(getattr(self.router, name)(*args, **kwargs))
        elif name.startswith("pool."):
            if self.pool is not None:
                _drive(getattr(self.pool, name.split(".", 1)[1])(*args, **kwargs))
        elif name.startswith("store."):
            if self.store is not None:
                result = getattr(self.store, name.split(".", 1)[1])(*args, **kwargs)
                if name == "store.changes" and result is not None:
                    list(result[1])
        elif name == "embedder.embed":
            if self.embedder is not None:
                self.embedder.embed(*args)
        elif name == "cli" and self.cli is not None:
            error = self.cli(*args)
            if error is not None:
                raise error


def _drive(result: Any) -> None:
    """Finish whatever an entry point returned: await a coroutine, drain an iterator."""
    if inspect.iscoroutine(result):
        asyncio.run(result)
    elif hasattr(result, "__aiter__"):
        async def drain() -> None:
            async for _ in result:
                pass

        asyncio.run(drain())
    elif hasattr(result, "__next__"):
        for _ in result:
            pass
