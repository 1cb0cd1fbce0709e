# Shared by dom0-init and domu-init (busybox sh): time from /proc/uptime.
now() {
	read -r up _ </proc/uptime
	echo "$up"
}
since() { # start: seconds since start, one decimal
	awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'
}
load_xen_modules() {
	# gntalloc allows 1024 granted pages by default: one vchan with two
	# 1 MiB rings takes 514, and a conduit listener arms a second ring.
	insmod /modules/xen-gntalloc.ko limit=65536 || echo "insmod xen-gntalloc failed"
	for m in xen-evtchn xen-gntdev xen-privcmd xenfs; do
		insmod /modules/$m.ko || echo "insmod $m failed"
	done
	mkdir -p /proc/xen
	mount -t xenfs xenfs /proc/xen
}
