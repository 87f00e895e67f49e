# The always-on schedule (mains-powered nodes): one task samples every interval, one feeds
# the watchdog and polls stimuli and the console, and the main loop keeps the connection
# and publishes whatever is queued as soon as it can. Commands are stored in flash as they
# arrive; to run them the node disconnects cleanly (no will), drops the MQTT client from
# the heap, runs them and reconnects to answer: the three phases' code is never resident
# together, and commands are rare.
import asyncio

from node.app import WATCHDOG_MS


def run(node):
    asyncio.run(_main(node))


async def _main(node):
    hal = node.hal
    client = node.make_client()
    hal.wdt_start(WATCHDOG_MS)
    kick = asyncio.Event()
    asyncio.create_task(_sampling(node, kick))
    asyncio.create_task(_housekeeping(node, kick))
    while True:
        if len(node.cmds):
            await client.disconnect()
            node.drop_link()
            node.run_commands()
            client = node.make_client()
        if not client.connected:
            if not hal.connect_network():
                await asyncio.sleep_ms(500)
                continue
            await client.connect_with_backoff()
            try:
                await node.link.on_connect()
            except OSError as err:
                node.log("error mqtt: %s" % (err,))
                await client.close()
                continue
        try:
            await node.link.drain()
        except MemoryError:
            node.shrink_batches()
            continue
        except OSError as err:
            node.log("error mqtt: %s (data stays queued)" % (err,))
            await client.close()
            continue
        if node.reboot:   # asked for by a command, whose answer is now sent
            await client.disconnect()
            hal.reset()
        kick.clear()
        try:
            await asyncio.wait_for_ms(kick.wait(), 1000)
        except asyncio.TimeoutError:
            pass


async def _sampling(node, kick):
    while True:
        node.take_reading()
        node.release_sensing()   # reloaded next time: the heap is kept for the rest
        kick.set()
        await asyncio.sleep_ms(int(node.cfg["interval_s"] * 1000))


async def _housekeeping(node, kick):
    while True:
        node.hal.wdt_feed()
        node.hal.poll()
        if len(node.cmds):
            kick.set()
        await asyncio.sleep_ms(200)
