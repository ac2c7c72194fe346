#!/usr/bin/env bash
# The real KubeArmor (and the Debian 12 guest kernel, QEMU, the BPF toolchain) for
# internal/testutil.StartKubeArmor, test/e2e/runtime and test/e2e/kubearmor: built from
# ../shared/kubearmor and cached in /var/cache/karmor-kubearmor by scripts/kubearmor-vm/prepare.sh.
# It needs root; without root the tests that need KubeArmor report it unavailable.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
	echo "50-kubearmor: not root, KubeArmor not built" >&2
	exit 0
fi
scripts/kubearmor-vm/prepare.sh
