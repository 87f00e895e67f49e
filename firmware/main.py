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
    gc.collect()
    import hal
    board = hal.load(cfg["platform"]).HAL(cfg)
    from node.app import Node
    Node(board, cfg).run()


main()
