#!/usr/bin/env python3
"""Seeds for the QMP fuzz targets from real QEMU 7.2 conversations
(crates/qmpsim/tests/data/qemu-7.2-*.jsonl): what the endpoint sends, in the order
memwarden's QMP backend asks (QmpBackend::read_endpoint), ids renumbered to the client's.

  usage: qmp_transcripts.py OUT_DIR_REPLIES OUT_DIR_PLAN CAPTURE.jsonl...
"""
import json
import os
import sys

P = "/machine/peripheral"
B = P + "/balloon0"


def key(execute, arguments=None):
    return json.dumps([execute, arguments], sort_keys=True)


def replies(path):
    """(greeting, {command key: [recv lines]} first and last occurrence after negotiation)."""
    first, last, greeting, negotiated = {}, {}, None, False
    for line in open(path):
        d = json.loads(line)
        if d["send"] is None:
            greeting = d["recv"][0]
            continue
        try:
            sent = json.loads(d["send"])
        except ValueError:
            continue
        if not isinstance(sent, dict) or not isinstance(sent.get("execute"), str):
            continue
        k = key(sent["execute"], sent.get("arguments"))
        if sent["execute"] == "qmp_capabilities" and not negotiated:
            first[k] = last[k] = d["recv"]
            negotiated = True
            continue
        if negotiated:
            first.setdefault(k, d["recv"])
            last[k] = d["recv"]
    return greeting, first, last


def client_order(has_balloon, backend=True):
    """The commands read_endpoint sends, in order (`backend`), or the qmp_replies target."""
    if not backend:
        cmds = [key("qmp_capabilities"), key("qom-list", {"path": P})]
        if has_balloon:
            cmds += [key("qom-get", {"path": B, "property": p})
                     for p in ("guest-stats-polling-interval", "deflate-on-oom",
                               "free-page-reporting")]
        else:
            cmds.append(key("qom-list", {"path": P + "-anon"}))
        return cmds + [key("query-balloon"),
                       key("qom-get", {"path": B, "property": "guest-stats"})]
    cmds = [key("qmp_capabilities"), key("query-name"), key("query-uuid"),
            key("query-memory-size-summary"), key("qom-list", {"path": P})]
    if has_balloon:
        cmds += [key("qom-get", {"path": B, "property": p})
                 for p in ("guest-stats-polling-interval", "deflate-on-oom",
                           "free-page-reporting")]
    else:
        cmds.append(key("qom-list", {"path": P + "-anon"}))
    cmds.append(key("query-status"))
    if has_balloon:
        cmds.append(key("qom-get", {"path": B, "property": "guest-stats-polling-interval"}))
    cmds.append(key("query-balloon"))
    if has_balloon:
        cmds.append(key("qom-get", {"path": B, "property": "guest-stats"}))
    return cmds


def transcript(greeting, table, has_balloon, backend=True):
    out = [greeting]
    for i, k in enumerate(client_order(has_balloon, backend), start=1):
        for line in table.get(k, ['{"error": {"class": "CommandNotFound", "desc": "x"}}']):
            m = json.loads(line)
            if "id" in m:
                m["id"] = i
            out.append(json.dumps(m))
    return ("\n".join(out) + "\n").encode()


def main():
    replies_dir, plan_dir, captures = sys.argv[1], sys.argv[2], sys.argv[3:]
    status = open("/proc/self/status", "rb").read()
    try:
        smaps = open("/proc/self/smaps_rollup", "rb").read()
    except OSError:
        smaps = b""
    n = 0
    for c in captures:
        greeting, first, last = replies(c)
        has_balloon = "balloon0" in json.dumps(first.get(key("qom-list", {"path": P})))
        for table in (first, last):
            t = transcript(greeting, table, has_balloon)
            n += 1
            r = transcript(greeting, table, has_balloon, backend=False)
            open(os.path.join(replies_dir, f"seed-qmp-{n}"), "wb").write(b"\x00" + r)
            if n == 1:
                # The flood (flag byte 0x01) where the client still waits: in place of the
                # last reply (guest-stats).
                cut = r.rstrip(b"\n").rsplit(b"\n", 1)[0] + b"\n"
                open(os.path.join(replies_dir, "seed-qmp-flood"), "wb").write(b"\x01" + cut)
            for flags in (0, 1):
                # One cycle, then two (the same VM a cycle later).
                open(os.path.join(plan_dir, f"seed-qmp-{n}-{flags}"), "wb").write(
                    bytes([flags]) + t + b"\0" + status + b"\0" + smaps)
                open(os.path.join(plan_dir, f"seed-qmp-{n}-{flags}-2"), "wb").write(
                    bytes([flags]) + t + b"\0" + status + b"\0" + smaps + b"\0" + t)


if __name__ == "__main__":
    main()
