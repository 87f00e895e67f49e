# A small asyncio MQTT 3.1.1 client for the node (DESIGN "Why a firmware MQTT client").
# QoS 0 and 1 with retransmission until PUBACK, keepalive pings and dead-link detection,
# last will, clean_session false, non-blocking sockets (asyncio streams), reconnect with
# exponential backoff and jitter, subscriptions restored after a reconnect, optional TLS.
# Memory is a budget: incoming packets land in one preallocated buffer.
import asyncio
import socket
import struct
import time

from micropython import const

try:
    import random
except ImportError:  # some minimal ports lack it; jitter then comes from ticks
    random = None

# Packet types and limits as const() with a leading underscore: the compiler inlines
# them, so they cost the heap neither a global nor a name.
_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)

_SPLIT_ABOVE = const(512)   # bytes of payload above which a PUBLISH is written in two parts
_IPPROTO_TCP = const(6)
_TCP_NODELAY = const(1)
_CONNACK_ERRORS = ("", "bad protocol version", "client id rejected", "server unavailable",
                   "bad user name or password", "not authorised")


class MQTTError(OSError):
    """A connection that failed or was lost; an OSError, so callers handle it with the
    socket errors. Its text goes to the console as is."""

    def __str__(self):
        return self.args[0] if self.args else "mqtt error"


def _jitter(limit_ms):
    if random is not None:
        return random.randint(0, max(0, int(limit_ms)))
    return time.ticks_us() % (int(limit_ms) + 1)


def _put_str(buf, pos, text):
    if type(text) is str:
        text = text.encode()
    n = len(text)
    buf[pos] = n >> 8
    buf[pos + 1] = n & 0xFF
    buf[pos + 2:pos + 2 + n] = text
    return pos + 2 + n


def _str_len(text):
    return 2 + len(text.encode() if type(text) is str else text)


def _header(ptype, remaining):
    # Fixed header: type byte, then the remaining length as a base-128 varint.
    out = bytearray(5)
    out[0] = ptype
    i = 1
    while True:
        byte = remaining & 0x7F
        remaining >>= 7
        out[i] = byte | (0x80 if remaining else 0)
        i += 1
        if not remaining:
            return out[:i]


def _connect_packet(client_id, user, password, keepalive, will, clean):
    flags = 0 if not clean else 0x02
    size = 10 + _str_len(client_id)
    if will:
        topic, payload, retain, qos = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        size += _str_len(topic) + 2 + len(payload)
    if user is not None:
        flags |= 0x80
        size += _str_len(user)
    if password is not None:
        flags |= 0x40
        size += _str_len(password)
    head = _header(_CONNECT, size)
    pkt = bytearray(len(head) + size)
    pkt[:len(head)] = head
    pos = len(head)
    pkt[pos:pos + 7] = b"\x00\x04MQTT\x04"
    pkt[pos + 7] = flags
    struct.pack_into("!H", pkt, pos + 8, keepalive)
    pos = _put_str(pkt, pos + 10, client_id)
    if will:
        pos = _put_str(pkt, pos, will[0])
        pos = _put_str(pkt, pos, will[1])
    if user is not None:
        pos = _put_str(pkt, pos, user)
    if password is not None:
        pos = _put_str(pkt, pos, password)
    return pkt


def _publish_packet(topic, payload, retain, qos, pid):
    """A PUBLISH as (packet, rest): rest is None, or the payload written after the packet."""
    tb = topic.encode() if type(topic) is str else topic
    plen = len(payload)
    if type(payload) is list:
        plen = 0
        for part in payload:
            plen += len(part)
    size = 2 + len(tb) + (2 if qos else 0) + plen
    head = _header(_PUBLISH | (qos << 1) | (1 if retain else 0), size)
    # A small message goes out as one buffer. A large one (a batch of several KB) is
    # written as header then payload, so it is never copied (the heap is the budget);
    # TCP_NODELAY (set at connect) keeps Nagle from holding the payload back until the
    # broker's delayed ACK, which would cost ~40 ms per message.
    split = plen > _SPLIT_ABOVE or type(payload) is list
    pkt = bytearray(len(head) + size - (plen if split else 0))
    pkt[:len(head)] = head
    pos = _put_str(pkt, len(head), tb)
    if qos:
        struct.pack_into("!H", pkt, pos, pid)
        pos += 2
    if not split:
        pkt[pos:] = payload
    return pkt, (payload if split else None)


class MQTTClient:
    """One connection to one broker. `link_up` is a callable the HAL provides: while it
    returns False the client refuses to connect or send (a Wi-Fi outage, or the sim's
    network cut), and an open connection is dropped.

    Every attribute an instance holds is a slot of its dict, which holds 23 before it is
    copied into a bigger block (37 slots: 592 bytes, which a node's fragmented heap may
    not have at its connect): so the CONNECT packet is made once, here, instead of keeping
    what goes into it, the stream is one attribute, and the timeouts are the class's unless
    a caller gives others. No attribute is added after __init__."""

    ack_timeout_ms = 4000
    connect_timeout_ms = 5000

    def __init__(self, client_id, host, port=1883, user=None, password=None,
                 keepalive=60, will=None, clean=False, ssl=None, link_up=None,
                 on_message=None, log=None, rx_size=1200, ack_timeout_ms=4000,
                 connect_timeout_ms=5000, rx_buffer=None):
        self.host = host
        self.port = port
        self.keepalive = keepalive
        # will: (topic, payload, retain, qos) or None
        self._connect = _connect_packet(client_id, user, password, keepalive, will, clean)
        self.ssl = ssl            # an ssl.SSLContext, or None
        self.link_up = link_up or (lambda: True)
        self.on_message = on_message
        self.log = log or (lambda msg: None)
        if ack_timeout_ms != MQTTClient.ack_timeout_ms:
            self.ack_timeout_ms = ack_timeout_ms
        if connect_timeout_ms != MQTTClient.connect_timeout_ms:
            self.connect_timeout_ms = connect_timeout_ms
        self.subscriptions = []   # (topic, qos), restored on every connect
        # rx_buffer: a caller that makes clients again and again passes its own, so that
        # a fragmented heap need not find rx_size contiguous bytes each time. Kept as a
        # memoryview: its slices are views, not copies.
        self._rx = memoryview(rx_buffer if rx_buffer is not None else bytearray(rx_size))
        self._stream = None       # asyncio's stream: reader and writer are one object
        self._tasks = []
        self._sending = False     # a packet is being written (see _send)
        self._waiting = {}        # packet id -> [done, acked], for PUBACK / SUBACK
        self._pid = 0
        self._last_tx = 0
        self._last_rx = 0
        self.connected = False
        self.session_present = False
        self.connects = 0         # successful connects (a harness counts reconnects)
        self.failures = 0         # consecutive failed connects, drives the backoff

    # -- connection ----------------------------------------------------------------
    def _check_link(self):
        if not self.link_up():
            raise MQTTError("network down")

    async def connect(self):
        """One attempt: open the socket, send CONNECT, wait for CONNACK, resubscribe."""
        self._check_link()
        await self.close()
        host, port = self.host, self.port
        if type(host) is list:
            # A clustered tier's members, [(host, port), ...] (NATS): the head is tried,
            # and a failed connect turns the list. Kept in `host`, not in an attribute of
            # its own, which would grow the client's attribute table by a size step.
            host, port = host[0]
        try:
            if self.ssl is not None:
                # TLS handshake on a non-blocking socket is done by asyncio's stream.
                opened = asyncio.open_connection(host, port, ssl=self.ssl)
            else:
                opened = asyncio.open_connection(host, port)
            self._stream = (await asyncio.wait_for_ms(opened, self.connect_timeout_ms))[0]
            try:
                # The option's number is the port's: lwIP's is TF_NODELAY (extmod/modlwip.c,
                # rp2), not 1, which it answers with a warning and ignores. The unix port's
                # socket module names none: Linux's number there.
                self._stream.s.setsockopt(
                    _IPPROTO_TCP, getattr(socket, "TCP_NODELAY", _TCP_NODELAY), 1)
            except (AttributeError, OSError):
                pass   # a TLS socket or a port without the option: Nagle stays on
            await self._send(self._connect)
            ptype = await asyncio.wait_for_ms(self._read_packet(), self.connect_timeout_ms)
            if ptype & 0xFF != _CONNACK:
                raise MQTTError("expected CONNACK, got 0x%02x" % (ptype & 0xFF))
            code = self._rx[1]
            if code:
                why = _CONNACK_ERRORS[code] if code < len(_CONNACK_ERRORS) else str(code)
                raise MQTTError("broker refused: " + why)
            self.session_present = bool(self._rx[0] & 1)
        except asyncio.TimeoutError:
            await self.close()
            raise MQTTError("broker did not answer in time")
        except Exception:
            await self.close()
            raise
        self.connected = True
        self.connects += 1
        self._last_rx = time.ticks_ms()
        self._tasks = [asyncio.create_task(self._read_loop()),
                       asyncio.create_task(self._keepalive_loop())]
        if self.subscriptions:   # all in one SUBSCRIBE: one round trip
            await self._subscribe(self.subscriptions)

    async def connect_with_backoff(self, attempts=0, base_ms=500, cap_ms=30000):
        """Connect, retrying with exponential backoff and full jitter (so a fleet that lost
        its broker does not reconnect in lockstep). attempts=0: until it works."""
        tried = 0
        while True:
            try:
                await self.connect()
                self.failures = 0
                return True
            except (OSError, ValueError) as err:
                # MicroPython's TLS reports a broker certificate its CA did not sign as a
                # ValueError, not an OSError: log it and back off like any refused connect.
                self.failures += 1
                tried += 1
                if type(self.host) is list:   # the next member (the session is on all)
                    self.host.append(self.host.pop(0))
                # One console line: mbedTLS's messages come wrapped in newlines.
                self.log("error mqtt: %s" % (" ".join(str(err).split()),))
                if attempts and tried >= attempts:
                    return False
                await asyncio.sleep_ms(self.backoff_ms(base_ms, cap_ms))

    def backoff_ms(self, base_ms=500, cap_ms=30000):
        """How long to wait before the next attempt, after `failures` failed ones."""
        delay = min(cap_ms, base_ms << min(max(0, self.failures - 1), 10))
        return delay // 2 + _jitter(delay // 2)

    async def disconnect(self):
        """Clean DISCONNECT: the broker discards the will (a planned sleep is not a loss)."""
        if self.connected:
            try:
                await self._send(b"\xe0\x00")
            except OSError:
                pass
            self.connected = False   # a planned end: close() logs lost connections only
        await self.close()

    async def close(self):
        was = self.connected
        self.connected = False
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._tasks = []
        if self._stream is not None:
            try:
                self._stream.close()
                await self._stream.wait_closed()
            except Exception:
                pass  # the socket may already be gone; closing is best effort
        self._stream = None
        # Wake everyone waiting for an ack: their packet will be sent again after reconnect.
        for entry in self._waiting.values():
            entry[0] = True
        self._waiting = {}
        if was:
            self.log("mqtt closed")

    # -- sending -------------------------------------------------------------------
    async def _send(self, data, more=None):
        # One packet at a time, its parts never interleaved. A flag rather than an
        # asyncio.Lock, whose class costs the publishing phase 640 bytes of heap: a second
        # sender (a PUBACK, a ping) is rare and waits its turn in 1 ms steps.
        while self._sending:
            await asyncio.sleep_ms(1)
        self._check_link()
        writer = self._stream
        if writer is None:
            raise MQTTError("not connected")
        self._sending = True
        try:
            writer.write(data)
            if type(more) is list:
                for part in more:
                    writer.write(part)
            elif more is not None:
                writer.write(more)
            await writer.drain()
        finally:
            self._sending = False
        self._last_tx = time.ticks_ms()

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    async def publish(self, topic, payload, retain=False, qos=1):
        """QoS 0: send once. QoS 1: send, then resend with DUP until the PUBACK arrives.
        Raises OSError if the connection is lost first; the caller keeps the message
        (the node's offline queue) and sends it again after reconnecting.
        payload: bytes, or a list of bytes sent one after another (a batch assembled from
        its parts, so that no buffer of the whole message is ever needed)."""
        # The packet is made by a plain function: a coroutine's frame is one block in
        # the heap, as big as its locals, made at every publish, and a replay's heap may
        # have no room for a big one.
        pid = self._next_pid() if qos else 0
        pkt, rest = _publish_packet(topic, payload, retain, qos, pid)
        if not qos:
            await self._send(pkt, rest)
            return
        entry = [False, False]
        self._waiting[pid] = entry
        try:
            while True:
                await self._send(pkt, rest)
                if not await self._wait_ack(entry):
                    pkt[0] |= 0x08  # DUP: the broker may have it already
                    continue
                if not entry[1]:
                    raise MQTTError("connection lost before PUBACK")
                return
        finally:
            self._waiting.pop(pid, None)

    async def _wait_ack(self, entry):
        """Until the read loop or close() marks entry ([done, acked]) done, or for
        ack_timeout_ms. Returns False on the timeout. Polled in 1 ms steps rather than
        with an asyncio.Event, whose class costs the publishing phase 1.2 KB of heap."""
        start = time.ticks_ms()
        while not entry[0]:
            if time.ticks_diff(time.ticks_ms(), start) > self.ack_timeout_ms:
                return False
            await asyncio.sleep_ms(1)
        return True

    async def subscribe(self, topic, qos=1):
        self.subscriptions.append((topic, qos))
        if self.connected:
            await self._subscribe([(topic, qos)])

    async def _subscribe(self, topics):
        """One SUBSCRIBE for a list of (topic, qos)."""
        pid = self._next_pid()
        size = 2
        for topic, qos in topics:
            size += _str_len(topic) + 1
        head = _header(_SUBSCRIBE, size)
        pkt = bytearray(len(head) + size)
        pkt[:len(head)] = head
        struct.pack_into("!H", pkt, len(head), pid)
        pos = len(head) + 2
        for topic, qos in topics:
            pos = _put_str(pkt, pos, topic)
            pkt[pos] = qos
            pos += 1
        entry = [False, False]
        self._waiting[pid] = entry
        try:
            await self._send(pkt)
            if not await self._wait_ack(entry):
                raise MQTTError("no SUBACK")
        finally:
            self._waiting.pop(pid, None)
        if not entry[1]:
            raise MQTTError("connection lost before SUBACK")

    # -- receiving -----------------------------------------------------------------
    async def _fill(self, mv):
        # mv must be a memoryview: slicing a bytearray would copy, and fill the copy.
        got = 0
        while got < len(mv):
            n = await self._stream.readinto(mv[got:])
            if not n:
                raise MQTTError("connection closed by the broker")
            got += n

    async def _read_packet(self):
        """Read one packet; its body goes into self._rx. Returns the type byte, plus its
        body's size times 256 (an int, not a tuple nor an attribute more)."""
        # The fixed header is read a byte at a time into the buffer's first byte, which
        # the body then overwrites.
        rx = self._rx
        first = rx[:1]
        await self._fill(first)
        ptype = rx[0]
        size = 0
        shift = 0
        while True:
            await self._fill(first)
            size |= (rx[0] & 0x7F) << shift
            if not rx[0] & 0x80:
                break
            shift += 7
        if size > len(rx):
            # Too big for the node (the SPEC caps commands at 1 KiB): read it away.
            while size:
                n = min(size, len(rx))
                await self._fill(rx[:n])
                size -= n
            self.log("error mqtt: dropped an oversized packet")
            return 0
        await self._fill(rx[:size])
        self._last_rx = time.ticks_ms()
        return size << 8 | ptype

    async def _read_loop(self):
        try:
            while True:
                got = await self._read_packet()
                kind = got & 0xF0
                if kind in (_PUBACK, _SUBACK):
                    pid = (self._rx[0] << 8) | self._rx[1]
                    entry = self._waiting.pop(pid, None)
                    if entry is not None:
                        entry[0] = entry[1] = True
                elif kind == _PUBLISH:
                    await self._on_publish(got & 0xFF, got >> 8)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self.log("error mqtt: read: %r" % (err,))
            await self.close()

    async def _on_publish(self, ptype, size):
        # Topic and payload copied once each, out of the memoryview: a slice of a bytearray
        # would be one more copy, and each is a block the replay's batches must work around.
        rx = self._rx
        tlen = (rx[0] << 8) | rx[1]
        topic = str(rx[2:2 + tlen], "utf-8")
        pos = 2 + tlen
        qos = (ptype >> 1) & 3
        pid = 0
        if qos:
            pid = (rx[pos] << 8) | rx[pos + 1]
            pos += 2
        payload = bytes(rx[pos:size])
        if self.on_message is not None:
            self.on_message(topic, payload)
        if qos == 1:
            # Written at once, not through _send: a coroutine of _send is a 200-byte block,
            # which the replay's heap may not have while receipts arrive. A stream's write
            # is synchronous (the bytes go to the socket, or wait in the stream for the
            # next drain), so it cannot split another packet's parts.
            self._check_link()
            self._stream.write(bytes((_PUBACK, 2, pid >> 8, pid & 0xFF)))

    async def _keepalive_loop(self):
        # Ping when idle for half the keepalive; declare the link dead when nothing came
        # back for 1.5 keepalives (MQTT 3.1.1 §3.1.2.10), or when the HAL says it is down.
        ka_ms = self.keepalive * 1000
        try:
            while self.connected:
                await asyncio.sleep_ms(min(500, ka_ms // 4))
                now = time.ticks_ms()
                if not self.link_up():
                    self.log("error mqtt: link down")
                    break
                if time.ticks_diff(now, self._last_rx) > ka_ms * 3 // 2:
                    self.log("error mqtt: keepalive timeout")
                    break
                if time.ticks_diff(now, self._last_tx) > ka_ms // 2:
                    await self._send(b"\xc0\x00")
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self.log("error mqtt: ping: %r" % (err,))
        await self.close()
