#!/usr/bin/env bash
# deps.sh GROUP... - make sure the Debian packages a target needs are installed.
#
# Groups: sim (build the core and the simulator), fuzz (libFuzzer), system (QEMU,
# Bochs, GRUB rescue ISOs), linux (busybox-static and cpio for the Linux guest's
# initramfs, plus Debian's cloud kernel fetched into build/linux/), browser (headless
# chromium, for the coverage page's test), all.  Installs
# what is missing when run as root with apt-get available; otherwise prints the
# exact command and fails.
set -euo pipefail

declare -A PKGS=(
	[sim]="gcc make binutils python3 git clang-format"
	[fuzz]="clang-14 libclang-rt-14-dev llvm-14"
	[system]="qemu-system-x86 bochs bochsbios vgabios bochs-term grub-pc-bin grub-common xorriso mtools"
	[linux]="busybox-static cpio gcc"
	[browser]="chromium"
)

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(sim)
want=()
kernel=0
for g in "${groups[@]}"; do
	if [ "$g" = all ]; then
		want+=(${PKGS[sim]} ${PKGS[fuzz]} ${PKGS[system]} ${PKGS[linux]} ${PKGS[browser]})
		kernel=1
	elif [ -n "${PKGS[$g]:-}" ]; then
		want+=(${PKGS[$g]})
		[ "$g" = linux ] && kernel=1
	else
		echo "deps.sh: unknown group '$g' (sim, fuzz, system, linux, browser, all)" >&2
		exit 2
	fi
done

# The Linux guest's kernel: the newest linux-image-6.1.0-*-cloud-amd64-unsigned in
# Debian's archive, downloaded as a .deb (never installed) and unpacked; only the
# bzImage is kept, as build/linux/vmlinuz, with build/linux/VERSION saying which.
# Once they exist this does nothing: delete build/linux/ to fetch again.
fetch_kernel() {
	local dir pattern pkg deb tmp
	dir="$(cd "$(dirname "$0")/.." && pwd)/build/linux"
	[ -s "$dir/vmlinuz" ] && [ -s "$dir/VERSION" ] && return 0
	pattern='^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$'
	newest() { apt-cache search --names-only "$pattern" | awk '{ print $1 }' | sort -V | tail -n 1; }
	pkg="$(newest)"
	if [ -z "$pkg" ]; then
		if [ "$(id -u)" -ne 0 ]; then
			echo "deps: no $pattern in the package lists; run: sudo apt-get update" >&2
			return 1
		fi
		apt-get update -q >/dev/null
		pkg="$(newest)"
		[ -n "$pkg" ] || { echo "deps: no package matches $pattern" >&2; return 1; }
	fi
	echo "deps: Linux guest kernel: $pkg $(apt-cache policy "$pkg" | awk '/Candidate:/ { print $2 }')"
	mkdir -p "$dir"
	tmp="$(mktemp -d "$dir/.fetch.XXXXXX")"
	# apt's sandbox user must be able to write the download directory.
	chmod 0777 "$tmp"
	if ! (cd "$tmp" && apt-get download -q "$pkg" >/dev/null); then
		rm -rf "$tmp"
		echo "deps: apt-get download $pkg failed (run: cd $dir && apt-get download $pkg)" >&2
		return 1
	fi
	deb="$(ls "$tmp"/*.deb)"
	dpkg-deb -x "$deb" "$tmp/pkg"
	cp "$tmp"/pkg/boot/vmlinuz-* "$dir/vmlinuz.tmp"
	cp "$tmp"/pkg/boot/config-* "$dir/config"
	printf '%s %s %s\n' "$(basename "$tmp"/pkg/boot/vmlinuz-* | sed 's/^vmlinuz-//')" "$pkg" \
		"$(dpkg-deb -f "$deb" Version)" >"$dir/VERSION"
	mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
	rm -rf "$tmp"
	echo "deps: build/linux/vmlinuz is $(cat "$dir/VERSION")"
}

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -ne 0 ]; then
	echo "deps: missing Debian packages: ${missing[*]}"
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
		echo "deps: install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
	echo "deps: installed ${missing[*]}"
fi
[ "$kernel" -eq 0 ] || fetch_kernel
