#!/usr/bin/env bash
# Installs what Corral needs from Debian, idempotently: packages already present are
# not reinstalled and `apt-get update` runs at most once per invocation.
#
#   scripts/setup.sh run    what building and running Corral and the README's tour need (`make up`)
#   scripts/setup.sh test   that, and what building and running the tests and benchmarks
#                           need (`make test`, `make bench`, `make lint`); the default
set -euo pipefail

RUN_PKGS=(
  runc             # the agent's container runtime
  busybox-static   # the tour's image (examples/images/busybox-image.sh) and test images
  e2fsprogs        # mkfs.ext4: volumes as loop-mounted images, so their sizes hold
  dnsutils         # dig: the tour asks the cluster DNS (and the DNS tests do)
  git              # the sync controller fetches git sources with it (GitOps)
  protobuf-compiler # building: etcd-client's build script (the server links the etcd store) needs protoc…
  libprotobuf-dev  # …and the well-known .proto files (descriptor.proto)
)

TEST_PKGS=(
  etcd-server      # the store's etcd backend is tested on it; the store benchmark's peer
  knot             # knotd, the peer the DNS benchmark compares against
  dnsperf          # the DNS benchmark's load generator
  prometheus       # promtool checks the /metrics exposition in tests
  kubectl          # the Kubernetes CLI, driven against Corral in tests
  skopeo           # pushes images to Corral's OCI distribution API in tests
  chromium         # the web interface's end-to-end tests drive real (headless) Chromium…
  chromium-driver  # …through chromedriver (W3C WebDriver)
)

# node and npm build the web interface (ui/build.rs runs npm ci and the bundler). Any
# install of them will do — Debian's, or NodeSource's nodejs, which carries its own npm
# and conflicts with Debian's — so they are installed only when npm is not found.
NODE_PKGS=()
if ! command -v npm >/dev/null 2>&1; then
  NODE_PKGS=(nodejs npm)
fi

case "${1:-test}" in
  run) PKGS=("${RUN_PKGS[@]}" "${NODE_PKGS[@]}") ;;
  test) PKGS=("${RUN_PKGS[@]}" "${NODE_PKGS[@]}" "${TEST_PKGS[@]}") ;;
  *)
    echo "usage: $0 run|test (run: what running Corral needs; test: that and what the tests need)" >&2
    exit 2
    ;;
esac

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
