GO       ?= go
BIN      ?= bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/karmor/karmor/internal/version.Version=$(VERSION)
PROGRAMS := karmor karmor-hook karmord karmor-nri karmor-runc karmor-controller
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(shell $(GO) env GOPATH)/bin/staticcheck)

.PHONY: build test lint fuzz clean manifests image

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(PROGRAMS))

# The one command that runs every test (as root, the runtime tests run too; see README).
test: build
	$(GO) test -count=1 -timeout 20m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Every fuzz target for FUZZTIME each (CI runs it briefly after the tests).
fuzz:
	FUZZTIME=$(or $(FUZZTIME),4s) ./scripts/fuzz.sh

clean:
	rm -rf $(BIN)

# The images (internal/imagebuild): static binaries for linux/amd64 and linux/arm64, no shell,
# written to the OCI layout bin/images, or pushed with IMAGE_PUSH=registry/prefix. No container
# engine involved.
IMAGE_PLATFORMS ?= amd64 arm64
image:
	for arch in $(IMAGE_PLATFORMS); do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/linux-$$arch/ $(addprefix ./cmd/,$(PROGRAMS)) || exit 1; \
	done
	$(GO) run ./scripts/mkimage -bin $(BIN) -layout $(BIN)/images -version $(VERSION) \
	  -platforms $(shell echo $(IMAGE_PLATFORMS) | tr ' ' ,) $(if $(IMAGE_PUSH),-push $(IMAGE_PUSH))

# deploy/manifests: the Helm chart rendered for containerd and CRI-O nodes, and karmor-controller
# alone with its CRD (karmor-controller.yaml), namespace included (test/deploy checks they match
# the chart).
manifests:
	for r in containerd crio controller; do \
	  helm template karmor deploy/helm/karmor --namespace karmor -f deploy/helm/karmor/ci/$$r-values.yaml \
	    --set createNamespace=true $$( [ $$r = controller ] && echo --include-crds ) \
	    > deploy/manifests/karmor-$$r.yaml || exit 1; \
	done

# The policy flow end to end on this machine (as root, with runc and busybox-static installed): a
# local registry, karmord following a tag, runc containers and the policies that apply to them as
# the tag moves; see scripts/demo.sh.
.PHONY: demo
demo: build
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/karmor-demo-registry ./demo/registry
	BIN=$(abspath $(BIN)) ./scripts/demo.sh

# The same flow with real enforcement: the real KubeArmor in a QEMU guest (stock Debian 12 kernel,
# BPF-LSM) denies a read in a runc container by a policy from the registry; see
# scripts/demo-kubearmor.sh. As root; scripts/kubearmor-vm/prepare.sh builds KubeArmor once.
.PHONY: demo-kubearmor
demo-kubearmor: build
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/karmor-demo-registry ./demo/registry
	BIN=$(abspath $(BIN)) ./scripts/demo-kubearmor.sh
