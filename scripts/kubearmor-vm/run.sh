#!/usr/bin/env bash
# Boot the stock Debian 12 kernel under QEMU (TCG) with an initramfs holding the real KubeArmor
# (and its BPF object for that kernel), runc, busybox, karmor's programs and a registry, run a
# scenario in it and bring its results back. This host's kernel cannot load BPF-LSM programs
# (../shared/docs/kubearmor.md); the guest's can, so KubeArmor really enforces there.
#
#   scripts/kubearmor-vm/run.sh OUT_DIR SCENARIO_DIR
#
# SCENARIO_DIR holds scenario.sh (run by the guest's init as /scenario/scenario.sh) and whatever it
# needs (policies...); it writes its results under /out in the guest. Afterwards OUT_DIR has
# console.log (the guest's console) and out/ (the guest's /out); the exit status is the
# scenario's. BIN (default ./bin) must hold karmor, karmord, karmor-hook and karmor-demo-registry
# built with CGO_ENABLED=0; the KubeArmor side comes from prepare.sh's env file. Run as root (QEMU
# itself does not need it, but cpio must keep the files' owners). KARMOR_VM_TIMEOUT (seconds,
# default 900) bounds the guest; KARMOR_VM_CPUS (default 2) and KARMOR_VM_MEMORY (MiB, default
# 4096) size it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
BIN=${BIN:-$repo/bin}
env_file=${KARMOR_KUBEARMOR_ENV:-/var/cache/karmor-kubearmor/env}
timeout_s=${KARMOR_VM_TIMEOUT:-900}

if [ $# -ne 2 ]; then
	echo "usage: $0 OUT_DIR SCENARIO_DIR" >&2
	exit 2
fi
out=$1
scenario=$(cd "$2" && pwd)
[ -f "$scenario/scenario.sh" ] || { echo "run.sh: $scenario has no scenario.sh" >&2; exit 2; }
[ -r "$env_file" ] || { echo "run.sh: no $env_file: run scripts/kubearmor-vm/prepare.sh as root" >&2; exit 1; }
# shellcheck disable=SC1090
. "$env_file"
for prog in karmor karmord karmor-hook karmor-demo-registry; do
	[ -x "$BIN/$prog" ] || { echo "run.sh: $BIN/$prog is missing" >&2; exit 1; }
done
for tool in qemu-system-x86_64 cpio runc; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing: run scripts/kubearmor-vm/prepare.sh" >&2; exit 1; }
done

mkdir -p "$out"
root=$(mktemp -d "$out/initramfs.XXXXXX")
trap 'rm -rf "$root" "$out/initrd.cpio"' EXIT

# The guest's file system. /var/run is /run, as KubeArmor's ka.sock path expects.
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib/x86_64-linux-gnu,lib64,proc,sys,dev,tmp,run,etc,root,opt,var}
mkdir -p "$root"/karmor/bin "$root"/kubearmor/BPF "$root"/kubearmor/run
ln -s ../run "$root/var/run"
cp /bin/busybox "$root/bin/busybox"
# runc with the shared libraries it links (libseccomp, libc).
runc_bin=$(command -v runc)
cp "$runc_bin" "$root/usr/sbin/runc"
ldd "$runc_bin" | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | while read -r lib; do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
cp "$KARMOR_KUBEARMOR_GUEST_BIN" "$root/kubearmor/kubearmor"
cp "$KARMOR_KUBEARMOR_GUEST_BPF_DIR/system_monitor.bpf.o" "$root/kubearmor/BPF/"
for prog in karmor karmord karmor-hook karmor-demo-registry; do
	cp "$BIN/$prog" "$root/karmor/bin/"
done
cp -r "$scenario" "$root/scenario"
cp "$here/guest-init.sh" "$root/init"
chmod 0755 "$root/init"
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
# KubeArmor reads the machine id for its node id.
echo 0123456789abcdef0123456789abcdef >"$root/etc/machine-id"

# Uncompressed: the kernel unpacks it at once, where decompressing under TCG costs seconds.
(cd "$root" && find . | cpio -o -H newc --quiet) >"$out/initrd.cpio"

# The second serial port carries the results (guest-init.sh); the first is the console.
# boot runs the guest once, for at most $1 seconds; under TCG a boot can hang before the kernel prints anything (seen
# once in CI-like runs on a loaded host: an empty console for the whole timeout), so a guest whose
# init has said nothing after boot_wait seconds is stopped and booted again, once, loudly.
boot_wait=${KARMOR_VM_BOOT_WAIT:-240}
boot() {
	rm -f "$out/console.log" "$out/results.serial"
	timeout "$1" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp "${KARMOR_VM_CPUS:-2}" \
		-m "${KARMOR_VM_MEMORY:-4096}" -kernel "$KARMOR_KUBEARMOR_VMLINUZ" -initrd "$out/initrd.cpio" \
		-append "console=ttyS0 rdinit=/init panic=-1 no_timer_check loglevel=4 lsm=landlock,lockdown,yama,integrity,apparmor,bpf" \
		-display none -monitor none -no-reboot -nic none \
		-serial "file:$out/console.log" -serial "file:$out/results.serial" &
	local pid=$! waited=0
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$waited" -ge "$boot_wait" ] && ! grep -q '^guest: ' "$out/console.log" 2>/dev/null; then
			echo "run.sh: the guest's init said nothing within ${boot_wait}s: stopping it" >&2
			kill "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null
			return 125
		fi
		sleep 1
		waited=$((waited + 1))
	done
	wait "$pid"
}
began=$(date +%s)
echo "run.sh: booting $KARMOR_KUBEARMOR_GUEST_RELEASE under QEMU TCG (timeout ${timeout_s}s), console in $out/console.log"
status=0
boot "$timeout_s" || status=$?
if [ "$status" = 125 ]; then
	# The retry gets what is left of the timeout: callers bound the whole run by it.
	echo "run.sh: booting the guest again (once)" >&2
	status=0
	boot "$((timeout_s - ($(date +%s) - began)))" || status=$?
fi
echo "run.sh: guest ran $(($(date +%s) - began)) s"
if [ "$status" = 124 ]; then
	echo "run.sh: the guest did not finish within ${timeout_s}s" >&2
fi

rm -rf "$out/out"
mkdir -p "$out/out"
if ! sed -n '/^KARMOR-OUT-BEGIN/,/^KARMOR-OUT-END/{/^KARMOR-OUT-/d;p}' "$out/results.serial" | tr -d '\r' |
	base64 -d | tar -C "$out/out" -xzf -; then
	echo "run.sh: no results from the guest; its console's last lines:" >&2
	tail -n 30 "$out/console.log" >&2
	exit 1
fi
rc=$(cat "$out/out/scenario.rc" 2>/dev/null || echo 1)
echo "run.sh: scenario exited $rc; results in $out/out"
exit "$rc"
