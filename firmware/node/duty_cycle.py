# The duty-cycled schedule (battery nodes): wake, run the commands stored in flash, sample,
# connect, publish everything queued, store the commands and collect the receipts waiting
# at the broker, DISCONNECT (so no will is published), apply the receipts, deep sleep
# until the next interval or a pin wake (leak probe, cover switch).
#
# Each wake runs at most two phases, and each phase's code leaves the heap before the
# next one's comes in (the receipts' small phase follows publishing, with the link's
# code gone): commands get a wake of their own. Those received during a wake run
# at the start of the next one, which follows at once (a 1 ms sleep) and does nothing
# else; the wake after it publishes their answers (and takes the reading a `sample` asked
# for). After any two phases the heap is too fragmented for a third, and a wake starts
# with a clean one (deep sleep resets the interpreter; the node keeps its boot and seq,
# the time its next sample is due and a pending reboot in RTC memory). A pin wake (an
# alarm) samples first and leaves the commands to the wake after it.
import time

from node import WATCHDOG_MS, drop, load

COMMAND_WAKE_MS = 1    # sleep before a wake that runs the commands just received
CLOCK_WAIT_MS = 1000   # how long a node without a clock waits for a fresh receipt


def run(node):
    hal = node.hal
    t0 = time.ticks_ms()
    hal.wdt_start(WATCHDOG_MS)
    mem = node.mem
    interval_ms = int(node.cfg["interval_s"] * 1000)
    due = mem.get("due")
    now = hal.local_ms()
    # Is a sample due? A timer wake can come early for commands; a pin wake, a reset or a
    # power-on samples at once.
    sample_due = (due is None or node.reset != "deepsleep" or hal.wake_reason() == "pin"
                  or due - now < min(1000, interval_ms // 10))
    if len(node.cmds) and hal.wake_reason() != "pin":
        if node.run_commands():
            due = now               # a `sample` command: the next wake takes the reading
        _sleep(node, t0, due, COMMAND_WAKE_MS)
    if sample_due:
        _sample(node)
        due = now + interval_ms
    node.note_heap()
    node.release_sensing()
    if hal.connect_network():
        import asyncio
        asyncio.run(_publish(node))
        # The client's cancelled tasks stay in the loop's queue, and with them the
        # client and its code: a fresh loop lets the phase go, asyncio's code with it.
        asyncio.new_event_loop()
        asyncio = None
        drop("event loop")
        node.drop_link()
    else:
        node.log("error network: not connected (data stays queued)")
    # The receipts phase (node/receipts.py), with the link's code gone; offline too, for
    # the resend delay and the next birth's first_seq.
    load("receipts").apply(node)
    drop("receipts")
    hal.wdt_feed()
    if node.reboot:
        hal.reset()       # asked for by a command, whose answer is now sent
    _sleep(node, t0, due,
           COMMAND_WAKE_MS if len(node.cmds) else max(100, due - hal.local_ms()))


def _sleep(node, t0, due, ms):
    """Keep what the next wake needs in RTC memory and deep sleep ms (does not return)."""
    hal = node.hal
    hal.rtc_save({"boot": node.boot, "seq": node.seq, "det": node.mem["det"], "due": due,
                  "reboot": node.reboot})
    node.note_heap()
    awake = time.ticks_diff(time.ticks_ms(), t0)
    node.log("awake %d ms heap_peak=%d" % (awake, node.heap_peak))
    hal.deepsleep(ms)


def _sample(node):
    node.take_reading()
    if node.kind == "leak" and node.hal.wake_reason() == "pin":
        # Woken by the probe: take enough samples now for the debounce to decide, instead
        # of waiting one interval per sample.
        from node.detect import LEAK_DEBOUNCE
        for _ in range(LEAK_DEBOUNCE - 1):
            time.sleep_ms(50)
            node.take_reading()


async def _publish(node):
    import asyncio
    asyncio.create_task(_feed_watchdog(node.hal))
    client = node.make_client()
    if not await client.connect_with_backoff(attempts=3, base_ms=200, cap_ms=1000):
        return
    try:
        await node.link.on_connect()
        while True:
            try:
                await node.link.drain()
                break
            except MemoryError:
                # Batches are built in RAM: smaller ones, until one reading at a time.
                if node.batch_items == 1:
                    raise
                node.shrink_batches()
        node.hal.checkpoint("published")   # acknowledged by the broker, no receipt yet
        # Commands waiting at the broker (persistent session) and receipts (the retained
        # one, and those queued while the node slept) arrive right after the connect, to
        # flash or to node.inbox; give stragglers a moment. A node without a clock that
        # has sent something waits longer for a receipt, which may be of what it has
        # just sent and set its clock for the rest of the boot (SPEC 7.1.4).
        heard = len(node.inbox)
        limit = 50 if node.hal.epoch_ms() or not node.probe else CLOCK_WAIT_MS
        waited = 0
        while waited < 50 or (waited < limit and len(node.inbox) == heard):
            await asyncio.sleep_ms(50)
            waited += 50
        await node.park()
    except MemoryError:
        node.shrink_batches()
        await client.close()
    except OSError as err:
        node.log("error mqtt: %s (data stays queued)" % (err,))
        await client.close()


async def _feed_watchdog(hal):
    # While the event loop runs, the node is not hung (connect attempts may take their
    # timeouts, 5 s each, several in a row); one that blocks the loop stops feeding.
    import asyncio
    while True:
        hal.wdt_feed()
        await asyncio.sleep_ms(1000)
