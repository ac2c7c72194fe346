#!/usr/bin/env bash
# Docker for test/e2e/docker: Debian's docker.io (dockerd 20.10, its containerd and the CLI at
# /usr/bin/docker). The test starts its own dockerd on private paths; nothing here starts one.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "20-docker: not root, skipping (the Docker test skips loudly too)"
  exit 0
fi
if [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ]; then
  echo "20-docker: docker.io already installed"
  exit 0
fi
for n in 1 2 3; do
  if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null; then
    exit 0
  fi
  echo "20-docker: apt-get install docker.io failed (attempt $n of 3)" >&2
  sleep $((n * 5))
done
exit 1
