#!/usr/bin/env bash
# Disk-full suite (tests/fault/disk.py): the data dir on a 48 MiB tmpfs mounted in a
# private mount namespace (`unshare -m` as root, `unshare -rm` otherwise: the mount is
# invisible outside and goes away with the test). Prints "disk: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
export B=${B:-build}
T=$(mktemp -d /tmp/qd_diskmnt.XXXXXX)
mkdir -p "$T/mnt"
if [ "$(id -u)" -eq 0 ]; then NS="unshare -m --propagation private"; else NS="unshare -rm --propagation private"; fi
$NS sh -c 'mount -t tmpfs -o size=48m,mode=0755 qd_fault "$1" || { echo "disk: cannot mount a tmpfs in a private mount namespace"; echo "disk: 0 passed, 1 failed"; exit 1; }
           exec /usr/bin/python3 tests/fault/disk.py "$1"' sh "$T/mnt"
rc=$?
rm -rf "$T"
exit $rc
