"""Boards the rigs and the provisioning tools talk to: virtual (the MicroPython unix port
behind a pseudo-terminal) and serial (a real board on a USB serial port)."""
