#!/bin/sh
# mkinitrd.sh [OUT] - the Linux guest's initramfs (default build/linux/initrd.gz):
# busybox-static with a link per applet, /init (tests/linux/init.sh), hvcmd and the
# ioport tool (built here from tests/linux/ioport.c), packed with
# `cpio -o -H newc | gzip`.  Needs busybox-static, cpio and gcc (scripts/deps.sh linux).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/build/linux/initrd.gz}
busybox=${BUSYBOX:-/bin/busybox}

[ -x "$busybox" ] || { echo "mkinitrd: no $busybox: install busybox-static (scripts/deps.sh linux)" >&2; exit 1; }
if readelf -l "$busybox" | grep -q 'Requesting program interpreter'; then
	echo "mkinitrd: $busybox is dynamically linked: install busybox-static" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
img=$tmp/root
mkdir -p "$img/bin" "$img/sbin" "$img/usr/bin" "$img/usr/sbin" "$img/proc" "$img/sys" \
	"$img/dev" "$img/tmp" "$img/root" "$img/etc"
cp "$busybox" "$img/bin/busybox"
for applet in $("$busybox" --list-full); do
	[ -e "$img/$applet" ] || ln -s /bin/busybox "$img/$applet"
done
install -m 0755 "$here/init.sh" "$img/init"
install -m 0755 "$here/hvcmd" "$img/bin/hvcmd"
install -m 0755 "$here/fakehv" "$img/bin/fakehv"
gcc -std=c11 -Os -static -nostdlib -ffreestanding -fno-pie -no-pie -fno-stack-protector \
	-fno-asynchronous-unwind-tables -fcf-protection=none -Wall -Wextra -Werror \
	-Wl,--build-id=none -s -o "$img/bin/ioport" "$here/ioport.c"
echo "root:x:0:0:root:/root:/bin/sh" >"$img/etc/passwd"

# Same inputs, same bytes: fixed times and owners, sorted names, no gzip timestamp.
find "$img" -exec touch -h -d @0 {} +
mkdir -p "$(dirname "$out")"
(cd "$img" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
	gzip -9n >"$out.tmp"
mv "$out.tmp" "$out"
echo "mkinitrd: $out ($(wc -c <"$out") bytes)"
