# Stand-in node program for the provisioning tests: it does only what provisioning observes
# of a node, the way firmware/README.md says the firmware does it (config.json, console
# lines prefixed by the node id, the boot counter in state/boot, a retained birth message
# published with the firmware's own MQTT client from lib/). The technician-flow test runs
# the real firmware; these tests cover the tool's mechanics whatever the firmware's state.
import asyncio
import json
import os

from mqtt_client import MQTTClient

with open("config.json") as f:
    cfg = json.load(f)
node = cfg["node"]
topic = "city/v1/%s/%s/%s/status" % (cfg["district"], cfg["zone"], node)
try:
    os.mkdir("state")
except OSError:
    pass
try:
    with open("state/boot") as f:
        boot = int(f.read()) + 1
except (OSError, ValueError):
    boot = 0
with open("state/boot", "w") as f:
    f.write(str(boot))
print(node, "boot", boot, "reset=power kind=%s schedule=%s" % (cfg["kind"], cfg.get("schedule")))


def status(state):
    msg = {"v": 1, "node": node, "kind": cfg["kind"], "boot": boot, "seq": 0, "state": state}
    if state == "online":
        msg["fw"] = "standin-1"
        msg["reset"] = "power"
    return json.dumps(msg)


async def run():
    b = cfg["broker"]
    client = MQTTClient(node, b["host"], b.get("port") or 1883, b.get("username"),
                        b.get("password"), will=(topic, status("offline").encode(), True, 1),
                        log=lambda m: print(node, m), connect_timeout_ms=2000)
    await client.connect_with_backoff(base_ms=200, cap_ms=1000)
    print(node, "connected %s:%d" % (b["host"], b.get("port") or 1883))
    await client.publish(topic, status("online").encode(), retain=True)
    while True:
        await asyncio.sleep(1)


asyncio.run(run())
