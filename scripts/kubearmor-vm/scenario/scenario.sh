#!/bin/sh
# The scenario the QEMU guest runs (see ../run.sh): karmor drives the real KubeArmor, which
# enforces with BPF-LSM. It records what happened, and does not judge it: test/e2e/kubearmor
# asserts on the records, scripts/demo-kubearmor.sh prints them.
#
#   d. KubeArmor (-useOCIHooks, no runtime socket) starts with no containers; karmord then feeds it.
#   a. web-1 starts through karmor-hook; policy v1 (pushed with `karmor oci push`,
#      followed by karmord) blocks reading /etc/shadow and running /usr/local/bin/cat in it.
#   b. v2 drops the file rule: /etc/shadow reads again.
#   c. KubeArmor is killed; web-2 starts while it is down; KubeArmor restarts and both are
#      enforced again, with nothing done to them.
#   e. KubeArmor's alerts (alerts.jsonl) name the policy.
#
# Records in /out: results.txt ("NAME rc=N [seconds=S]" per step: a step that waits for a change
# tries until it sees it or its deadline passes, and records its last try), NAME.out (the step's
# output), kubearmor.log, alerts.jsonl, karmord.log, and karmor's views (containers-*.json,
# policy-list-*.txt).
set -u
O=/out
REF=127.0.0.1:5000/karmor/policies:live
SOCK=/run/karmor/karmor.sock
KA_SOCK=/var/run/kubearmor/ka.sock
export PATH=/karmor/bin:$PATH

now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "scenario: [$(now)] $*"; }
record() {
	echo "$*" >>"$O/results.txt"
	log "$*"
}

# step NAME COMMAND...: run COMMAND once; record its exit status, time and output.
step() {
	name=$1
	shift
	t0=$(now)
	"$@" </dev/null >"$O/$name.out" 2>&1
	rc=$?
	record "$name rc=$rc seconds=$(since "$t0")"
	return "$rc"
}

# await NAME ok|fail DEADLINE COMMAND...: run COMMAND until it succeeds (ok) or fails (fail), for
# at most DEADLINE seconds; record the last try's exit status and output, and the time it took.
await() {
	name=$1 want=$2 deadline=$3
	shift 3
	t0=$(now)
	while :; do
		"$@" </dev/null >"$O/$name.out" 2>&1
		rc=$?
		if { [ "$want" = ok ] && [ "$rc" = 0 ]; } || { [ "$want" = fail ] && [ "$rc" != 0 ]; }; then
			break
		fi
		if awk -v s="$(since "$t0")" -v d="$deadline" 'BEGIN { exit !(s > d) }'; then
			break
		fi
		sleep 0.5
	done
	record "$name rc=$rc seconds=$(since "$t0")"
}

KA_PID=
# start_kubearmor N: start KubeArmor (-useOCIHooks, non-Kubernetes) and wait until it has
# initialised (its gRPC service is served from then on).
start_kubearmor() {
	t0=$(now)
	echo "==== KubeArmor start $1" >>"$O/kubearmor.log"
	/kubearmor/kubearmor -k8s=false -useOCIHooks=true -enableKubeArmorPolicy=true \
		-enableKubeArmorHostPolicy=false -lsm=bpf -defaultFilePosture=audit -defaultNetworkPosture=audit \
		-defaultCapabilitiesPosture=audit -logPath="$O/alerts.jsonl" >>"$O/kubearmor.log" 2>&1 &
	KA_PID=$!
	until [ "$(grep -c 'Initialized KubeArmor$' "$O/kubearmor.log")" -ge "$1" ]; do
		if ! kill -0 "$KA_PID" 2>/dev/null; then
			record "kubearmor-start-$1 rc=1 seconds=$(since "$t0")"
			return 1
		fi
		sleep 1
	done
	record "kubearmor-start-$1 rc=0 seconds=$(since "$t0")"
}

# bundle NAME: a runc bundle running sleep in a busybox root file system, with karmor-hook
# injected, named NAME by the kubearmor.io/container.name annotation. A plain runc container has no
# labels that anything vouches for (docs/identity.md: karmor.io/pod-labels counts only when
# karmor-nri wrote it for that container), so the policies select these containers by name, as
# KubeArmor's non-Kubernetes mode does.
rootfs() {
	mkdir -p /rootfs/bin /rootfs/etc /rootfs/proc /rootfs/dev /rootfs/sys /rootfs/tmp /rootfs/usr/local/bin
	cp /bin/busybox /rootfs/bin/busybox
	for applet in sh cat sleep head; do ln -s busybox "/rootfs/bin/$applet"; done
	# A binary of its own for the process rule (every applet is /bin/busybox). It is first in the
	# container's PATH, so the file steps run /bin/cat by its path.
	cp /bin/busybox /rootfs/usr/local/bin/cat
	echo 'root:$6$not-a-real-hash:19000:0:99999:7:::' >/rootfs/etc/shadow
	echo 'hello from the container' >/rootfs/etc/hello
	echo 'root:x:0:0:root:/root:/bin/sh' >/rootfs/etc/passwd
}
bundle() {
	mkdir -p "/bundles/$1"
	(cd "/bundles/$1" && runc spec)
	annotations='"annotations": {"kubearmor.io/container.name": "'"$1"'"},'
	sed -i -e 's/"terminal": true/"terminal": false/' \
		-e 's/^\([[:space:]]*\)"sh"$/\1"sleep", "100000"/' \
		-e 's|"path": "rootfs"|"path": "/rootfs"|' \
		-e "s|^\([[:space:]]*\)\"ociVersion\": \(.*\)$|&\n\1$annotations|" \
		"/bundles/$1/config.json"
	karmor hook inject "/bundles/$1" --hook-path /karmor/bin/karmor-hook --socket "$SOCK" \
		--spool-dir /var/lib/karmor/spool --timeout 2s
}
snapshot() {
	karmor containers --socket "$SOCK" -o json >"$O/containers-$1.json" 2>&1
	karmor policy list --socket "$SOCK" >"$O/policy-list-$1.txt" 2>&1
}
kubearmor_says() { # NAME STATE: karmord says KubeArmor's state for container NAME is STATE
	karmor containers "$1" --socket "$SOCK" -o json | tr -d ' \n' | grep -q "\"kubearmor\":\"$2\""
}

record "guest kernel=$(uname -r) lsm=$(cat /sys/kernel/security/lsm)"
mkdir -p /var/lib/karmor /run/karmor
rootfs

karmor-demo-registry --addr 127.0.0.1:5000 --addr-file /tmp/registry.addr >"$O/registry.log" 2>&1 &
until [ -s /tmp/registry.addr ]; do sleep 0.2; done
step push-v1 karmor oci push -i "$REF" -f /scenario/policies/v1 --plain-http

# d. KubeArmor with no containers; karmord then opens its ready gate with an empty resync.
start_kubearmor 1 || exit 1
karmord --socket "$SOCK" --spool-dir /var/lib/karmor/spool --state-dir /var/lib/karmor/state \
	--runtime-root /run/runc --policy-ref "$REF" --policy-interval 2s --plain-http --node-name karmor-vm \
	--kubearmor-socket "$KA_SOCK" --kubearmor-policy-addr 127.0.0.1:32767 >"$O/karmord.log" 2>&1 &
KARMORD_PID=$!
await karmord-up ok 60 karmor containers --socket "$SOCK"

# a. web-1 through karmor-hook; v1 blocks the read of /etc/shadow and /usr/local/bin/cat.
bundle web-1 >"$O/bundle-web-1.out" 2>&1
# --no-pivot: the guest's root is the initramfs, which pivot_root cannot leave.
step run-web-1 runc run -d --no-pivot --bundle /bundles/web-1 web-1
await web-1-acknowledged ok 120 kubearmor_says web-1 yes
await a-shadow-denied fail 180 runc exec web-1 /bin/cat /etc/shadow
step a-hello-read runc exec web-1 /bin/cat /etc/hello
await a-tool-denied fail 60 runc exec web-1 /usr/local/bin/cat /etc/hello
step a-bin-cat-runs runc exec web-1 /bin/cat /etc/hello
snapshot a

# b. v2 drops the file rule: the read works again within the poll interval (2 s) and the time
#    KubeArmor takes to apply it; the process rule stays.
step push-v2 karmor oci push -i "$REF" -f /scenario/policies/v2 --plain-http
await b-shadow-read ok 120 runc exec web-1 /bin/cat /etc/shadow
step b-tool-denied runc exec web-1 /usr/local/bin/cat /etc/hello
snapshot b

# c. KubeArmor crashes; web-2 starts meanwhile (its start does not wait for KubeArmor); KubeArmor
#    comes back and is given both containers again.
kill -KILL "$KA_PID"
wait "$KA_PID" 2>/dev/null
bundle web-2 >"$O/bundle-web-2.out" 2>&1
step c-run-web-2-while-down runc run -d --no-pivot --bundle /bundles/web-2 web-2
await c-web-2-away ok 60 kubearmor_says web-2 away
snapshot c-down
start_kubearmor 2 || exit 1
await c-web-1-acknowledged ok 120 kubearmor_says web-1 yes
await c-web-2-acknowledged ok 120 kubearmor_says web-2 yes
await c-web-1-tool-denied fail 180 runc exec web-1 /usr/local/bin/cat /etc/hello
await c-web-2-tool-denied fail 180 runc exec web-2 /usr/local/bin/cat /etc/hello
step c-web-2-hello-read runc exec web-2 /bin/cat /etc/hello
snapshot c-up

# Done: stop everything so that the logs are complete.
for c in web-1 web-2; do runc delete --force "$c" >/dev/null 2>&1; done
kill "$KARMORD_PID" 2>/dev/null
wait "$KARMORD_PID" 2>/dev/null
kill "$KA_PID" 2>/dev/null
wait "$KA_PID" 2>/dev/null
cp /tmp/*.log "$O/" 2>/dev/null
exit 0
