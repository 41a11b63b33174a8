#!/usr/bin/env bash
# The last line of defence of make e2e-node. The Go test cleans up after
# itself, also when it fails or gets SIGINT/SIGTERM; run.sh's EXIT trap
# runs this script for the cases the test binary cannot handle (killed, or
# go test's -timeout panic). It reads the state file the test keeps and
# does nothing when that is gone: the test removes it once it has cleaned
# up. Usage: cleanup.sh STATE_FILE
set -uo pipefail
state=${1:?usage: cleanup.sh STATE_FILE}
if [ ! -s "$state" ]; then rm -f "$state"; exit 0; fi

netns="" workdir="" cgroup=""
while IFS='=' read -r k v; do
  case $k in
    netns) netns=$v ;;
    workdir) workdir=$v ;;
    cgroup) cgroup=$v ;;
  esac
done <"$state"
echo "e2e-node: cleaning up what the test left behind (${workdir:-no work dir})" >&2

# 1. Every process in the test's network namespace: the namespace holder,
#    containerd, the shims, the containers (hostNetwork), the emulator and
#    the kubelet. Their mount namespace, and every mount in it, goes with
#    them. Never the host's own namespace.
if [[ $netns =~ ^net:\[[0-9]+\]$ ]] && [ "$netns" != "$(readlink /proc/self/ns/net)" ]; then
  for _ in $(seq 100); do
    pids=()
    for p in /proc/[0-9]*; do
      [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$netns" ] && pids+=("${p#/proc/}")
    done
    [ ${#pids[@]} -eq 0 ] && break
    kill -KILL "${pids[@]}" 2>/dev/null
    sleep 0.1
  done
fi

# 2. The cgroup tree the test created (the kubelet's cgroupRoot), in every
#    hierarchy, deepest first.
if [[ $cgroup =~ ^icr-e2e-node-[A-Za-z0-9]+$ ]]; then
  while read -r _ mnt type _; do
    case $type in cgroup | cgroup2) ;; *) continue ;; esac
    [ -d "$mnt/$cgroup" ] || continue
    for _ in $(seq 50); do
      find "$mnt/$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null
      [ -d "$mnt/$cgroup" ] || break
      sleep 0.1
    done
    [ -d "$mnt/$cgroup" ] && echo "e2e-node: could not remove $mnt/$cgroup" >&2
  done </proc/mounts
fi

# 3. The work directory: nothing may be mounted under it any more (the
#    test's mounts lived in its own mount namespace, gone with step 1).
if [[ $(basename "${workdir:-x}") =~ ^icr-e2e-node-[A-Za-z0-9]+$ ]] && [ -d "$workdir" ]; then
  awk -v w="$workdir/" 'index($2, w) == 1 || $2 == substr(w, 1, length(w)-1) {print $2}' /proc/mounts | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
  rm -rf "$workdir"
fi
rm -f "$state"
