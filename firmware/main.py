# Entry point on the device (and for virtual nodes under the unix port): check the config,
# open the console break-in window, pick the platform's HAL, run the node. Kept as source:
# a board runs /main.py by name; everything it imports is precompiled .mpy. It is compiled
# at every boot and wake and its code stays in the heap while the node runs, so it holds
# the calls only: what runs once (the config check, the break-in window) lives in modules
# that are dropped again, and a console stop is the Node's to handle (node/app.py).


def main():
    from node import config
    cfg = config.checked()
    # At every boot and wake, before the node touches its boot counter or RTC memory.
    from hal import common
    common.break_in(cfg)
    config = common = None   # both out of sys.modules now: let their code go
    import node
    node.drop()   # collected before the node's long-lived objects come in
    import hal
    from node.app import Node
    Node(hal.load(cfg["platform"]).HAL(cfg), cfg).run()


main()
