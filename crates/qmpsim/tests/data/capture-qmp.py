#!/usr/bin/env python3
"""Capture real QEMU QMP replies, byte for byte, as the simulator's reference.

usage: capture-qmp.py QMP_SOCKET > qemu-7.2-replies.jsonl

Each output line is {"send": RAW_LINE_SENT_OR_NULL, "recv": [RAW_LINES_RECEIVED...]}.
The first record (send null) holds the greeting. Events that arrive while a reply is
awaited are kept in recv, in order. Run against a lab guest (lab/boot-qemu.sh) whose
balloon driver has loaded (LAB-READY) and whose stats polling is on.
"""
import json, socket, sys, time

sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
buf = b""

def recv_line(timeout):
    """One line, or None after `timeout` seconds without one."""
    global buf
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return None
        if not chunk:
            return None
        buf += chunk
    line, buf = buf.split(b"\n", 1)
    return line.decode().rstrip("\r")

def record(send, wait_event=None):
    recv = []
    if send is not None:
        sock.sendall(send.encode() + b"\n")
    replied = False
    while True:
        line = recv_line(5)
        if line is None:
            break
        recv.append(line)
        msg = json.loads(line)
        if "event" in msg:
            if msg["event"] == wait_event:
                wait_event = None
        else:
            replied = True
        if replied and wait_event is None:
            break
    print(json.dumps({"send": send, "recv": recv}), flush=True)

def cmd(execute, id_=None, **args):
    m = {"execute": execute}
    if args:
        m["arguments"] = args
    if id_ is not None:
        m["id"] = id_
    return json.dumps(m)

record(None)                                   # greeting
record(cmd("query-name", 1))                   # before negotiation
record(cmd("qmp_capabilities", 2))
record(cmd("qmp_capabilities", 3))             # again
record(cmd("query-name", 4))
record(cmd("query-uuid", 5))
record(cmd("query-status", 6))
record(cmd("query-memory-size-summary", 7))
record(cmd("qom-list", 8, path="/machine/peripheral"))
record(cmd("qom-list", 9, path="/machine/peripheral-anon"))
B = "/machine/peripheral/balloon0"
record(cmd("qom-get", 10, path=B, property="guest-stats-polling-interval"))
record(cmd("qom-get", 11, path=B, property="guest-stats"))
record(cmd("qom-get", 12, path=B, property="deflate-on-oom"))
record(cmd("qom-get", 13, path=B, property="free-page-reporting"))
record(cmd("query-balloon", 14))
record(cmd("qom-get", 15, path=B, property="no-such-property"))
record(cmd("qom-get", 16, path="/machine/peripheral/nosuch", property="guest-stats"))
record(cmd("no-such-command", 17))
record(cmd("query-balloon", "text-id"))
record(cmd("query-balloon"))                   # no id
record(cmd("qom-set", 18, path=B, property="guest-stats-polling-interval", value=2))
record(cmd("balloon", 19, value=0))
record(cmd("balloon", 20, value=400 * 1024 * 1024), wait_event="BALLOON_CHANGE")
time.sleep(1)
record(cmd("query-balloon", 21))
record(cmd("balloon", 22, value=512 * 1024 * 1024), wait_event="BALLOON_CHANGE")
record("@")                                    # not JSON
record('{"execute": 1, "id": 24}')           # execute not a string
record(cmd("qom-get", 23, path=B, property="guest-stats"))
