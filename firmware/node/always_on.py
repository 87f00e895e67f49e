# The always-on schedule (mains-powered nodes): connected, sampling every interval,
# publishing whatever is queued as soon as it can; a housekeeping task feeds the watchdog
# and polls stimuli and the console.
#
# One phase's code at a time beside the node when the heap is small: where sampling would
# not fit beside the MQTT client, the node parks the link for the moment it samples (a
# clean DISCONNECT: no will, the retained birth stays true, commands wait at the broker in
# the persistent session) and reconnects at once. What sampling needs is measured on each
# sample; a board with room to spare never parks. Commands always run with the link
# parked (they are rare, and the config validator is the largest code a node has).
import asyncio
import gc
import time

from node import WATCHDOG_MS, drop, load

HEADROOM = 8192   # bytes free beyond what sampling takes, for a fragmented heap


def run(node):
    asyncio.run(_main(node))


async def _main(node):
    hal = node.hal
    hal.wdt_start(WATCHDOG_MS)
    kick = asyncio.Event()
    asyncio.create_task(_housekeeping(node, kick))
    due = retry = time.ticks_ms()     # next sample, next connect attempt
    need = 0                          # heap a sample takes, the most seen
    told = False                      # the first park is logged, not every one
    while True:
        if time.ticks_diff(time.ticks_ms(), due) >= 0:
            if node.link is not None and gc.mem_free() < need + HEADROOM:
                if not told:
                    node.log("link parked while sampling: %d bytes free, %d needed" % (
                        gc.mem_free(), need + HEADROOM))
                    told = True
                await _park(node)
            need = max(need, _sample(node))
            _receipts(node)             # at least once an interval: the resend delay
            due = time.ticks_add(due, int(node.cfg["interval_s"] * 1000))
            if time.ticks_diff(time.ticks_ms(), due) > 0:
                due = time.ticks_ms()   # fell behind: no burst of catch-up samples
        if len(node.cmds):
            await _park(node)
            if node.run_commands():
                due = time.ticks_ms()   # a `sample` command: the reading is the answer
                continue
        if node.inbox:
            _receipts(node)             # as they arrive (housekeeping kicks the loop)
        client = node.make_client()
        if not client.connected and time.ticks_diff(time.ticks_ms(), retry) >= 0:
            if await _connect(node, client):
                retry = time.ticks_ms()
            else:
                retry = time.ticks_add(time.ticks_ms(), client.backoff_ms())
        if client.connected:
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
        wake = due if client.connected or time.ticks_diff(retry, due) > 0 else retry
        client = None     # held across the wait, it would keep a parked client alive
        kick.clear()
        try:
            await asyncio.wait_for_ms(
                kick.wait(), max(0, min(1000, time.ticks_diff(wake, time.ticks_ms()))))
        except asyncio.TimeoutError:
            pass


def _receipts(node):
    """The receipts phase (node/receipts.py), in and out: its code is not kept beside
    the link."""
    load("receipts").apply(node)
    drop("receipts")


async def _park(node):
    await node.park()
    # The client's cancelled tasks end when they next run; until then they hold it.
    await asyncio.sleep_ms(0)


async def _connect(node, client):
    """One attempt (the loop goes on sampling while the broker is away)."""
    if not node.hal.connect_network():
        return False
    if not await client.connect_with_backoff(attempts=1):
        return False
    try:
        await node.link.on_connect()
        return True
    except OSError as err:
        node.log("error mqtt: %s" % (err,))
        await client.close()
        return False


def _sample(node):
    """Take a reading with the sampling phase loaded, then release it. Returns the heap
    the phase took."""
    gc.collect()
    free = gc.mem_free()
    node.take_reading()
    node.note_heap()             # collects: what is left is the phase and the reading
    used = free - gc.mem_free()
    node.release_sensing()
    return used


async def _housekeeping(node, kick):
    while True:
        node.hal.wdt_feed()
        node.hal.poll()
        if len(node.cmds) or node.inbox:
            kick.set()
        await asyncio.sleep_ms(200)
