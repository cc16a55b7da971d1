"""Trained artifacts shipped with semroute (plain arrays + JSON cards); see README.md.

A regular package (not a namespace one) so ``importlib.resources.files("semroute.models")``
returns a real path in an installed wheel.
"""
