#!/usr/bin/env python
"""Django's command-line utility for the example project.

    SEMROUTE_OLLAMA_URLS=http://localhost:11434 python examples/django_app/manage.py runserver
    python examples/django_app/manage.py semroute_warm faq.csv
    python examples/django_app/manage.py semroute_stats --json
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # settings.py and urls.py live here
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
