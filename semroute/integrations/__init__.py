"""Glue for web frameworks (Flask, Django): one ``Router`` per worker process, views, commands.

The core package never imports a web framework; each integration is imported only by apps
that use it (and installed with its extra). May import: ``router``, ``config``, ``types``,
``errors``. Framework-free parts: ``spec`` (settings), ``per_process`` (one Router per
process), ``http`` (request and response shapes); ``flask`` and ``django`` import their framework.
"""
