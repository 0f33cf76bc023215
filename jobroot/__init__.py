"""jobroot: a file-based job manager. Drop a folder into ROOT/inbox/, collect it from ROOT/complete/."""

__version__ = "1.0.0"
