"""The typed records are derived from the catalog: every kind, field, range and event."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge import models, schema
from protocols import catalog

BASE = {
    "district": "xuhui",
    "zone": "caohejing",
    "node": "n-1",
    "arrival_ms": 1,
    "boot": 1,
    "seq": 2,
    "ts": 1795334340000,
    "time_source": "node",
}


def test_every_catalog_kind_field_and_range_has_a_model():
    for kind in catalog.KINDS:
        fields = models.FIELDS[kind]
        assert set(fields.model_fields) == set(catalog.fields_of(kind))
        for name, (typ, _unit, low, high) in catalog.fields_of(kind).items():
            if typ == catalog.BOOL:
                fields(**{name: True})
                with pytest.raises(ValidationError):
                    fields(**{name: 1})
            else:
                fields(**{name: low})
                fields(**{name: high})
                for bad in (low - 1, high + 1, float("nan"), float("inf")):
                    with pytest.raises(ValidationError):
                        fields(**{name: bad})


def test_events_are_those_the_catalog_allows_for_the_kind():
    for kind in catalog.KINDS:
        for name in catalog.EVENTS:
            data = {**BASE, "kind": kind, "event": name, "state": True, "severity": "info"}
            if name in catalog.events_of(kind):
                assert models.EVENTS[kind].model_validate(data).event == name
            else:
                with pytest.raises(ValidationError):
                    models.EVENTS[kind].model_validate(data)


def test_records_are_frozen_and_refuse_unknown_fields():
    r = models.READINGS["parking"].model_validate({**BASE, "kind": "parking", "fields": {"occupied": True}})
    with pytest.raises(ValidationError):
        r.seq = 3
    with pytest.raises(ValidationError):
        models.READINGS["parking"].model_validate({**BASE, "kind": "parking", "fields": {"pm25": 1.0}})
    assert r.fields.values() == {"occupied": True}


def test_line_protocol_keeps_float_fields_float():
    r = models.READINGS["air"].model_validate({**BASE, "kind": "air", "fields": {"pm25": 35.0, "co2": 612.0}})
    line = schema.reading_line(r)
    assert line.startswith("air,district=xuhui,node=n-1,zone=caohejing ")
    assert "i" not in line.split(" ")[1]  # never an integer field
    assert line.endswith(" 1795334340000")
    e = models.EVENTS["manhole"].model_validate(
        {**BASE, "kind": "manhole", "event": "cover-open", "state": True, "severity": "critical", "value": 37}
    )
    assert schema.event_line(e) == (
        "events,district=xuhui,event=cover-open,kind=manhole,node=n-1,"
        "severity=critical,zone=caohejing state=true,value=37 1795334340000"
    )


def test_rollup_of_a_minute():
    agg: dict = {}
    for i, (occ, mag) in enumerate([(True, 10.0), (False, 30.0), (True, 20.0)]):
        r = models.READINGS["parking"].model_validate(
            {
                **BASE,
                "kind": "parking",
                "seq": i,
                "ts": 1795334340000 + i * 1000,
                "fields": {"occupied": occ, "mag_x": mag},
            }
        )
        schema.aggregate_add(agg, r)
    line = schema.rollup_line("parking", "xuhui", "caohejing", "n-1", 1795334340000, agg)
    fields = dict(kv.split("=") for kv in line.split(" ")[1].split(","))
    assert fields == {
        "mag_x_count": "3",
        "mag_x_max": "30",
        "mag_x_mean": "20",
        "mag_x_min": "10",
        "occupied_count": "3",
        "occupied_frac": "0.6666666666666666",
        "occupied_last": "true",
    }
    assert line.startswith("parking_1m,")
