# vslice — build, demo, test, bench, install. Run as root on Debian 12.
#
#   make demo    install what is needed, build, make the busybox image, create a limited
#                slice and open a root shell in it (a short showcase without a terminal)
#   make test    unit + integration tests against the real kernel, then a leak check
#   make bench   the figures each issue asks for, with crun/runc measured in the same run

SHELL        := /bin/bash
CARGO        ?= cargo
PROFILE      ?= release
BIN          := $(CURDIR)/target/$(PROFILE)
PREFIX       ?= /usr/local
TEST_IMAGES  ?= /tmp/vslice-test-images
DEMO_ROOT    ?= /var/lib/vslice
# Debian packages the build, tests and benchmarks need.
DEB_PACKAGES := build-essential pkg-config busybox-static iproute2 nftables iperf3 curl \
                procps util-linux psmisc python3 file kmod crun runc containerd

.PHONY: all build deps image demo test unit integration leak-check bench install clean fmt lint

all: build

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }

build:
	$(CARGO) build --workspace --release --bins

image: build
	mkdir -p $(DEMO_ROOT)/images
	@[ -x $(DEMO_ROOT)/images/busybox/rootfs/bin/busybox ] || bash images/busybox/build.sh $(DEMO_ROOT)/images/busybox/rootfs

demo: deps image
	@bash scripts/demo.sh $(BIN)

test: deps build
	@rm -rf $(TEST_IMAGES) && bash images/busybox/build.sh $(TEST_IMAGES)/busybox/rootfs >/dev/null
	VSLICE_BIN_DIR=$(BIN) VSLICE_TEST_IMAGES=$(TEST_IMAGES) $(CARGO) test --workspace --release --no-fail-fast -- --test-threads=2
	@bash scripts/leak-check.sh

leak-check:
	@bash scripts/leak-check.sh

bench: deps build
	@bash scripts/bench.sh $(BIN)

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings

install: build
	install -m 0755 $(BIN)/vslice $(BIN)/vslice-shim $(BIN)/vslice-runc $(PREFIX)/bin/
	[ ! -f $(BIN)/vsliced ] || install -m 0755 $(BIN)/vsliced $(PREFIX)/bin/
	mkdir -p /usr/share/vslice/policies/seccomp
	install -m 0644 policies/*.toml /usr/share/vslice/policies/
	install -m 0644 policies/seccomp/*.json /usr/share/vslice/policies/seccomp/
	getent group vslice-admin >/dev/null || groupadd --system vslice-admin
	[ ! -f dist/vsliced.service ] || install -m 0644 dist/vsliced.service /etc/systemd/system/

clean:
	$(CARGO) clean
