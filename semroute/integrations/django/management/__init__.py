"""Management commands of the semroute Django app."""
