"""Counting dead letters as the edge keeps them: a node's first messages of each reason
and minute stored whole, the rest counted in one row per node and reason ("N more ...",
no payload). A count here is messages, not rows."""

from __future__ import annotations

from edge.deadletters import counted


def messages_by_reason(edge, like: str = "%") -> dict[str, int]:
    """Refused messages per reason among topics LIKE `like`, stored or counted."""
    out: dict[str, int] = {}
    for reason, payload, detail in edge.query(
        "SELECT reason, payload IS NOT NULL, detail FROM dead_letters WHERE topic LIKE ? OR (? = '%' AND topic IS NULL)",
        (like, like),
    ):
        out[reason] = out.get(reason, 0) + (1 if payload else counted(detail))
    return out
