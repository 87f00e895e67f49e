"""The X-level edge aggregator: ingest -> validate -> buffer -> forward, plus the
`urbansense` command line."""
