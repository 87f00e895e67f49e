# The duty-cycled schedule (battery nodes): wake, sample, connect, publish everything
# queued, store the commands waiting at the broker, DISCONNECT (so no will is published),
# run the commands and connect again to answer them, deep sleep until the next interval
# or a pin wake (leak probe, cover switch).
#
# Sampling runs before asyncio and the MQTT client are loaded, and its code is dropped
# before they are; the MQTT client is dropped before commands run: no two phases share
# the heap.
import time

from node.app import WATCHDOG_MS

# Connects per wake: the first publishes and receives the commands; each further one
# answers the commands of the one before (and may receive more, run at the next wake).
ROUNDS = 3


def run(node):
    hal = node.hal
    t0 = time.ticks_ms()
    hal.wdt_start(WATCHDOG_MS)
    node.take_reading()
    if node.kind == "leak" and hal.wake_reason() == "pin":
        # Woken by the probe: take enough samples now for the debounce to decide, instead
        # of waiting one interval per sample.
        from node.detect import LEAK_DEBOUNCE
        for _ in range(LEAK_DEBOUNCE - 1):
            time.sleep_ms(50)
            node.take_reading()
    if len(node.cmds):
        node.run_commands()   # stored before a wake that was cut short
    node.note_heap()
    node.release_sensing()
    for _ in range(ROUNDS):
        if not hal.connect_network():
            node.log("error network: not connected (data stays queued)")
            break
        import asyncio
        asyncio.run(_publish(node))
        node.drop_link()
        hal.wdt_feed()
        if not len(node.cmds):
            break
        node.run_commands()
        node.note_heap()
    if node.reboot:
        hal.reset()
    hal.rtc_save({"boot": node.boot, "seq": node.seq, "det": node.mem["det"]})
    node.note_heap()
    awake = time.ticks_diff(time.ticks_ms(), t0)
    node.log("awake %d ms heap_peak=%d" % (awake, node.heap_peak))
    hal.deepsleep(max(100, int(node.cfg["interval_s"] * 1000) - awake))


async def _publish(node):
    import asyncio
    client = node.make_client()
    if not await client.connect_with_backoff(attempts=3, base_ms=200, cap_ms=1000):
        return
    try:
        await node.link.on_connect()
        await node.link.drain()
        # Commands waiting at the broker (persistent session) arrive right after the
        # connect and go to flash as they do; give stragglers a moment.
        await asyncio.sleep_ms(50)
        await client.disconnect()
    except MemoryError:
        node.shrink_batches()
        await client.close()
    except OSError as err:
        node.log("error mqtt: %s (data stays queued)" % (err,))
        await client.close()
