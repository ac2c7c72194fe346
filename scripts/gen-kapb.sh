#!/usr/bin/env bash
# Regenerates internal/kubearmor/kapb (karmor's own copy of the few KubeArmor gRPC messages
# karmord uses) from internal/kubearmor/kapb/policy.proto. The generated code is committed; run
# this only after changing the .proto. Needs protoc (Debian: protobuf-compiler); the Go plugins
# are installed at pinned versions into GOBIN (default: GOPATH/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
PROTOC_GEN_GO_VERSION=v1.36.12     # google.golang.org/protobuf, as in go.mod
PROTOC_GEN_GO_GRPC_VERSION=v1.6.0 # google.golang.org/grpc/cmd/protoc-gen-go-grpc
command -v protoc >/dev/null || { echo "gen-kapb: protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
gobin=$(go env GOBIN)
gobin=${gobin:-$(go env GOPATH)/bin}
go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"
PATH="$gobin:$PATH" protoc -I internal/kubearmor/kapb \
	--go_out=internal/kubearmor/kapb --go_opt=paths=source_relative \
	--go-grpc_out=internal/kubearmor/kapb --go-grpc_opt=paths=source_relative \
	internal/kubearmor/kapb/policy.proto
echo "gen-kapb: regenerated internal/kubearmor/kapb with protoc $(protoc --version | cut -d' ' -f2)"
