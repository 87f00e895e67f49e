"""Text a node chooses (its firmware name, a field name, its topic) reaches operators'
tables literally: rich markup prints as written instead of styling or crashing the table,
and terminal escape codes print escaped instead of acting on the terminal. A real
Mosquitto set up as the site's, a real edge, the real CLI."""

from __future__ import annotations

import json

from protocols import codec
from tests.support.cli import urbansense
from tests.support.secured_site import A, secured_site
from tests.support.site import topic
from tests.support.waiting import wait_for

MARKUP = "[/x][bold red]"
ESCAPES = "\x1b[2J\x1b]0;owned\x07\r"
SHOWN_ESCAPES = "\\x1b[2J\\x1b]0;owned\\x07\\r"


def test_markup_and_escapes_from_a_node_print_literally(tmp_path, mosquitto_factory, influxdb, edges):
    site = secured_site(tmp_path, mosquitto_factory, influxdb, nodes=(A,))
    config = site.edge_config(tmp_path / "edge")
    edge = edges(config).start()
    a = site.node(A).connect()
    fw = f"1.0{MARKUP}{ESCAPES}"
    status = codec.encode_status(A, "parking", 1, 0, "online", fw=fw, interval_s=60, age_ms=0)
    # A field named with markup and escapes, JSON-escaped as a node's JSON library sends it.
    junk_field = codec.encode_reading(A, "parking", 1, 1, {"occupied": True}, age_ms=0).replace(
        b'"occupied"', json.dumps(MARKUP + ESCAPES).encode() + b':1,"occupied"'
    )
    a.publish_all([(topic(A, "status"), status), (topic(A, "telemetry"), junk_field)])
    wait_for(lambda: edge.dead_letters(), 60, what="the dead letter")
    wait_for(lambda: edge.nodes().get(A, {}).get("fw") == fw, 60, what="A's status")
    a.close()

    for args in (("nodes", "--config", str(config)), ("edge", "dead-letters", "--config", str(config))):
        proc = urbansense(*args, env={"COLUMNS": "400"})
        assert proc.returncode == 0, (args, proc.stderr)
        out = proc.stdout
        assert MARKUP in out, (args, out)
        assert SHOWN_ESCAPES in out, (args, out)
        assert "\x1b" not in out and "\x07" not in out and "\r" not in out, (args, out)
