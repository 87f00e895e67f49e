"""Names the CPython side shares: the identifier pattern for validating models, and the
InfluxDB measurement names the edge writes and the operations tools, the rig and the demo
read (edge/SCHEMA.md). Never on a node: the firmware checks identifiers with
protocols.topics.is_slug, which needs no regular expression module.
"""

from protocols.topics import ID_MAX

# An identifier (district, zone, node, institution): the characters protocols.topics
# accepts, as a pattern for pydantic's `StringConstraints(pattern=...)`.
SLUG_PATTERN = r"^[a-z0-9-]{1,%d}$" % ID_MAX

# Measurements.
EVENTS = "events"
NODE_HEALTH = "node_health"
ROLLUP_SUFFIX = "_1m"


def rollup_measurement(kind: str) -> str:
    """The one-minute rollup of a kind's readings, e.g. `parking_1m`."""
    return kind + ROLLUP_SUFFIX
