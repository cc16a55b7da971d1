"""Parts of ``bench/reliability.py``: faults, fuzzing, durability, leaks (isolation, redaction), soak."""
