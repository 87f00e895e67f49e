"""Helpers shared by the tests and the benchmarks: the edge as a subprocess, publishers and
probes on a real broker, waiting on conditions, fuzz payloads, the CLI as a subprocess.

Fixtures stay in the conftest.py files; no module imports a test module (tests/test_layout.py)."""
