# Pieces every HAL shares: the TLS context for the broker, and the HIL console protocol
# (firmware/README.md, contract 3): `!stim {json}`, `!net down|up`, answered `!ok`/`!err`.
import json
import sys


def ssl_context(ca):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # verify_mode is an attribute of the port's SSLContext (extmod/modtls_mbedtls.c,
    # ssl_context_attr) that the ports' stubs leave out.
    if ca:
        ctx.load_verify_locations(cafile=ca)   # DER: what mbedTLS loads
        ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]
    else:
        ctx.verify_mode = ssl.CERT_NONE  # type: ignore[attr-defined]
    return ctx


def console_poller():
    import select
    poller = select.poll()
    poller.register(sys.stdin, select.POLLIN)
    return poller


# A character the break-in window read that was no break-in: the start of a line.
carried = ""


def break_in(cfg, window_ms=50):
    """The console break-in window (main.py): a technician's laptop (`urbansense node
    flash`, `node info`: field/serial_board.py) keeps sending Ctrl-A while it waits for the
    REPL, and a duty-cycled node is awake for only tens of milliseconds a wake. What was
    sent while the board booted waits here: Ctrl-A or Ctrl-C stops the program
    (KeyboardInterrupt: the REPL takes the rest). A byte, not only Ctrl-C: Ctrl-C is a
    signal on a virtual board (hil/boards/bridge.py), and one that lands while its
    interpreter starts kills that start. 50 ms of every wake (docs/PERFORMANCE.md).
    Then this module leaves sys.modules, unless the node serves HIL stimuli (cfg "hil"):
    heap is the budget, and its caller lets it go."""
    global carried
    if console_poller().poll(window_ms):
        char = sys.stdin.read(1)
        if char and char in "\x01\x03":
            raise KeyboardInterrupt
        carried = char   # the start of a stimulus line (contract 3): console_lines takes it
    if not cfg["hil"]:
        del sys.modules[__name__]
        sys.modules["hal"].__dict__.pop("common", None)


def console_lines(poller):
    """Lines waiting on the console, without blocking. Returns (lines, still_open)."""
    global carried
    lines = []
    while poller.poll(0):
        line = sys.stdin.readline()
        if not line:
            return lines, False   # console closed
        lines.append((carried + line).strip())
        carried = ""
    return lines, True


def serve_console(poller, stimuli):
    """Answer the stimulus lines waiting on the console. Returns (still_open, net): net
    True (up), False (down) or None (no `!net` line came)."""
    lines, still_open = console_lines(poller)
    net = None
    for line in lines:
        answer, changed = console_command(line, stimuli)
        if changed is not None:
            net = changed
        print(answer)
    return still_open, net


def console_command(line, stimuli):
    """Apply one console line to the stimuli dict. Returns (answer, net) with net True
    (up), False (down) or None (unchanged)."""
    if line.startswith("!net "):
        return "!ok", line[5:].strip() != "down"
    if line.startswith("!stim "):
        try:
            changes = json.loads(line[6:])
        except ValueError:
            return "!err stimulus is not JSON", None
        for name in changes:
            if changes[name] is None:
                stimuli.pop(name, None)
            else:
                stimuli[name] = changes[name]
        return "!ok", None
    return "!err unknown console command", None
