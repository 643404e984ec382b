#!/usr/bin/env python3
"""Seeds for the e2e_host_tree fuzz target: each captured tree of fixtures/ (and this
machine's /proc and /sys) as the target's NUL-separated sections, in the order of its FILES.

  usage: host_trees.py OUT_DIR ROOT...   (ROOT "/" is the live system)
"""
import os
import re
import sys

CUT = 8192  # bytes per file: whole vmallocinfo or smaps make every execution slow


def read(root, rel, cut=CUT):
    try:
        with open(os.path.join(root, rel), "rb") as f:
            return f.read(cut)
    except OSError:
        return b""


def dir_lines(root, rel, depth=2):
    """`relative/path value` lines for the one-line files under root/rel."""
    base = os.path.join(root, rel)
    out = []
    for dirpath, dirnames, files in os.walk(base):
        dirnames.sort()
        if dirpath[len(base):].count("/") >= depth:
            continue
        for f in sorted(files):
            path = os.path.join(dirpath, f)
            try:
                with open(path, "rb") as fh:
                    value = fh.read(256).split(b"\n")[0]
            except OSError:
                continue
            out.append(os.path.relpath(path, base).encode() + b" " + value)
    return b"\n".join(out) + (b"\n" if out else b"")


def pids(root):
    d = os.path.join(root, "proc")
    return sorted(int(p) for p in os.listdir(d) if p.isdigit())


def name_of(root, pid):
    m = re.search(rb"^Name:\s*(\S+)", read(root, f"proc/{pid}/status"), re.M)
    return m.group(1) if m else b""


def seed(root):
    ps = pids(root)
    user = next((p for p in ps if read(root, f"proc/{p}/smaps_rollup", 1)
                 or read(root, f"proc/{p}/smaps", 1)), None)
    ksmd = next((p for p in ps if name_of(root, p) == b"ksmd"), None)
    u = (lambda f: read(root, f"proc/{user}/{f}")) if user else (lambda f: b"")
    k = (lambda f: read(root, f"proc/{ksmd}/{f}")) if ksmd else (lambda f: b"")
    rollup = u("smaps_rollup")
    sections = [
        read(root, "proc/meminfo"),
        read(root, "proc/vmstat"),
        read(root, "proc/pressure/memory"),
        read(root, "proc/zoneinfo"),
        read(root, "proc/vmallocinfo", 4096),
        read(root, "proc/modules"),
        read(root, "proc/sys/kernel/osrelease"),
        u("status"),
        rollup,
        b"" if rollup else u("smaps"),
        u("ksm_stat"),
        u("ksm_merging_pages"),
        k("status"),
        k("stat"),
        dir_lines(root, "sys/kernel/mm/ksm", 1),
        dir_lines(root, "sys/kernel/mm/hugepages"),
        dir_lines(root, "sys/kernel/mm/transparent_hugepage"),
        read(root, "sys/devices/system/node/node0/meminfo"),
    ]
    return b"\0".join(s.replace(b"\0", b" ") for s in sections)


def main():
    out, roots = sys.argv[1], sys.argv[2:]
    for i, r in enumerate(roots, start=1):
        if os.path.isfile(os.path.join(r, "proc/meminfo")):
            open(os.path.join(out, f"seed-tree-{i}"), "wb").write(seed(r))


if __name__ == "__main__":
    main()
