"""Minimal Django settings for a project that answers questions through semroute.

The ``SEMROUTE`` dict is all semroute reads (keys ``CONFIG``, ``DATA_DIR``, ``OLLAMA_URLS``,
``NAMESPACE``, ``OPTIONS``); here its values come from the environment, as a deployment would set them.
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
ROOT_URLCONF = "urls"
INSTALLED_APPS = ["semroute.integrations.django"]
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict] = {}  # semroute keeps its cache in its own store, not in Django's database
USE_TZ = True

SEMROUTE = {
    "CONFIG": os.environ.get("SEMROUTE_CONFIG"),  # a semroute TOML file (tiers, cache, embedder), optional
    "DATA_DIR": os.environ.get("SEMROUTE_DATA_DIR"),
    "OLLAMA_URLS": os.environ.get("SEMROUTE_OLLAMA_URLS"),  # "http://gpu1:11434,http://gpu2:11434"
    "NAMESPACE": os.environ.get("SEMROUTE_NAMESPACE"),
}
