"""Logging for workflow scripts: messages and progress bars go to the rule's log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, data):
        for s in self.streams:
            s.write(data)
            s.flush()
        return len(data)

    def flush(self):
        for s in self.streams:
            s.flush()

    def isatty(self):
        return False


def log_to_file(path: str | Path, level: int = logging.INFO) -> None:
    """Send logging records and stderr (tqdm progress) to `path` as well as the console."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115  (lives as long as the script)
    sys.stderr = _Tee(sys.__stderr__, fh)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        force=True)
    logging.captureWarnings(True)
