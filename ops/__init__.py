"""City operations: the questions operations staff ask every day, answered with InfluxQL
over the v1 `/query` API on the schema the edge writes (edge/SCHEMA.md), plus database
setup with retention policies and a self-contained HTML report."""
