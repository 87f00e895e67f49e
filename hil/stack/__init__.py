"""The rig's shared stack: a private broker and InfluxDB, edges on them, and an observer of
what crosses the broker. HIL scenarios and the city-in-a-box demo both stand on it."""
