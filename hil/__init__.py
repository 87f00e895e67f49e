"""Harness for running real parts on one machine: private servers (Mosquitto, InfluxDB,
VictoriaMetrics), the MicroPython interpreter, virtual and serial boards, HIL scenarios."""
