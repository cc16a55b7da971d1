"""``semroute_warm FILE`` and ``semroute_stats``."""
