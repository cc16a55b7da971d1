"""Fitting and evaluating the shipped models; never imported at run time.

Owns: the complexity classifier's training (``complexity``), the pair verifier's training and
calibration helpers (``verifier``), and pair/retrieval evaluation (``evaluate``). The CLI
(``semroute train-router``, ``calibrate``, ``eval``) and ``bench/`` call it; ``Router`` and
everything it builds do not. May import: anything in semroute.
"""
