"""Default server profiles from public figures, for planning before anything is probed.

These numbers are PUBLIC FIGURES, NOT MEASURED HERE; each profile's ``source`` says where it
comes from. Measure your own servers with ``semroute probe URL --model M`` and plan with that.

* ``llama3.1:8b`` (Q4_K_M, one RTX 4090, llama.cpp, which Ollama runs): about 130 tokens/s for
  one stream (the figure issue 17 quotes; in line with public reports of 112 tokens/s on an
  RTX 3080 for Llama 3.1 8B Q4_K_M, github.com/dmatora/LLM-inference-speed-benchmarks issue 12,
  which also reports about 3,800 prompt tokens/s).
* ``llama3.2:3b`` (Q4_K_M, same GPU): decoding one stream is memory-bandwidth bound, so speed
  scales about inversely with the weights read per token (4.9 GB for 8B, 2.0 GB for 3B at
  Q4_K_M): 130 x 2.4 = ~310 would be the ceiling; we use 220 tokens/s, a conservative estimate
  derived from the 8B figure, not a direct measurement.
* Parallel slots: Ollama's total throughput is reported to plateau at 1.4-1.6x one stream's
  with 8 parallel requests on one GPU; ``saturating_curve`` puts it at 1.5x.
* Time to first token: 50 ms of scheduling on a warm model, plus prompt tokens / prompt rate.
"""

from __future__ import annotations

from .profile import ServerProfile, saturating_curve

__all__ = ["DEFAULT_SERVERS", "default_server"]

_PLATEAU = "total throughput 1.5x one stream at 8 parallel (reported 1.4-1.6x for Ollama; public figure)"

DEFAULT_SERVERS: dict[str, ServerProfile] = {
    "llama3.1:8b": ServerProfile(
        model="llama3.1:8b", tokens_per_s=130.0, slots=4, prompt_tokens_per_s=3800.0, ttft_s=0.05,
        throughput_curve=saturating_curve(4),
        source="public figures, not measured here: llama.cpp 8B Q4_K_M on RTX 4090 ~130 tok/s single-stream; "
        "prompt ~3,800 tok/s (RTX 3080 report); " + _PLATEAU,
    ),
    "llama3.2:3b": ServerProfile(
        model="llama3.2:3b", tokens_per_s=220.0, slots=4, prompt_tokens_per_s=8000.0, ttft_s=0.05,
        throughput_curve=saturating_curve(4),
        source="estimate, not measured here: the 8B figure scaled by weight size (2.4x), taken conservatively "
        "as 220 tok/s; prompt rate 2x the 8B's; " + _PLATEAU,
    ),
}


def default_server(model: str) -> ServerProfile:
    """The documented default for ``model``; the 8B figure for a model we have none for."""
    return DEFAULT_SERVERS.get(model, DEFAULT_SERVERS["llama3.1:8b"])
