#!/usr/bin/env bash
# Installs what Corral needs from Debian, idempotently: packages already present are
# not reinstalled and `apt-get update` runs at most once per invocation.
set -euo pipefail

PKGS=(
  etcd-server      # the peer the store benchmark compares against
  protobuf-compiler # etcd-client's build script needs protoc…
  libprotobuf-dev  # …and the well-known .proto files (descriptor.proto)
  runc             # the agent's container runtime
  busybox-static   # test images are built from it
  dnsutils         # dig, for DNS tests
  prometheus       # promtool checks the /metrics exposition in tests
  kubectl          # the Kubernetes CLI, driven against Corral in tests
  skopeo           # test tool: pushes and pulls images to the control plane's registry in tests
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: system packages present"
fi
