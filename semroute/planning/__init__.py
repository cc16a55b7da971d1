"""Capacity and cost planning: how many servers, at what latency and cost, for N users.

A model of the fleet from a traffic profile, server profiles and prices, checked by simulation
and replay. Not here: serving requests. May import: ``types``, ``errors``, ``settings``.
Empty until the planner lands.
"""
