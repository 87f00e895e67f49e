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
    # its boot counter or RTC memory (hal/common.py, break_in). Its code is dropped again
    # when the node does not use the console otherwise: main.py is compiled at boot and
    # stays resident, heap is the budget.
    from hal import common
    common.break_in()
    if not cfg["hil"]:
        del sys.modules["hal.common"]
        sys.modules["hal"].__dict__.pop("common", None)
    common = None
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
