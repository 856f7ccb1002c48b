# The two commands of the README: `make up` runs Corral, `make test` runs every test.
# Both install what they need first (scripts/setup.sh is idempotent): `make up` only
# what running needs (runc, busybox-static, e2fsprogs, dig), `make test` the test tools
# as well (etcd, protobuf, knot, dnsperf, promtool, kubectl, skopeo).

CARGO ?= cargo
DATA_DIR ?= corral-data
LISTEN ?= 127.0.0.1:7070

.PHONY: up test setup setup-run setup-test build bench soak lint ha-up ha-down

setup: setup-test

setup-run:
	bash scripts/setup.sh run

setup-test:
	bash scripts/setup.sh test

# The web interface is part of this build: ui/build.rs type-checks and bundles ui/web
# (npm ci the first time, which needs node and npm: setup-run installs them if missing).
build: setup-run
	$(CARGO) build --release

up: build
	./target/release/corral up --data-dir $(DATA_DIR) --listen $(LISTEN)

# A test run builds once: incremental state would only add ~0.5 GB to the disk it needs.
test: setup-test
	CARGO_INCREMENTAL=0 $(CARGO) test --workspace

# The benchmarks are a binary of their own (corral-bench), so `make up` never builds them.
bench: build setup-test
	$(CARGO) build --release -p corral-bench
	./target/release/corral-bench store
	./target/release/corral-bench controller
	./target/release/corral-bench agent

# 30 minutes of mixed writes, 2,000 watches (1,000 never reading) and periodic lists:
# server memory, data directory and /healthz latency over time.
soak: build setup-test
	$(CARGO) build --release -p corral-bench
	./target/release/corral-bench soak

lint: setup-test
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# A highly available control plane on this machine: 3 etcd members, 2 API servers
# (scripts/ha-cluster.sh; HA_DIR holds their data and logs).
HA_DIR ?= $(HOME)/.corral/ha
ha-up: build setup-test
	bash scripts/ha-cluster.sh start $(HA_DIR)

ha-down:
	bash scripts/ha-cluster.sh stop $(HA_DIR)
