"""What the receiving process (`[mqtt] receiver = "process"`) makes of each message before
the commit loop sees it (edge.receiver.row_of): the fast decoder's message, and the line
of each reading of a telemetry message. The commit loop takes both instead of decoding
and formatting again, so both must lead it to exactly what it reaches on its own: the
same record or the same reason, and byte for byte the same lines.

Every golden vector and 20,000 mutations of them, each row through marshal as it crosses
the pipe; a payload clipped at ingest is not decoded there."""

from __future__ import annotations

import json
import marshal
import random

from edge import schema
from edge.ingest import Incoming
from edge.limits import KEEP_BYTES, clip_payload
from edge.receiver import row_of
from edge.validate import Rejected, TelemetryAccepted, Validator
from tests.support.fuzz import NOW, SEEDS, VALID_OBJECTS, mutate_bytes, mutate_json

MUTATIONS = 20_000


def handed_over(topic: str, payload: bytes, arrival: int) -> tuple[dict | None, list[str] | None]:
    """(decoded, lines) as the edge reads them from a receiving process's frame."""
    kept, size = clip_payload(payload)
    row = marshal.loads(marshal.dumps(row_of(Incoming(1, 1, topic, kept, arrival, 1, None, size))))
    return row[8], row[9]


def payloads(rnd: random.Random):
    yield from SEEDS
    for _ in range(MUTATIONS):
        if rnd.random() < 0.5:
            topic, payload = rnd.choice(SEEDS)
            yield topic, mutate_bytes(rnd, payload)
        else:
            topic, obj = rnd.choice(VALID_OBJECTS)
            yield topic, mutate_json(rnd, obj, rnd.choice([None, 0, -1, 1.5, "x", [], {}]))


def test_the_commit_loop_reaches_its_own_outcome_from_what_the_receiving_process_hands_over():
    validator = Validator(lambda node: None)
    taken = refused = lines_used = 0
    for topic, payload in payloads(random.Random(19)):
        decoded, lines = handed_over(topic, payload, NOW)
        own = validator.check(topic, payload, NOW)
        given = validator.check(topic, payload, NOW, decoded)
        assert (type(given), repr(given)) == (type(own), repr(own)), (topic, payload)
        if decoded is None:
            assert lines is None
            refused += isinstance(own, Rejected)
            continue
        taken += 1
        assert not isinstance(own, Rejected), (topic, payload)  # the fast pass accepts only what is valid
        if isinstance(own, TelemetryAccepted):
            assert lines == [schema.reading_line(r) for r in own.readings], (topic, payload)
            lines_used += 1
        else:
            assert lines is None
    # Both ways were taken many times (about one mutation in twenty stays valid).
    assert taken > 500 and refused > 10_000 and lines_used > 300, (taken, refused, lines_used)


def test_a_payload_clipped_at_ingest_is_left_to_the_commit_loop():
    topic, obj = next((t, o) for t, o in VALID_OBJECTS if t.endswith("/telemetry"))
    padded = json.dumps({**obj, "pad": " " * KEEP_BYTES}).encode()
    assert handed_over(topic, padded, NOW) == (None, None)
    assert handed_over(topic, json.dumps(obj).encode(), NOW)[0] is not None
