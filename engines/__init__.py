"""Engines: one adapter per batch system, installed as `jobroot.engines`.

Each module implements `jobroot.engine.Engine` and declares the options it takes as `SETTINGS`; it
depends on the core (`jobroot`), never the other way round. `_process` runs every batch-system command.
"""
