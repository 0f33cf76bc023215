"""The run's voice: timestamped lines in ROOT/reconcile.log (rotated by size); problems also on stderr."""

import os
import sys
import time
from pathlib import Path
from typing import Optional, TextIO

from jobroot import folders as fs

LOG_MAX = 10 * 1024 * 1024  # bytes; then reconcile.log becomes reconcile.log.1
LEVELS = {"debug": 10, "info": 20, "error": 40}


class Log:
    """Timestamped lines in ROOT/reconcile.log (rotated by size); problems also on stderr."""

    def __init__(self, root: Path, verbose: bool = False, level: str = "info") -> None:
        self.path, self.verbose, self.level = root / fs.LOG, verbose, LEVELS[level]
        self._file: Optional[TextIO] = None

    def _write(self, level: str, message: str) -> None:
        if LEVELS[level.lower()] < self.level:
            return
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {level} {message}\n"
        try:
            if self._file is None:
                if _size(self.path) > LOG_MAX:
                    os.replace(self.path, self.path.with_name(fs.LOG + ".1"))  # one old log kept
                self._file = open(self.path, "a", encoding="utf-8", errors="backslashreplace")
            self._file.write(line)
            self._file.flush()
        except OSError as e:
            print(f"reconcile: cannot write {self.path}: {e.strerror}", file=sys.stderr)

    def debug(self, message: str) -> None:
        self._write("DEBUG", message)

    def info(self, message: str) -> None:
        self._write("INFO", message)
        if self.verbose:
            print(message, file=sys.stderr)

    def problem(self, message: str) -> None:
        self._write("ERROR", message)
        print(f"reconcile: {message}", file=sys.stderr)


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
