"""Field type conflicts: an InfluxDB that holds a field with one type refuses every line
that sends it with another (HTTP 400, "field type conflict"). Such a refusal concerns
every line of that measurement with that field, not one line, so the forwarder moves
them all to dead letters at once instead of splitting the batch line by line, and says
it once per measurement and field, with what the operator runs to see and mend it.

InfluxDB's answer names the field, the measurement and both types, e.g. (1.x and 2.x):
`partial write: field type conflict: input field "pm25" on measurement "air" is type
float, already exists as type string dropped=1`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The answer is JSON: the quotes around the names arrive escaped.
_CONFLICT = re.compile(
    r'field type conflict: input field \\?"(?P<field>[^"\\]+)\\?" on measurement \\?"(?P<measurement>[^"\\]+)\\?"'
    r" is type (?P<sent>\w+), already exists as type (?P<held>\w+)"
)
# A measurement name runs to its first unescaped comma or space (line protocol).
_MEASUREMENT = re.compile(r"(?:[^,\\ ]|\\.)+")


@dataclass(frozen=True)
class TypeConflict:
    measurement: str
    field: str
    sent: str  # the type these lines send
    held: str  # the type the server holds

    def concerns(self, line: str) -> bool:
        """A line of this measurement that sends this field."""
        m = _MEASUREMENT.match(line)
        if m is None or m.group(0) != self.measurement:
            return False
        return re.search(r"[ ,]" + re.escape(self.field) + "=", line[m.end() :]) is not None

    def advice(self, database: str) -> str:
        """How an operator sees it and what mends it (InfluxQL, the `influx` shell)."""
        return (
            f"see it with: influx -database '{database}' -execute "
            f"'SHOW FIELD KEYS FROM \"{self.measurement}\"'; mend it by dropping the "
            f'{self.held} data of "{self.measurement}" (DROP MEASUREMENT, or DROP SERIES of the '
            f"nodes that wrote it) or by writing to a new database; the lines stay in dead letters"
        )


def type_conflict(detail: str) -> TypeConflict | None:
    """The conflict a refusal names, if it is one."""
    m = _CONFLICT.search(detail)
    if m is None:
        return None
    return TypeConflict(m.group("measurement"), m.group("field"), m.group("sent"), m.group("held"))
