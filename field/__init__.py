"""Field provisioning: the firmware bundle, flashing and verifying a node, fleet inventories,
reading a node's state, and the esptool command lines for the MicroPython base image."""
