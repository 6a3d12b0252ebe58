#!/usr/bin/env bash
# Builds quantd's container image (docker/Dockerfile) with Debian's podman, without any
# container registry: the Dockerfile's base image (debian:12-slim) is made locally with
# debootstrap from the Debian mirror apt already uses, then imported into podman.
# Users with Docker (and a registry) run the same Dockerfile unchanged:
#   docker build -f docker/Dockerfile -t quantd .
#
#   scripts/container.sh base          make/import the base image (cached tarball)
#   scripts/container.sh build [TAG]   base + podman build (default tag localhost/quantd:dev)
#   scripts/container.sh podman ARGS   podman with this script's settings (see below)
#
# Settings that make Debian 12's podman work on these machines (as root): the runc
# runtime (crun refuses the hybrid cgroup layout), cgroupfs (systemd is not PID 1),
# nofile/nproc ulimits of at most 20000/32768 (runc refuses the host's larger ones),
# file events instead of journald, and --format docker so HEALTHCHECK is kept.
# They live in a containers.conf under the cache dir, pointed to by CONTAINERS_CONF.
# Cache (outside the git tree): QD_CONTAINER_CACHE, default /var/tmp/quantd-container.
set -eu
cd "$(dirname "$0")/.."
CACHE=${QD_CONTAINER_CACHE:-/var/tmp/quantd-container}
BASE=${QD_BASE_IMAGE:-debian:12-slim}
mkdir -p "$CACHE"

conf() {
	local c="$CACHE/containers.conf"
	cat >"$c.new" <<'EOF'
# written by scripts/container.sh
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
	mv "$c.new" "$c"
	export CONTAINERS_CONF="$c"
}

pm() { conf; podman "$@"; }

# the Debian mirror apt uses (deb822 .sources or one-line sources.list)
mirror() {
	local m
	m=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' |
		grep -v security | head -n 1 || true)
	[ -n "$m" ] || m=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		grep -v security | awk '{print $2}' | grep -i debian | head -n 1 || true)
	echo "${m:-http://deb.debian.org/debian}"
}

base() {
	conf
	if podman image exists "$BASE"; then
		return 0
	fi
	local tar="$CACHE/bookworm-minbase.tar"
	if [ ! -s "$tar" ]; then
		command -v debootstrap >/dev/null || { echo "container.sh: debootstrap missing (scripts/install-deps.sh)" >&2; exit 1; }
		local root="$CACHE/rootfs.$$"
		rm -rf "$root"
		local m; m=$(mirror)
		echo "container.sh: debootstrap --variant=minbase bookworm from $m" >&2
		debootstrap --variant=minbase bookworm "$root" "$m" >"$CACHE/debootstrap.log" 2>&1 ||
			{ tail -n 20 "$CACHE/debootstrap.log" >&2; rm -rf "$root"; exit 1; }
		# what debian:12-slim drops: apt lists, caches, docs and man pages
		rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
			"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
		# apt inside the image: the same mirror, deb822 like the official image
		rm -f "$root/etc/apt/sources.list"
		cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $m
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
		tar --numeric-owner -C "$root" -cf "$tar.new" .
		mv "$tar.new" "$tar"
		rm -rf "$root"
	fi
	podman import --change 'CMD ["bash"]' "$tar" "$BASE" >/dev/null
	echo "container.sh: imported $tar as $BASE" >&2
}

build() {
	local tag=${1:-localhost/quantd:dev}
	base
	# --pull=never: the base is local, no registry is asked; --network host for apt
	podman build --pull=never --format docker --network host -f docker/Dockerfile -t "$tag" .
}

cmd=${1:-build}
[ $# -gt 0 ] && shift
case "$cmd" in
base) base ;;
build) build "$@" ;;
podman) pm "$@" ;;
*) echo "usage: scripts/container.sh base | build [TAG] | podman ARGS..." >&2; exit 2 ;;
esac
