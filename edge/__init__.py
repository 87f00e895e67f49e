"""The X-level edge aggregator: ingest -> validate -> buffer -> forward, with alarms on a
fast lane (edge/README.md)."""
