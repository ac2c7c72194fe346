#!/usr/bin/env bash
# karmor with real enforcement: the real KubeArmor, in a QEMU guest running the stock Debian 12
# kernel (whose BPF-LSM it enforces with), learns runc containers from karmord through karmor-hook
# and policies from a registry through karmord; `cat /etc/shadow` in a container is denied, and
# KubeArmor's alert names the policy. `make demo-kubearmor` builds the programs and runs this as
# root; scripts/kubearmor-vm/prepare.sh (run here when needed) builds KubeArmor and fetches the
# kernel once.
#
# The guest runs scripts/kubearmor-vm/scenario/scenario.sh (the same scenario test/e2e/kubearmor
# asserts on); this script prints what it recorded. It takes a few minutes: KubeArmor alone takes a
# minute or more to start under QEMU's emulation, and the scenario restarts it once.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$REPO/bin}
ENV_FILE=/var/cache/karmor-kubearmor/env

fail() {
	printf '\nDEMO FAILED: %s\n' "$*" >&2
	exit 1
}
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
indent() { sed 's/^/    /'; }

[[ $(id -u) == 0 ]] || fail "run as root (sudo make demo-kubearmor)"
for prog in karmor karmord karmor-hook karmor-demo-registry; do
	[[ -x $BIN/$prog ]] || fail "$BIN/$prog is missing: run 'make demo-kubearmor'"
done
if [[ ! -r $ENV_FILE ]]; then
	step "Build KubeArmor and fetch the guest kernel (once; cached)"
	"$REPO/scripts/kubearmor-vm/prepare.sh" | indent
fi

D=$(mktemp -d "${TMPDIR:-/tmp}/karmor-demo-kubearmor.XXXXXX")
trap 'rm -rf "$D"' EXIT
O=$D/out

step "Boot Debian 12's kernel under QEMU with KubeArmor, karmord, karmor-hook, runc and a registry"
cat <<'EOF' | indent
In the guest (scripts/kubearmor-vm/scenario/scenario.sh):
  karmor oci push -i 127.0.0.1:5000/karmor/policies:live -f policies/v1 --plain-http
  kubearmor -k8s=false -useOCIHooks=true -lsm=bpf ...        (no runtime socket)
  karmord --policy-ref 127.0.0.1:5000/karmor/policies:live --kubearmor-socket /var/run/kubearmor/ka.sock \
          --kubearmor-policy-addr 127.0.0.1:32767 ...
  runc run -d --no-pivot --bundle /bundles/web-1 web-1        (karmor-hook injected, named web-1)
EOF
BIN=$BIN "$REPO/scripts/kubearmor-vm/run.sh" "$D" "$REPO/scripts/kubearmor-vm/scenario" | indent ||
	{ tail -n 40 "$D/console.log" 2>/dev/null | indent; fail "the guest's scenario failed"; }

step "The policy (v1), as pushed to the registry and followed by karmord"
indent <"$REPO/scripts/kubearmor-vm/scenario/policies/v1/web-guard.yaml"

step "KubeArmor enforces with BPF-LSM"
grep -h 'Initialized BPF-LSM Enforcer' "$O/kubearmor.log" | head -n 1 | indent ||
	fail "KubeArmor did not initialise its BPF-LSM enforcer"

show() { # STEP TITLE: the command's output and exit status as the guest saw them
	printf '    $ %s\n' "$2"
	indent <"$O/$1.out" | indent
	printf '      (exit status %s)\n' "$(awk -v s="$1" '$1 == s { sub("rc=", "", $2); print $2 }' "$O/results.txt")"
}
step "In container web-1: the read of /etc/shadow is denied, other files read fine"
show a-shadow-denied "runc exec web-1 /bin/cat /etc/shadow"
show a-hello-read "runc exec web-1 /bin/cat /etc/hello"
show a-tool-denied "runc exec web-1 /usr/local/bin/cat /etc/hello"
grep -q 'Permission denied' "$O/a-shadow-denied.out" || fail "the read of /etc/shadow was not denied"

step "KubeArmor's alert for the denied read names the policy"
grep '"/etc/shadow"\|/etc/shadow' "$O/alerts.jsonl" | grep -m 1 'web-guard' | tr ',' '\n' |
	grep -iE '"(Timestamp|UpdatedTime|ContainerName|PolicyName|Severity|Message|Source|Operation|Resource|Action|Enforcer|Result)"' | indent ||
	fail "no alert of web-guard for /etc/shadow"

step "v2 drops the file rule: after the push, /etc/shadow reads again"
show b-shadow-read "runc exec web-1 /bin/cat /etc/shadow"

step "KubeArmor killed, web-2 started meanwhile, KubeArmor restarted: both enforced again"
show c-run-web-2-while-down "runc run -d --no-pivot --bundle /bundles/web-2 web-2"
show c-web-1-tool-denied "runc exec web-1 /usr/local/bin/cat /etc/hello"
show c-web-2-tool-denied "runc exec web-2 /usr/local/bin/cat /etc/hello"

step "Timings in the guest (seconds)"
indent <"$O/results.txt"
step "Demo done"
