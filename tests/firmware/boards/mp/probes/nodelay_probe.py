# Runs under MicroPython on a stand-in chip (tests/firmware/test_board_serial.py): one
# connect of the node's MQTT client to a broker, for the socket option it sets on the
# chip's stack. argv: host port
import asyncio
import sys

from mqtt_client import MQTTClient


async def main():
    client = MQTTClient("nodelay-probe", sys.argv[1], int(sys.argv[2]), None, None,
                        connect_timeout_ms=1000)
    try:
        await client.connect()
    except OSError as err:
        print("connect: %s" % err)
    await client.close()


asyncio.run(main())
