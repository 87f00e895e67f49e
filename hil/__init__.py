"""The test rig: private servers (Mosquitto, InfluxDB, VictoriaMetrics) on free loopback
ports, the MicroPython unix port, virtual boards, the sim fleet, HIL scenarios and their
runner, and the stack (broker, database, edges, observer) the rig and the demo share."""
