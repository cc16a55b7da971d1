"""The HTTP gateway (``semroute serve``): Ollama's and OpenAI's APIs over one ``Router``.

A thin shell: it parses requests, calls the router, and writes each API's own response and
error shapes. Not here: caching, verification, routing or pooling decisions. May import:
``router`` and what it exposes (types, errors, settings, metrics). Empty until the gateway lands.
"""
