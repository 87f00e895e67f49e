# Entry point on the device (and for virtual nodes under the unix port): load and check
# the config, pick the platform's HAL, run the node. Kept as source: a board runs
# /main.py by name; everything it imports is precompiled .mpy.
import gc
import sys


def load_config():
    import node
    from node import config
    try:
        cfg = config.load()
    except config.ConfigError as err:
        # One line naming the bad key; nothing else runs with a config we do not trust.
        print("config error: %s" % err)
        sys.exit(2)
    # The validator (and what it imports) is not needed again until a `set` command.
    node.drop("commands", "protocols")
    return cfg


def main():
    cfg = load_config()
    # The console break-in window, at every boot and every wake, before the node touches
    # its boot counter or RTC memory: a technician's laptop (`urbansense node flash`, `node
    # info`: field/serial_board.py) keeps sending Ctrl-A while it waits for the REPL, and a
    # duty-cycled node is awake for only tens of milliseconds a wake. What was sent while
    # the board booted waits here: Ctrl-A or Ctrl-C stops the program (the REPL takes the
    # rest). A byte, not only Ctrl-C: Ctrl-C is a signal on a virtual board
    # (hil/boards/bridge.py), and one that lands while its interpreter starts kills that
    # start. 50 ms of every wake (docs/PERFORMANCE.md); kept this small, heap is the budget.
    import select
    poller = select.poll()
    poller.register(sys.stdin, select.POLLIN)
    if poller.poll(50):
        char = sys.stdin.read(1)
        if char and char in "\x01\x03":
            raise KeyboardInterrupt
        if char and cfg["hil"]:
            # The start of a stimulus line (contract 3): the HAL's console reader takes it.
            from hal import common
            common.carried = char
    poller = None
    gc.collect()
    import hal
    board = hal.load(cfg["platform"]).HAL(cfg)
    from node.app import Node
    try:
        Node(board, cfg).run()
    except KeyboardInterrupt:
        # Stopped from the console: the technician's soft reset follows, not a crash. The
        # sim HAL, which keeps its reset cause itself, records that.
        if hasattr(board, "console_stop"):
            board.console_stop()
        raise


main()
