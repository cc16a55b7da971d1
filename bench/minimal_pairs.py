"""Minimal-pair generation for the bench scripts: see ``semroute.training.minimal_pairs``."""

from semroute.training.minimal_pairs import *  # noqa: F401,F403
from semroute.training.minimal_pairs import FAMILIES, family_pairs, negation_swaps, scope_insertions, visible, word_swaps, xsid_swaps  # noqa: F401
