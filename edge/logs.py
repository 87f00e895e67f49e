"""The edge's log lines: JSON (one object per line) or text, on stderr. One place, so the
edge and its receiving process (edge.receiver) write the same lines to the same log."""

from __future__ import annotations

import json
import logging
import sys

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (structured logs)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str, fmt: str) -> None:
    """Log at `level` (debug, info, warning, error) to stderr, as `fmt` (json or text)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))


def current_logging() -> tuple[str, str]:
    """(level, format) this process logs with, for a process it starts."""
    root = logging.getLogger()
    fmt = "json" if any(isinstance(h.formatter, JsonLogFormatter) for h in root.handlers) else "text"
    return logging.getLevelName(root.getEffectiveLevel()).lower(), fmt
