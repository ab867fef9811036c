#!/bin/sh
# Installs what the image tests (make test-e2e) need on Debian 12: podman, buildah, runc, debootstrap,
# Debian's docker-registry (the ECR stand-in), tini, catatonit (podman kube play's pause process). Needs root; does nothing for tools already there.
set -eu
need=""
for tool in podman buildah runc debootstrap docker-registry catatonit; do
  command -v "$tool" >/dev/null 2>&1 || need="$need $tool"
done
if [ -z "$need" ]; then
  echo "container tools: all present"; exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "container tools missing:$need (run this script as root, or install them: apt-get install$need)" >&2
  exit 1
fi
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  podman buildah runc debootstrap debian-archive-keyring docker-registry tini catatonit ca-certificates
