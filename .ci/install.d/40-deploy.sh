#!/usr/bin/env bash
# Tools for test/deploy: helm (lint, template) and kubectl-validate (offline schemas of
# Kubernetes 1.27-1.30), from the Go module proxy into $(go env GOPATH)/bin; systemd-analyze
# (Debian's systemd, for the unit checks). Idempotent: present tools are kept.
set -euo pipefail
bin="$(go env GOPATH)/bin"
[ -x "$bin/helm" ] || go install helm.sh/helm/v3/cmd/helm@v3.22.0
[ -x "$bin/kubectl-validate" ] || go install sigs.k8s.io/kubectl-validate@v0.0.4
if ! command -v systemd-analyze >/dev/null && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
