#!/usr/bin/env bash
# Checks what the real-node test (make e2e-node) needs on this machine.
# Prints nothing and exits 0 when everything is there; otherwise prints ONE
# line, "<what is missing>: <how to fix it>", and exits 1. It creates
# nothing that outlives it.
set -euo pipefail

fail() { echo "$*"; exit 1; }

[ "$(uname -s)" = Linux ] || fail "not Linux: the test runs a kubelet and containerd on a Linux machine"
[ "$(id -u)" = 0 ] || fail "not root: the test starts containerd and a kubelet and creates namespaces and cgroups; run it as root (sudo make e2e-node)"
command -v go >/dev/null || fail "go is not on the PATH: install Go (see go.mod for the version)"
for c in unshare nsenter mount umount; do
  command -v "$c" >/dev/null || fail "$c is missing: apt-get install -y util-linux mount"
done
command -v ip >/dev/null || fail "ip is missing: apt-get install -y iproute2"
missing=()
for c in containerd containerd-shim-runc-v2 ctr runc; do
  command -v "$c" >/dev/null || missing+=("$c")
done
[ ${#missing[@]} -eq 0 ] || fail "${missing[*]} not installed: apt-get install -y containerd runc"
grep -qw overlay /proc/filesystems 2>/dev/null || modprobe overlay 2>/dev/null || fail "the kernel has no overlay filesystem (containerd's snapshotter needs it): modprobe overlay"
grep -qE '^[^ ]+ /sys/fs/cgroup(/[^ ]*)? cgroup2? ' /proc/mounts || fail "no cgroup filesystem is mounted under /sys/fs/cgroup: mount cgroups (a systemd host has them) or run on a machine that has them"
probe=""
for d in /sys/fs/cgroup/memory /sys/fs/cgroup/cpu /sys/fs/cgroup; do
  if [ -d "$d" ] && grep -qE " $d cgroup2? " /proc/mounts; then probe=$d; break; fi
done
[ -n "$probe" ] || fail "neither the cpu nor the memory cgroup controller is mounted under /sys/fs/cgroup: the kubelet needs both"
p="$probe/icr-e2e-node-probe-$$"
if mkdir "$p" 2>/dev/null; then rmdir "$p"; else fail "cgroups under $probe are not writable (read-only or delegated elsewhere): run as root on the host, not in an unprivileged container"; fi
unshare --mount --net --propagation private true 2>/dev/null || fail "cannot create mount and network namespaces (unshare --mount --net failed): run as root on the host, not in a restricted container"
exit 0
