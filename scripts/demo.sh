#!/usr/bin/env bash
# The policy flow end to end, on this machine: a local OCI registry, policies pushed to it, karmord
# following the tag, real runc containers reported by karmor-hook, and the policies that apply to
# each of them as the tag moves, as a bad push is refused, as the registry goes away and as karmord
# restarts without it. `make demo` builds the programs and runs this as root.
#
# Every step prints what it runs and checks what it shows; the script exits non-zero at the first
# step that does not behave as shown. Everything lives in one temporary directory and every
# process and container it starts is stopped on exit.
#
# Environment: BIN (default: ./bin) holds karmor, karmord, karmor-hook and karmor-demo-registry;
# DEMO_POLICY_INTERVAL (default 2s) is karmord's --policy-interval.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$REPO/bin}
INTERVAL=${DEMO_POLICY_INTERVAL:-2s}
POLICIES=$REPO/demo/policies
BEGAN=$SECONDS

fail() {
	printf '\nDEMO FAILED: %s\n' "$*" >&2
	if [[ -n ${D:-} && -f $D/karmord.log ]]; then
		printf '\nkarmord log (last lines):\n' >&2
		tail -n 25 "$D/karmord.log" >&2
	fi
	exit 1
}

[[ $(id -u) == 0 ]] || fail "run as root: runc containers and their hooks need it (sudo make demo)"
command -v runc >/dev/null || fail "runc is not installed: apt-get install runc"
[[ -x /bin/busybox ]] || fail "/bin/busybox is missing: apt-get install busybox-static"
for prog in karmor karmord karmor-hook karmor-demo-registry; do
	[[ -x $BIN/$prog ]] || fail "$BIN/$prog is missing: run 'make demo', or 'make build' and go build -o $BIN/karmor-demo-registry ./demo/registry"
done

D=$(mktemp -d "${TMPDIR:-/tmp}/karmor-demo.XXXXXX")
SOCK=$D/run/karmor.sock
RUNC_ROOT=$D/runc
ID_SUFFIX=-$$ # container ids (and so cgroups) unique to this run
REGISTRY_PID= KARMORD_PID= WATCH_PID=

cleanup() {
	set +e
	for name in web1 api1; do
		runc --root "$RUNC_ROOT" delete --force "$name$ID_SUFFIX" >/dev/null 2>&1
	done
	for pid in $WATCH_PID $KARMORD_PID $REGISTRY_PID; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
say() { printf '    %s\n' "$*"; }
# cmdline prints a command as the user would type it ($DEMO is the demo's temporary directory).
cmdline() { printf '$ %s\n' "$*" | sed "s|$D|\$DEMO|g"; }
karmor() { "$BIN/karmor" "$@"; }
# k runs karmor against the demo's karmord; kshow prints the command first.
k() { karmor "$@" --socket "$SOCK"; }
kshow() {
	cmdline karmor "$@" --socket "$SOCK"
	k "$@"
}

# push DIR [FLAGS...] pushes DIR's policies to $REF and sets PUSHED to the manifest digest.
push() {
	local dir=$1 out
	shift
	cmdline karmor oci push -i "$REF" -f "$dir" --plain-http "$@"
	out=$(karmor oci push -i "$REF" -f "$dir" --plain-http "$@") || fail "karmor oci push of $dir failed"
	echo "$out"
	PUSHED=${out#*@}
}

# wait_until DESCRIPTION COMMAND...: retries COMMAND for up to 30 s (a generous deadline, the
# steps take a few seconds) and fails the demo if it never succeeds.
wait_until() {
	local what=$1 deadline=$((SECONDS + 30))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || fail "timed out waiting for $what"
		sleep 0.2
	done
}

# policies_of NAME prints the policies karmord says apply to container NAME, as a JSON array.
policies_of() {
	k containers "$1" -o json | tr -d ' \n' | grep -o '"policies":\[[^]]*\]' | sed 's/^"policies"://'
}

# expect_policies NAME JSON checks that exactly those policies apply to NAME.
expect_policies() {
	local got
	got=$(policies_of "$1") || fail "karmor containers $1 failed"
	[[ $got == "$2" ]] || fail "$1: karmord says $got apply, want $2"
	say "ok: $1 -> $got"
}

# source_json prints the first (only) policy source of karmor policy list -o json, on one line.
source_json() {
	k policy list -o json | tr -d '\n' | grep -o '"sources": *\[ *{[^]]*}' | tr -s ' '
}

in_force() { source_json | grep -q "\"digest\": \"$1\""; }
failing_with() { source_json | grep -q '"failing": true' && source_json | grep -q "$1"; }

start_karmord() {
	"$BIN/karmord" --socket "$SOCK" --spool-dir "$D/spool" --state-dir "$D/state" --runtime-root "$RUNC_ROOT" \
		--policy-ref "$REF" --policy-interval "$INTERVAL" --plain-http --verify-key "$D/release.pub" \
		--node-name karmor-demo --node-label env=demo --metrics-addr 127.0.0.1:0 >>"$D/karmord.log" 2>&1 &
	KARMORD_PID=$!
	wait_until "karmord to answer on $SOCK" k containers
}

# bundle NAME APP makes a runc bundle running `sleep 1000` in a busybox root file system, named NAME
# and labelled app=APP by annotations (outside Kubernetes karmor matches annotations as labels),
# with karmor-hook injected by `karmor hook inject`.
bundle() {
	local name=$1 app=$2 dir=$D/$1
	mkdir -p "$dir"
	(cd "$dir" && runc spec)
	sed -i -e 's/"terminal": true/"terminal": false/' \
		-e 's/^\([[:space:]]*\)"sh"$/\1"sleep", "1000"/' \
		-e "s|\"path\": \"rootfs\"|\"path\": \"$D/rootfs\"|" \
		-e "s|^\([[:space:]]*\)\"ociVersion\": \(.*\)$|&\n\1\"annotations\": {\"app\": \"$app\", \"kubearmor.io/container.name\": \"$name\"},|" \
		"$dir/config.json"
	grep -q '"terminal": false' "$dir/config.json" && grep -q '"sleep", "1000"' "$dir/config.json" &&
		grep -q "\"kubearmor.io/container.name\": \"$name\"" "$dir/config.json" ||
		fail "could not edit the config.json of 'runc spec' (runc $(runc --version | head -n1)); see $dir/config.json"
	say "annotations of $name: $(grep -o '"annotations": {[^}]*}' "$dir/config.json")"
	karmor hook inject "$dir" --hook-path "$BIN/karmor-hook" --socket "$SOCK" --spool-dir "$D/spool" --timeout 2s >/dev/null ||
		fail "karmor hook inject $dir failed"
}

step "Start a local OCI registry (distribution/v3 in memory, plain HTTP)"
"$BIN/karmor-demo-registry" --addr-file "$D/registry.addr" >"$D/registry.log" 2>&1 &
REGISTRY_PID=$!
wait_until "the registry to serve" test -s "$D/registry.addr"
REGISTRY=$(cat "$D/registry.addr")
REF=$REGISTRY/demo/policies:live
say "registry at $REGISTRY; karmord will follow $REF"

step "Make a signing key pair (any PEM key, or cosign generate-key-pair)"
openssl ecparam -genkey -name prime256v1 -noout | openssl pkcs8 -topk8 -nocrypt -out "$D/release.key" ||
	fail "openssl could not make a key"
openssl ec -in "$D/release.key" -pubout -out "$D/release.pub" 2>/dev/null || fail "openssl could not write the public key"
say "private key $D/release.key, public key $D/release.pub"

step "Push the v1 policies as an OCI artifact, signed"
push "$POLICIES/v1" --sign-key "$D/release.key"
V1=$PUSHED

step "Start karmord following $REF (poll every $INTERVAL), node karmor-demo, trusting release.pub only"
start_karmord
wait_until "v1 ($V1) in force" in_force "$V1"
kshow policy list
source_json | grep -q '"signed_by": "key release.pub' || fail "policy list does not say release.pub signed v1"

step "Start two runc containers through karmor-hook: web1 (app=web) and api1 (app=api)"
mkdir -p "$D/rootfs/bin" "$D/rootfs/proc" "$D/rootfs/dev" "$D/rootfs/sys" "$D/rootfs/tmp" "$D/rootfs/etc"
cp /bin/busybox "$D/rootfs/bin/"
for c in sh sleep; do ln -s busybox "$D/rootfs/bin/$c"; done
for name in web1 api1; do
	bundle "$name" "${name%1}"
	cmdline runc --root "$RUNC_ROOT" run -d --bundle "$D/$name" "$name$ID_SUFFIX"
	# Detached, the container inherits runc's output: a file, so that no pipe stays open.
	runc --root "$RUNC_ROOT" run -d --bundle "$D/$name" "$name$ID_SUFFIX" </dev/null >"$D/$name.out" 2>&1 ||
		fail "runc run $name: $(cat "$D/$name.out")"
done
wait_until "karmord to know web1 and api1" sh -c "'$BIN/karmor' containers web1 --socket '$SOCK' && '$BIN/karmor' containers api1 --socket '$SOCK'"
"$BIN/karmor" containers -w --socket "$SOCK" >"$D/watch.log" 2>&1 &
WATCH_PID=$!
kshow containers
expect_policies web1 '["KubeArmorPolicy/default/block-shell"]'
expect_policies api1 '["KubeArmorPolicy/default/audit-etc"]'

step "Why: karmor policy explain"
cmdline karmor policy explain web1 --socket "$SOCK"
k policy explain web1 >"$D/explain.txt" || fail "karmor policy explain web1 failed"
cat "$D/explain.txt"
grep -q 'APPLIES .*block-shell' "$D/explain.txt" || fail "explain web1 does not say block-shell applies"
grep -q 'container name "web1" is not in kubearmor.io/container.name \[api1\]' "$D/explain.txt" ||
	fail "explain web1 does not say why audit-etc does not apply"
kshow policy explain --node | tee "$D/explain-node.txt"
grep -q 'APPLIES .*host-passwd' "$D/explain-node.txt" || fail "explain --node does not say host-passwd applies"

step "Push v2: block-shell now selects app=api instead of app=web"
diff -u "$POLICIES/v1/block-shell.yaml" "$POLICIES/v2/block-shell.yaml" | sed 's/^/    /' || true
pushed=$SECONDS
push "$POLICIES/v2" --sign-key "$D/release.key"
V2=$PUSHED
wait_until "v2 ($V2) in force" in_force "$V2"
say "v2 in force $((SECONDS - pushed)) s after the push (poll interval $INTERVAL)"
kshow containers
expect_policies web1 '[]'
expect_policies api1 '["KubeArmorPolicy/default/audit-etc","KubeArmorPolicy/default/block-shell"]'

step "Push v1 again, unsigned: karmord refuses the unsigned digest, v2 stays in force"
push "$POLICIES/v1"
wait_until "karmord to refuse the unsigned push" failing_with "no trusted signature"
kshow policy list
in_force "$V2" || fail "v2 is no longer in force after the unsigned push"
expect_policies web1 '[]'

step "Push an invalid policy with --skip-validate, signed: karmord refuses it, v2 stays in force"
push "$POLICIES/invalid" --skip-validate --sign-key "$D/release.key"
wait_until "karmord to report the invalid push" failing_with actionn
kshow policy list
in_force "$V2" || fail "v2 is no longer in force after the invalid push"
expect_policies api1 '["KubeArmorPolicy/default/audit-etc","KubeArmorPolicy/default/block-shell"]'

step "Stop the registry: v2 stays in force, the error shows"
kill "$REGISTRY_PID" && wait "$REGISTRY_PID" 2>/dev/null || true
REGISTRY_PID=
wait_until "karmord to report the registry down" failing_with "connection refused"
kshow policy list
in_force "$V2" || fail "v2 is no longer in force with the registry down"
kshow containers 2>&1 | tee "$D/containers.txt"
grep -q 'Warning: policy source .* is failing' "$D/containers.txt" || fail "karmor containers does not warn of the failing source"
expect_policies web1 '[]'

step "The event stream (karmor containers -w) saw the containers and every policy change"
sed 's/^/    /' "$D/watch.log"
for want in "listed .*web1" "policy .*generation=3" "policy-error .*actionn" "policy-error .*connection refused"; do
	grep -q "$want" "$D/watch.log" || fail "the watch did not show '$want'"
done

step "Metrics"
metrics=$(grep -o 'msg="serving metrics" addr=[0-9.:]*' "$D/karmord.log" | tail -n1 | sed 's/.*addr=//') ||
	fail "karmord's log does not say where it serves metrics"
cmdline wget -q -O - "http://$metrics/metrics" "| grep '^karmord_polic'"
/bin/busybox wget -q -O - "http://$metrics/metrics" >"$D/metrics.txt" || fail "no metrics at http://$metrics/metrics"
grep -E '^karmord_polic' "$D/metrics.txt" | sed 's/^/    /'
grep -q '^karmord_policy_generation 3$' "$D/metrics.txt" || fail "the metrics do not show policy set generation 3"

step "Restart karmord with the registry still down: the cached v2 is in force at once"
kill "$WATCH_PID" 2>/dev/null && wait "$WATCH_PID" 2>/dev/null || true
WATCH_PID=
kill "$KARMORD_PID" && wait "$KARMORD_PID" || fail "karmord did not stop cleanly"
KARMORD_PID=
start_karmord
in_force "$V2" || fail "the restarted karmord does not have v2 in force from its cache"
source_json | grep -q '"from_cache": true' || fail "the restarted karmord's policies are not marked as from its cache"
kshow policy list
expect_policies web1 '[]'
expect_policies api1 '["KubeArmorPolicy/default/audit-etc","KubeArmorPolicy/default/block-shell"]'

step "Demo passed in $((SECONDS - BEGAN)) s; cleaning up"
