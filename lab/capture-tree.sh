#!/bin/sh
# Copy the memory-relevant kernel files of a running system into a tree that
# memwarden's readers can be rooted at (fixtures/<name>/proc/..., .../sys/...).
#
# usage: capture-tree.sh DEST [SRCROOT]
#   DEST     directory to fill (created; files already there are overwritten)
#   SRCROOT  root to read from (default /): reads SRCROOT/proc and SRCROOT/sys
# env:
#   SMAPS_KEEP=N   keep proc/PID/smaps only for pid 1 and the N pids with the
#                  largest Rss in smaps_rollup (default: keep all). smaps_rollup
#                  is always kept for every pid.
#   EXCLUDE=RE     skip pids whose command line (NULs as spaces) matches the
#                  extended regexp RE (e.g. to keep a sandbox's own agents and
#                  their arguments out of a committed fixture)
#
# POSIX sh + busybox applets only (cat, find, mkdir, sort, head): it also runs
# inside the lab guests (lab/guest-init.sh). Files that cannot be read (write-
# only sysfs knobs, pids that vanished) are skipped, never fatal. Regular files
# only: symlinks and directories are walked as the kernel lays them out.
set -u
DEST=${1:?usage: capture-tree.sh DEST [SRCROOT]}
SRC=${2:-}
[ "$SRC" = / ] && SRC=
mkdir -p "$DEST" || exit 1

# copy REL: SRC/REL -> DEST/REL; drop the copy if the read failed.
copy() {
  [ -f "$SRC/$1" ] || return 0
  d=$DEST/$1
  mkdir -p "${d%/*}"
  cat "$SRC/$1" > "$d" 2>/dev/null || rm -f "$d"
}
# copy_tree REL: every regular file below SRC/REL (not following symlinks).
copy_tree() {
  [ -d "$SRC/$1" ] || return 0
  find "$SRC/$1" -type f 2>/dev/null | while read -r f; do
    copy "${f#"$SRC"/}"
  done
}

for f in meminfo vmstat pressure/memory vmallocinfo modules zoneinfo buddyinfo \
         pagetypeinfo slabinfo swaps uptime sys/kernel/osrelease cmdline; do
  copy "proc/$f"
done
copy_tree proc/sys/vm
copy proc/net/sockstat
copy proc/net/sockstat6
# zram devices (/sys/block entries are symlinks: the device's mm_stat is copied under its name).
for z in "$SRC"/sys/block/zram[0-9]*; do
  [ -f "$z/mm_stat" ] && copy "sys/block/${z##*/}/mm_stat"
done
# DMA-bufs: CONFIG_DMABUF_SYSFS_STATS's per-buffer files, else debugfs's bufinfo.
for b in "$SRC"/sys/kernel/dmabuf/buffers/*; do
  [ -d "$b" ] || continue
  for f in size exporter_name; do copy "sys/kernel/dmabuf/buffers/${b##*/}/$f"; done
done
copy sys/kernel/debug/dma_buf/bufinfo
# OpenZFS (module loaded): the ARC's kstats, and the SPL's own kmem caches (where its linear
# buffers and headers sit).
for f in kstat/zfs/arcstats kstat/zfs/abdstats kmem/slab; do copy "proc/spl/$f"; done

for p in "$SRC"/proc/[0-9]*; do
  pid=${p##*/}
  case "$pid" in *[!0-9]*) continue ;; esac
  t=proc/$pid
  if [ -n "${EXCLUDE:-}" ] && tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -qE "$EXCLUDE"; then
    continue
  fi
  for f in status cmdline smaps_rollup smaps ksm_stat ksm_merging_pages; do
    copy "$t/$f"
  done
  # The process exited while we read it: drop the partial directory.
  [ -f "$DEST/$t/status" ] || rm -rf "${DEST:?}/$t"
done

for d in ksm uksm hugepages transparent_hugepage; do
  copy_tree "sys/kernel/mm/$d"
done
for n in "$SRC"/sys/devices/system/node/node[0-9]*; do
  [ -d "$n" ] || continue
  n=${n#"$SRC"/}
  for f in meminfo vmstat numastat; do copy "$n/$f"; done
  copy_tree "$n/hugepages"
done

# Trim smaps (the only big file) to a few pids when asked.
if [ -n "${SMAPS_KEEP:-}" ]; then
  keep=$(for r in "$DEST"/proc/[0-9]*/smaps_rollup; do
           [ -f "$r" ] || continue
           rss=$(while read -r k v _; do [ "$k" = Rss: ] && echo "$v" && break; done < "$r")
           p=${r%/smaps_rollup}
           echo "${rss:-0} ${p##*/}"
         done | sort -rn | head -n "$SMAPS_KEEP" | while read -r _ p; do echo "$p"; done)
  for s in "$DEST"/proc/[0-9]*/smaps; do
    [ -f "$s" ] || continue
    p=${s%/smaps}; p=${p##*/}
    case " 1 $(echo $keep) " in *" $p "*) ;; *) rm -f "$s" ;; esac
  done
fi
exit 0
