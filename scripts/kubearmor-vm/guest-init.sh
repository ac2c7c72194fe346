#!/bin/busybox sh
# PID 1 of the QEMU guest that run.sh boots: mount what KubeArmor and runc need, run the scenario
# (/scenario/scenario.sh) with its output on the console, then send /out (the scenario's results
# and logs) to the host over the second serial port as a base64 tar, and power off.
/bin/busybox --install -s /bin
export PATH=/karmor/bin:/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /dev/pts /dev/shm /run/kubearmor /out
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
ip link set lo up
hostname karmor-vm

echo "guest: kernel $(uname -r), LSMs $(cat /sys/kernel/security/lsm), $(nproc) CPUs"
# The guest's clock starts at the host's time (QEMU's RTC): elapsed times in results are sound.
began=$(date +%s)
sh /scenario/scenario.sh
echo "$?" >/out/scenario.rc
echo "guest: scenario exited $(cat /out/scenario.rc) after $(($(date +%s) - began)) s"

# One line of markers around the archive, so the host can find it whatever else the port carries.
{
	echo "KARMOR-OUT-BEGIN"
	tar -C /out -czf - . | base64
	echo "KARMOR-OUT-END"
} >/dev/ttyS1
sync
poweroff -f
