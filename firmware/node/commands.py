# The `cmd` topic (SPEC section 7): set, get, ping, sample, reboot, each answered on
# `cmd/ack`. A command id runs at most once per boot; a repeated delivery (QoS 1 is at
# least once) is acked again with the first answer, without running twice.
from protocols import codec
from protocols.errors import ProtocolError
from protocols.topics import is_slug

REMEMBER = 8   # ids kept (RTC memory survives deep sleep, so duty-cycled nodes keep them too)


def _raw_id(payload):
    # An undecodable command still deserves an answer if its id can be found.
    try:
        import json
        obj = json.loads(payload)
        cmd_id = obj.get("id")
        return cmd_id if is_slug(cmd_id) else None
    except Exception:
        return None


def handle(node, payload):
    """Run one command; return (ack payload bytes or None, reboot requested)."""
    try:
        cmd = codec.decode_command(payload)
    except ProtocolError as err:
        cmd_id = _raw_id(payload)
        node.log("error cmd: %s" % err)
        if cmd_id is None:
            return None, False
        return node.link.ack(cmd_id, False, error=str(err)[:200]), False
    cmd_id = cmd["id"]
    done = node.done_cmds
    for entry in done:
        if entry[0] == cmd_id:
            return node.link.ack(cmd_id, entry[1], error=entry[2], result=entry[3]), False
    ok, error, result, reboot = True, None, None, False
    name = cmd["cmd"]
    args = cmd["args"]
    if name == "set":
        # Imported only when needed: the validator is the largest module a node has,
        # and main.py drops it from the heap after checking the config at boot.
        from node import config
        try:
            config.persist(node.cfg, args)
            if node.detect is not None:   # else loaded with the new limits when next needed
                node.detect.set_limits(node.cfg["thresholds"])
            result = {"interval_s": node.cfg["interval_s"]}
            if "thresholds" in args:
                result["thresholds"] = dict((k, node.cfg["thresholds"][k]) for k in args["thresholds"])
        except config.ConfigError as err:
            ok, error = False, "unknown_field: %s" % err if "thresholds." in err.key \
                else "out_of_range: %s" % err
    elif name == "get":
        result = {"interval_s": node.cfg["interval_s"], "thresholds": node.cfg["thresholds"],
                  "schedule": node.cfg["schedule"], "queued": len(node.tm) + len(node.ev),
                  "dropped": node.counters["dropped"]}
    elif name == "ping":
        result = {"uptime_s": node.uptime_s()}
    elif name == "sample":
        node.take_reading()
        result = {"seq": node.seq - 1}
    elif name == "reboot":
        reboot = True
    node.log("cmd %s %s ok=%s" % (cmd_id, name, ok))
    done.append([cmd_id, ok, error, result])
    if len(done) > REMEMBER:
        done.pop(0)
    return node.link.ack(cmd_id, ok, error=error, result=result), reboot
