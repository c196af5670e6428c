#!/usr/bin/env bash
# deps.sh GROUP... - make sure the Debian packages a target needs are installed.
#
# Groups: sim (build the core and the simulator), fuzz (libFuzzer), system (QEMU,
# Bochs, GRUB rescue ISOs), all.  Installs what is missing when run as root with
# apt-get available; otherwise prints the exact command and fails.
set -euo pipefail

declare -A PKGS=(
	[sim]="gcc make binutils python3 git clang-format"
	[fuzz]="clang-14 libclang-rt-14-dev llvm-14"
	[system]="qemu-system-x86 bochs bochsbios vgabios bochs-term grub-pc-bin grub-common xorriso mtools"
)

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(sim)
want=()
for g in "${groups[@]}"; do
	if [ "$g" = all ]; then
		want+=(${PKGS[sim]} ${PKGS[fuzz]} ${PKGS[system]})
	elif [ -n "${PKGS[$g]:-}" ]; then
		want+=(${PKGS[$g]})
	else
		echo "deps.sh: unknown group '$g' (sim, fuzz, system, all)" >&2
		exit 2
	fi
done

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
	echo "deps: install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${missing[*]}"
