# Drives firmware/lib/mqtt_client.py under the MicroPython unix port for the client tests.
# usage: micropython mqtt_probe.py HOST PORT MODE PREFIX
#   roundtrip: QoS1 publishes, a retained one, receive one message on PREFIX/in, echo it,
#              clean DISCONNECT (no will).
#   hang:      connect with a will and idle (the test kills it: the will must appear).
#   (a sixth argument, a CA file, makes it connect over TLS and verify the broker)
#   steady:    publish PREFIX/out 0..149 every 50 ms, reconnecting with backoff after
#              the broker goes away; echo anything on PREFIX/in (subscription restored).
import sys
import asyncio
from mqtt_client import MQTTClient

host, port, mode, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
tls = None
if len(sys.argv) > 5:
    # tls: verify the broker against this CA file
    import ssl
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.load_verify_locations(cafile=sys.argv[5])
    tls.verify_mode = ssl.CERT_REQUIRED


def log(msg):
    print(msg)


inbox = []
client = MQTTClient("probe-" + mode, host, port, keepalive=2 if mode == "hang" else 10,
                    will=(prefix + "/will", b"offline", True, 1),
                    on_message=lambda t, p: inbox.append((t, p)), log=log,
                    ack_timeout_ms=1000, ssl=tls)


async def wait_inbox(timeout_ms):
    while not inbox and timeout_ms > 0:
        await asyncio.sleep_ms(20)
        timeout_ms -= 20
    return inbox.pop(0) if inbox else None


async def roundtrip():
    await client.subscribe(prefix + "/in")
    await client.connect()
    print("connected session_present=%d" % client.session_present)
    for i in range(20):
        await client.publish(prefix + "/out", b"m%d" % i)
    await client.publish(prefix + "/retained", b"birth", retain=True)
    await client.publish(prefix + "/q0", b"zero", qos=0)
    print("published")
    msg = await wait_inbox(10000)
    print("got", msg)
    if msg:
        await client.publish(prefix + "/echo", msg[1])
    await client.disconnect()
    print("done")


async def hang():
    await client.connect()
    print("connected")
    while True:
        await asyncio.sleep_ms(1000)  # 2 s keepalive: pings must keep the session alive


async def steady():
    await client.subscribe(prefix + "/in")
    n = 0
    while n < 150:
        if not client.connected:
            await client.connect_with_backoff(base_ms=100, cap_ms=800)
            print("connected %d" % client.connects)
        try:
            await client.publish(prefix + "/out", b"%d" % n)
            n += 1
        except OSError as err:
            print("publish failed", err)
            continue
        while inbox:
            t, p = inbox.pop(0)
            await client.publish(prefix + "/echo", p)
        await asyncio.sleep_ms(50)
    await client.disconnect()
    print("done")


asyncio.run({"roundtrip": roundtrip, "hang": hang, "steady": steady}[mode]())
