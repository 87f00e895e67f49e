# One error type for every protocol violation. It carries a short machine-readable
# reason (a stable slug that metrics and dead-letter tables key on) and a human detail.
# Plain Python: this module runs unchanged under CPython and MicroPython.

BAD_JSON = "bad_json"  # not UTF-8, or not JSON
NOT_OBJECT = "not_object"  # JSON, but not an object where one is required
TOO_LARGE = "too_large"  # over the size or item-count limits
BAD_TOPIC = "bad_topic"  # topic does not follow city/v1/{district}/{zone}/{node}/{channel}
BAD_VERSION = "bad_version"  # "v" missing, not 1, or not the topic's version
BAD_ID = "bad_id"  # an identifier is not a slug [a-z0-9-]{1,32}
UNKNOWN_KIND = "unknown_kind"  # "kind" is not in the catalog
MISSING_FIELD = "missing_field"  # a required key is absent
UNKNOWN_FIELD = "unknown_field"  # a key the protocol or the catalog does not define
BAD_TYPE = "bad_type"  # a value of the wrong JSON type
OUT_OF_RANGE = "out_of_range"  # a number outside the catalog's valid range (or not finite)
BAD_TIME = "bad_time"  # ts/age_ms missing together, both present, or implausible
ID_MISMATCH = "id_mismatch"  # payload "node" is not the topic's node
KIND_MISMATCH = "kind_mismatch"  # payload "kind" is not what the receiver knows for this node
UNKNOWN_EVENT = "unknown_event"  # event name not in the catalog for this kind
BAD_BATCH = "bad_batch"  # batch envelope inconsistent with its items, or items out of order
EMPTY = "empty"  # a reading with no fields, or a batch with no items

REASONS = (
    BAD_JSON,
    NOT_OBJECT,
    TOO_LARGE,
    BAD_TOPIC,
    BAD_VERSION,
    BAD_ID,
    UNKNOWN_KIND,
    MISSING_FIELD,
    UNKNOWN_FIELD,
    BAD_TYPE,
    OUT_OF_RANGE,
    BAD_TIME,
    ID_MISMATCH,
    KIND_MISMATCH,
    UNKNOWN_EVENT,
    BAD_BATCH,
    EMPTY,
)


class ProtocolError(ValueError):
    """A message that breaks protocol v1. `reason` is one of REASONS."""

    def __init__(self, reason, detail=""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason
        self.detail = detail
