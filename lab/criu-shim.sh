#!/bin/sh
# `criu` as seen by the lab's LXD and Incus daemons (first on their PATH, never /usr/sbin/criu).
#
# liblxc 5.0.2 and CRIU 4.1.1 need four adjustments to work together on this kernel; each one
# below was needed and is applied in this order (LAB.md section 3). The per-host mode file
# /var/lib/lxd/lab-criu-mode is per host for free, since every host has its own tree mounted at
# /var/lib/lxd in its own mount namespace: "fixed" (default) runs the private CRIU 4.1.1,
# "stock" runs Debian 12's /usr/sbin/criu 3.17.1, which fails for real at dump on this kernel.
# Incus 6.0.4 uses the same liblxc 5.0.2 and needs the same adjustments; an Incus host has its
# tree at /var/lib/incus instead, where lab.py writes the mode file before the daemon starts
# (an LXD host's /var/lib/incus is the machine's own, where the lab writes nothing).
set -u

lab_dir=$(cd -- "$(dirname -- "$0")/.." && pwd)
prefix="$lab_dir/criu-prefix"
libdir="$prefix/usr/lib/x86_64-linux-gnu"

host_lib=/var/lib/lxd
host_log=/var/log/lxd
if [ -e /var/lib/incus/lab-criu-mode ]; then
	host_lib=/var/lib/incus
	host_log=/var/log/incus
fi
mode=fixed
if [ -r "$host_lib/lab-criu-mode" ]; then
	read -r mode <"$host_lib/lab-criu-mode" || true
fi

# liblxc passes the action first: criu dump|restore|check ... ; "criu --version" has none.
case "${1-}" in
-* | "") action="" ;;
*) action=$1 ;;
esac
images_dir=""
prev=""
for arg in "$@"; do
	case "$prev" in
	-D | --images-dir) images_dir=$arg ;;
	esac
	case "$arg" in
	--images-dir=*) images_dir=${arg#--images-dir=} ;;
	esac
	prev=$arg
done

printf '%s mode=%s action=%s args=%s\n' "$(date '+%F %T')" "$mode" "$action" "$*" \
	>>"$host_log/criu-shim.log" 2>/dev/null || true

if [ "$action" = dump ] && [ -n "$images_dir" ]; then
	# 1. liblxc writes tty.info before calling CRIU, and the restore side then refuses with
	#    "lxc.console.path configured on source host but not target". Delete it now, before
	#    CRIU runs: in a live migration LXD copies this directory to the target while CRIU
	#    still waits in its action script, so deleting it afterwards is too late.
	rm -f -- "$images_dir/tty.info"
fi

if [ "$action" = restore ]; then
	apparmor=N
	if [ -r /sys/module/apparmor/parameters/enabled ]; then
		read -r apparmor </sys/module/apparmor/parameters/enabled || true
	fi
	count=$#
	drop_next=0
	while [ "$count" -gt 0 ]; do
		arg=$1
		shift
		count=$((count - 1))
		if [ "$drop_next" = 1 ]; then
			drop_next=0
			continue
		fi
		# 2. Without AppArmor in the kernel CRIU refuses "apparmor LSM specified but apparmor
		#    not supported by kernel": drop the --lsm-profile pair liblxc always passes.
		if [ "$apparmor" != Y ]; then
			case "$arg" in
			--lsm-profile)
				drop_next=1
				continue
				;;
			--lsm-profile=*) continue ;;
			esac
		fi
		set -- "$@" "$arg"
	done
	# 3. The new mount engine fails here ("mnt-v2: Failed to open_tree"), and the container's
	#    /dev/console is an external bind mount CRIU cannot re-create by itself
	#    ("Can't bind-mount ... dev/console").
	set -- "$@" --mntns-compat-mode --ext-mount-map console:/dev/null
	# 5. The images directory is root's 0700, but CRIU 4.1.1 sometimes opens timens-N.img
	#    from the restored init after it took the container's mapped uid (a race: seen under
	#    load, about 1 restore in 11 with three restores at once) and then fails with
	#    "Unable to open timens-N.img: Permission denied". The image files are already 0644;
	#    let the mapped root search the directory too. LXD 5.0.2 restores snapshots, saved
	#    state and migrations from /var/lib/lxd/containers/<name>/state, whose parent is
	#    d--x------ and owned by the mapped root, so no other host user gains access; where
	#    the parent lets others in (another LXD's layout), leave the directory alone.
	if [ -n "$images_dir" ] && [ -d "$images_dir" ]; then
		parent_mode=$(stat -L -c %a -- "$(dirname -- "$images_dir")" 2>/dev/null || echo 7)
		case "$parent_mode" in
		*0) chmod o+x -- "$images_dir" 2>/dev/null || true ;;
		esac
	fi
fi

# 4. Always exec, never run CRIU as our child: liblxc passes --restore-sibling and reads the
#    restored init from the children of its own child ("reading restore pid failed" otherwise).
if [ "$mode" = stock ]; then
	exec /usr/sbin/criu "$@"
fi
exec "$libdir/ld-linux-x86-64.so.2" --library-path "$libdir" "$prefix/usr/sbin/criu" "$@"
