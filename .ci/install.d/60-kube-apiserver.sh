#!/usr/bin/env bash
# A real etcd and kube-apiserver (v1.34.4) for the tests that talk to Kubernetes (karmor-controller,
# karmord's pod labels, the Helm chart's server-side dry run), built from the Go module proxy by
# ../shared/k8s-apiserver/build.sh into a cache directory that testutil.StartKubeAPI finds
# (override with KARMOR_KUBE_BIN_DIR). Cold ~4 min on 2 cores; skipped when both are there.
set -euo pipefail
dir=${KARMOR_KUBE_BIN_DIR:-/var/cache/karmor-kube/bin}
shared="$(cd "$(dirname "$0")/../.." && pwd)/../shared/k8s-apiserver"
if [ -x "$dir/kube-apiserver" ] && [ -x "$dir/etcd" ] && "$dir/kube-apiserver" --version 2>/dev/null | grep -q 'v1.34.4'; then
	echo "60-kube-apiserver: etcd and kube-apiserver already in $dir"
	exit 0
fi
if [ ! -x "$shared/build.sh" ]; then
	echo "60-kube-apiserver: $shared/build.sh is missing: the Kubernetes tests will fail under KARMOR_TEST_REQUIRE_ALL" >&2
	exit 0
fi
for attempt in 1 2 3; do
	"$shared/build.sh" "$dir" && break
	[ "$attempt" = 3 ] && exit 1
	echo "60-kube-apiserver: build failed (attempt $attempt of 3)" >&2
	sleep $((attempt * 5))
done
"$dir/kube-apiserver" --version
