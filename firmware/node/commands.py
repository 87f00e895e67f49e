# The `cmd` topic (SPEC section 7): set, get, ping, sample, reboot, each answered on
# `cmd/ack`.
#
# Commands are durable. The link writes each one to the command queue in flash before its
# PUBACK goes back to the broker (node/link.py); they run here later, in a phase of their
# own, while the MQTT client's code is out of the heap (decoding and validating are the
# largest code a node has). A command id runs at most once: the ids done are kept in
# flash with their answers, and a repeated delivery (QoS 1 is at least once) is answered
# again with the first answer. The order of the steps makes every crash safe: run, note it
# done, queue the answer, and only then take the command off the queue.
import files
from protocols.errors import ProtocolError

DONE_FILE = "state/cmds.json"
REMEMBER = 8   # ids kept with their answers


def _raw_id(payload):
    # An undecodable command still deserves an answer if its id can be found.
    try:
        import json
        obj = json.loads(payload)
        cmd_id = obj.get("id")
        from protocols.topics import is_slug
        return cmd_id if is_slug(cmd_id) else None
    except Exception:
        return None


def run_pending(node):
    """Run every command waiting in the command queue, oldest first; their answers go to
    the ack queue (node.acks), which the link publishes first when it next connects."""
    done = files.read_json(DONE_FILE, [])
    while len(node.cmds):
        payload = node.cmds.peek(1)[0]
        answer = _answer(node, payload, done)
        if answer is not None:
            body = {"boot": node.boot, "seq": max(0, node.seq - 1), "id": answer[0],
                    "ok": answer[1]}
            if answer[2] is not None:   # queued records hold no None (node/link.py)
                body["error"] = answer[2]
            if answer[3] is not None:
                body["result"] = answer[3]
            node.acks.push(body)
        node.cmds.pop(1)


def _decode(payload):
    # Imported here, not at the top, so that a `sample` can drop the decoder first.
    from protocols import codec
    return codec.decode_command(payload)


def _answer(node, payload, done):
    """Run one command (unless done before). Returns [id, ok, error, result], or None for
    a payload without a usable id (logged, not answered)."""
    try:
        cmd = _decode(payload)
    except ProtocolError as err:
        node.log("error cmd: %s" % err)
        cmd_id = _raw_id(payload)
        return None if cmd_id is None else [cmd_id, False, str(err)[:200], None]
    cmd_id = cmd["id"]
    for entry in done:
        if entry[0] == cmd_id:
            return entry
    entry = [cmd_id, True, None, None]
    name = cmd["cmd"]
    if name == "reboot":
        node.reboot = True    # after the answer is queued (the schedule resets)
    else:
        _run(node, name, cmd["args"], entry)
    node.log("cmd %s %s ok=%s" % (cmd_id, name, entry[1]))
    done.append(entry)
    if len(done) > REMEMBER:
        done.pop(0)
    files.write_json(DONE_FILE, done)
    return entry


def _run(node, name, args, entry):
    """set, get, ping, sample: fill entry's ok, error and result."""
    cfg = node.cfg
    if name == "set":
        # The validator is the largest module a node has; main.py drops it after the
        # boot check, and it comes back for a `set` only.
        from node import config
        try:
            config.persist(cfg, args)
        except config.ConfigError as err:
            entry[1] = False
            entry[2] = ("unknown_field: %s" if "thresholds." in err.key
                        else "out_of_range: %s") % err
            return
        if node.detect is not None:   # else loaded with the new limits when next needed
            node.detect.set_limits(cfg["thresholds"])
        result = {"interval_s": cfg["interval_s"]}
        if "thresholds" in args:
            result["thresholds"] = dict((k, cfg["thresholds"][k]) for k in args["thresholds"])
    elif name == "get":
        result = {"interval_s": cfg["interval_s"], "thresholds": cfg["thresholds"],
                  "schedule": cfg["schedule"], "queued": len(node.tm) + len(node.ev),
                  "dropped": node.counters["dropped"]}
    elif name == "ping":
        result = {"uptime_s": node.uptime_s()}
    else:
        # sample: the reading is taken as soon as this phase is over (its code and the
        # sampling phase's do not fit in the heap together); the reading is the answer.
        node.sample_now = True
        result = None
    entry[3] = result
