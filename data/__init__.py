"""Data the semroute project wrote or derived (see README.md here), shipped in the wheel."""
