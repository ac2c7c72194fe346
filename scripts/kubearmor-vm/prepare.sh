#!/usr/bin/env bash
# Build the real KubeArmor daemon for karmor's tests, with its system monitor BPF object for this
# host's kernel and for the stock Debian 12 kernel the QEMU guest boots (test/e2e/kubearmor), and
# record where everything is in $CACHE/env (read by internal/testutil and the scripts).
#
#   sudo scripts/kubearmor-vm/prepare.sh
#
# Source: ../shared/kubearmor beside the repository (KARMOR_KUBEARMOR_SRC overrides); it is test
# material, copied to a temporary build directory, and nothing of it enters the repository.
# Idempotent and cached: each product lives in a directory named after the hash of everything it
# is built from (source, the shell function that builds it, Go, clang, kernel), so a warm run only
# hashes and checks, and editing one recipe rebuilds only its product.
# Needs root (apt, /var/cache), Debian's apt mirror and the Go module proxy.
set -euo pipefail
export PATH="/usr/local/go/bin:$PATH"

here=$(cd "$(dirname "$0")" && pwd)
src=${KARMOR_KUBEARMOR_SRC:-$(cd "$here/../../.." && pwd)/shared/kubearmor}
cache=${KARMOR_KUBEARMOR_CACHE:-/var/cache/karmor-kubearmor}
started=$(date +%s)
say() { echo "prepare: [+$(($(date +%s) - started))s] $*"; }

if [ "$(id -u)" != 0 ]; then
	echo "prepare: run as root (apt installs, $cache)" >&2
	exit 1
fi
if [ ! -f "$src/KubeArmor/main.go" ] || [ ! -f "$src/KubeArmor/BPF/system_monitor.c" ]; then
	echo "prepare: no KubeArmor source at $src (set KARMOR_KUBEARMOR_SRC)" >&2
	exit 1
fi

# Debian packages: the BPF toolchain, and QEMU with cpio for the guest. dpkg-query first, so that a
# warm machine neither takes apt's lock nor needs the mirror.
packages=(clang llvm bpftool libbpf-dev qemu-system-x86 cpio busybox-static runc python3)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	say "apt-get install ${missing[*]}"
	for attempt in 1 2 3 4 5 6; do
		# Another apt may hold the lock (or a mirror hiccup): wait and try again.
		if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
			break
		fi
		[ "$attempt" = 6 ] && exit 1
		sleep $((attempt * 5))
		[ "$attempt" = 2 ] && apt-get update -qq || true
	done
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one prepare at a time: they share the cache

hash_tree() { # dir: the hash of its files' names and contents
	(cd "$1" && find . -type f ! -path './.git/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16
}
hash_text() { sha256sum | cut -c1-16; }

src_hash=$(hash_tree "$src")
go_version=$(go env GOVERSION)
clang_version=$(clang --version | head -1)

# build_into DIR COMMAND...: run COMMAND with $out set to a fresh temporary directory beside DIR,
# and rename it to DIR when the command succeeds, so a cached directory is always complete. (Not
# "if ! COMMAND": bash would ignore set -e inside it. A failure exits; the trap cleans up.)
out=
build_into() {
	local dir=$1
	shift
	[ -d "$dir" ] && return 0
	out=$(mktemp -d "$dir.tmp.XXXXXX")
	"$@"
	mv -T "$out" "$dir"
	out=
}

# A writable copy of the source (its BPF Makefile and go build write beside the sources).
work=$(mktemp -d "$cache/work.XXXXXX")
chmod 0755 "$work" # apt-get download runs as _apt and must reach it
trap 'rm -rf "$work" ${out:+"$out"}' EXIT
source_copy() {
	if [ ! -d "$work/src" ]; then
		cp -a "$src" "$work/src"
	fi
}

# 1. The daemon: a static Go binary, the same for host and guest (its BPF-LSM enforcer objects are
#    generated Go files of the source; only the system monitor is built per kernel).
build_daemon() {
	say "go build KubeArmor ($src)"
	source_copy
	(cd "$work/src/KubeArmor" && CGO_ENABLED=0 go build -trimpath -o "$out/kubearmor" .)
}
daemon_dir=$cache/daemon-$( (
	echo "$src_hash $go_version"
	declare -f source_copy build_daemon
) | hash_text)
build_into "$daemon_dir" build_daemon

# system_monitor.bpf.o for one kernel, from its BTF (no CO-RE in KubeArmor's build: an object
# works only on the kernel whose BTF it was compiled against).
build_monitor() { # btf-file kernel-version(x.y.z)
	local btf=$1 version=$2 b
	source_copy
	b=$work/bpf-$(basename "$out")
	cp -a "$work/src/KubeArmor/BPF" "$b"
	rm -f "$b"/*.o "$b"/vmlinux.h
	bpftool btf dump file "$btf" format c >"$b/vmlinux.h"
	# The Makefile wants libbpf's sources as a git submodule, which the snapshot lacks: its headers
	# from libbpf-dev are all the object needs.
	mkdir -p "$b/libbpf"
	ln -sfn /usr/include/bpf "$b/libbpf/src"
	# pipefail: the recipe pipes clang into opt and llc, and a failed clang must not leave an empty
	# object behind.
	make -s -C "$b" system_monitor.bpf.o LIBBPF="$b/libbpf" SHELL=/bin/bash .SHELLFLAGS='-o pipefail -ec' \
		KRNV_X="$(cut -d. -f1 <<<"$version")" KRNV_Y="$(cut -d. -f2 <<<"$version")" KRNV_Z="$(cut -d. -f3 <<<"$version")" >/dev/null
	if ! llvm-objdump -h "$b/system_monitor.bpf.o" | grep -q kprobe; then
		echo "prepare: $b/system_monitor.bpf.o has no kprobe programs" >&2
		exit 1
	fi
	cp "$b/system_monitor.bpf.o" "$out/"
}

# 2. The host's object (KubeArmor runs here for its protocols; this kernel cannot enforce).
host_release=$(uname -r)
host_version=$(sed -nE 's/^([0-9]+\.[0-9]+\.[0-9]+).*/\1/p' <<<"$host_release")
build_host_bpf() {
	say "system_monitor.bpf.o for this host ($host_release)"
	build_monitor /sys/kernel/btf/vmlinux "$host_version"
}
host_bpf_dir=$cache/bpf-host-$( (
	hash_tree "$src/KubeArmor/BPF"
	echo "$clang_version $host_release"
	sha256sum </sys/kernel/btf/vmlinux
	declare -f source_copy build_monitor build_host_bpf
) | hash_text)
build_into "$host_bpf_dir" build_host_bpf

# 3. The guest kernel: Debian 12's stock kernel package, downloaded (never installed), its vmlinuz
#    and the uncompressed vmlinux's BTF for the guest's object.
kernel_pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$kernel_pkg" ]; then
	echo "prepare: apt knows no linux-image-amd64 dependency (apt-get update?)" >&2
	exit 1
fi
guest_release=${kernel_pkg#linux-image-}
kernel_version=$(apt-cache show --no-all-versions "$kernel_pkg" | awk '/^Version:/{print $2; exit}')
fetch_kernel() {
	say "guest kernel $kernel_pkg $kernel_version (apt-get download)"
	(cd "$work" && apt-get download -qq "$kernel_pkg=$kernel_version")
	dpkg-deb -x "$work/${kernel_pkg}_"*.deb "$work/kernel"
	cp "$work/kernel/boot/vmlinuz-$guest_release" "$out/vmlinuz"
	# Debian's bzImage carries the kernel xz-compressed after its setup code.
	python3 - "$out/vmlinuz" "$out/vmlinux" <<'EOF'
import lzma, sys
image = open(sys.argv[1], 'rb').read()
start = image.find(b'\xfd7zXZ\x00')
if start < 0:
    sys.exit('no xz payload in ' + sys.argv[1])
open(sys.argv[2], 'wb').write(lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(image[start:]))
EOF
	echo "$kernel_version" >"$out/version"
}
kernel_dir=$cache/kernel-$guest_release-$kernel_version-$(declare -f fetch_kernel | hash_text)
build_into "$kernel_dir" fetch_kernel
# The upstream version (6.1.x) from the package version (6.1.x-y).
guest_version=${kernel_version%%-*}
build_guest_bpf() {
	say "system_monitor.bpf.o for the guest ($guest_release, $guest_version)"
	build_monitor "$kernel_dir/vmlinux" "$guest_version"
}
guest_bpf_dir=$cache/bpf-guest-$( (
	hash_tree "$src/KubeArmor/BPF"
	echo "$clang_version $kernel_dir"
	declare -f source_copy build_monitor build_guest_bpf
) | hash_text)
build_into "$guest_bpf_dir" build_guest_bpf

# 4. The env file, replaced atomically; then anything no longer named in it goes.
cat >"$cache/env.tmp" <<EOF
KARMOR_KUBEARMOR_BIN=$daemon_dir/kubearmor
KARMOR_KUBEARMOR_BPF_DIR=$host_bpf_dir
KARMOR_KUBEARMOR_GUEST_BIN=$daemon_dir/kubearmor
KARMOR_KUBEARMOR_GUEST_BPF_DIR=$guest_bpf_dir
KARMOR_KUBEARMOR_VMLINUZ=$kernel_dir/vmlinuz
KARMOR_KUBEARMOR_GUEST_RELEASE=$guest_release
EOF
mv "$cache/env.tmp" "$cache/env"
# (We hold the lock: any other work directory is a killed run's.)
for d in "$cache"/daemon-* "$cache"/bpf-host-* "$cache"/bpf-guest-* "$cache"/kernel-* "$cache"/work.*; do
	[ -e "$d" ] || continue
	case "$d" in
	"$daemon_dir" | "$host_bpf_dir" | "$guest_bpf_dir" | "$kernel_dir" | "$work") ;;
	*) rm -rf "$d" ;;
	esac
done
say "ready: $cache/env"
cat "$cache/env"
