#!/usr/bin/env python3
"""Send one command to a lab guest's console and print what it answered.

usage: console.py RUNDIR [--timeout S] COMMAND [ARGS...]
  RUNDIR holds serial.sock and serial.log (boot-qemu.sh / start-domain.sh).
  The line is sent as "@TAG COMMAND ARGS" (TAG unique per call); we wait for the
  guest's "LAB-GOT @TAG", hang up (output printed while a client is attached can
  be garbled in the log), then follow serial.log until "LAB-ACK @TAG rc=N".
  Prints the guest's output between the two markers; exits with the guest's rc
  (3 for LAB-ERR, 4 on timeout). Protocol: see lab/guest-init.sh.
"""
import os
import re
import socket
import sys
import time


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    run, args = argv[0], argv[1:]
    timeout = 120.0
    if args[0] == "--timeout":
        timeout, args = float(args[1]), args[2:]
    tag = f"c{os.getpid()}x{time.time_ns() % 10**9}"
    log = os.path.join(run, "serial.log")
    deadline = time.monotonic() + timeout

    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(os.path.join(run, "serial.sock"))
    s.sendall(f"@{tag} {' '.join(args)}\n".encode())
    got = f"LAB-GOT @{tag}".encode()
    buf = b""
    while got not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    s.close()

    end = re.compile(rf"^LAB-(ACK|ERR) @{tag}\b(.*)$", re.M)
    while time.monotonic() < deadline:
        text = open(log, errors="replace").read().replace("\r\n", "\n")
        i = text.rfind(f"LAB-GOT @{tag}\n")
        m = end.search(text, i if i >= 0 else 0)
        if i >= 0 and m:
            sys.stdout.write(text[i + len(f"LAB-GOT @{tag}\n"):m.start()])
            if m.group(1) == "ERR":
                print(m.group(0), file=sys.stderr)
                return 3
            rc = re.search(r"rc=(\d+)", m.group(2))
            return int(rc.group(1)) if rc else 0
        time.sleep(0.1)
    print(f"console.py: no LAB-ACK @{tag} within {timeout}s; log tail:", file=sys.stderr)
    print(open(log, errors="replace").read()[-600:], file=sys.stderr)
    return 4


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
