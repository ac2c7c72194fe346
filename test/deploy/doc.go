// Package deploy checks what deploy/ ships with the real tools that read it: the systemd units
// with systemd-analyze (verify, and the offline security exposure), the Helm chart with helm
// (lint, template for each supported profile) and every rendered object with kubectl-validate
// against the built-in schemas of the Kubernetes versions karmor supports, and the images with
// Podman. Nothing here needs a cluster or a running systemd.
package deploy
