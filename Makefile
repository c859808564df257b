# vslice — build, demo, test, bench, install. Run as root on Debian 12.
#
#   make demo    install what is needed, build, make the busybox image, create a limited
#                slice and open a root shell in it (a short showcase without a terminal)
#   make test    the program-list check, unit + integration tests against the real kernel,
#                a leak check, then the cgroup v2 tests in a VM (make test-v2)
#   make deps    install the Debian packages of deps/packages.txt (all targets above run it)
#   make images  the busybox and Debian images in the cache $(IMAGE_CACHE) (the Debian one is
#                rebuilt only when images/debian/build.sh changed)
#   make bench   the figures each issue asks for, with crun/runc measured in the same run
#   make test-v2 only the cgroup v2 tests (scripts/v2vm/tests.txt) in a pure-v2 VM (the last step of make test)

SHELL        := /bin/bash
CARGO        ?= cargo
PROFILE      ?= release
BIN          := $(CURDIR)/target/$(PROFILE)
# make test's own build: the `ci` profile of Cargo.toml (release without cross-crate LTO).
TEST_PROFILE ?= ci
TEST_BIN     := $(CURDIR)/target/$(TEST_PROFILE)
PREFIX       ?= /usr/local
TEST_IMAGES  ?= /tmp/vslice-test-images
IMAGE_CACHE  ?= /var/cache/vslice/images
DEMO_ROOT    ?= /var/lib/vslice
# THE list of Debian packages (and the programs run from each): deps/packages.txt. `make deps`
# installs from it and nothing else; scripts/check-programs.sh checks it against the sources.
DEPS_LIST    := deps/packages.txt

.PHONY: all build build-test deps check-programs image images demo test unit integration leak-check bench install uninstall clean fmt lint test-v2

all: build

# Installs the packages of $(DEPS_LIST) that are not installed yet, in one apt-get call (which
# waits up to 10 min for another apt run, e.g. a parallel job, to release the dpkg lock).
deps:
	@pkgs=$$(sed -e 's/#.*//' -e '/^unpacked[[:space:]]/d' -e 's/:.*//' $(DEPS_LIST)); \
	[ -n "$$(echo $$pkgs)" ] || { echo "$(DEPS_LIST) names no package" >&2; exit 1; }; \
	installed=$$(dpkg-query -W -f='$${db:Status-Abbrev} $${Package}\n' $$pkgs 2>/dev/null | awk '$$1 == "ii" {print $$2}'); \
	missing=""; for p in $$pkgs; do \
	  case " "$$(echo $$installed)" " in *" $$p "*) ;; *) missing="$$missing $$p" ;; esac; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get -o DPkg::Lock::Timeout=600 update -q && apt-get -o DPkg::Lock::Timeout=600 install -y -q $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install the Rust toolchain (rustup) first, see README.md" >&2; exit 1; }

# Every program the sources run is in $(DEPS_LIST), and every program listed there is on PATH;
# the self-test proves the check fails where it must.
check-programs: deps
	@out=$$(bash scripts/check-programs.sh --self-test 2>&1) || { echo "$$out" >&2; exit 1; }; echo "$$out" | tail -n 1
	@bash scripts/check-programs.sh

build:
	$(CARGO) build --workspace --profile $(PROFILE) --bins

image: build
	mkdir -p $(DEMO_ROOT)/images
	@[ -x $(DEMO_ROOT)/images/busybox/rootfs/bin/busybox ] || bash images/busybox/build.sh $(DEMO_ROOT)/images/busybox/rootfs

# The image cache: each tree is renamed into place when complete, so an existing path is a
# complete image; build.sh --if-stale takes $(IMAGE_CACHE)/.debian.lock and rebuilds only when
# the recipe (script, suite, mirror) changed.
images: deps
	@[ -x $(IMAGE_CACHE)/busybox/rootfs/bin/busybox ] || bash images/busybox/build.sh $(IMAGE_CACHE)/busybox/rootfs
	sh images/debian/build.sh --if-stale $(IMAGE_CACHE)/debian/rootfs

demo: deps image
	@bash scripts/demo.sh $(BIN)

build-test:
	$(CARGO) build --workspace --profile $(TEST_PROFILE) --bins

test: deps check-programs build-test images
	@rm -rf $(TEST_IMAGES) && bash images/busybox/build.sh $(TEST_IMAGES)/busybox/rootfs >/dev/null
	@mkdir -p $(TEST_IMAGES)/debian && cp -a --reflink=auto $(IMAGE_CACHE)/debian/rootfs $(TEST_IMAGES)/debian/rootfs
	VSLICE_BIN_DIR=$(TEST_BIN) VSLICE_TEST_IMAGES=$(TEST_IMAGES) $(CARGO) test --workspace --profile $(TEST_PROFILE) --no-fail-fast -- --test-threads=2
	@bash scripts/leak-check.sh
	@CARGO_TEST_PROFILE=$(TEST_PROFILE) bash scripts/v2vm/run-tests.sh $(TEST_BIN)

# The tests of scripts/v2vm/tests.txt (cgroup unit tests, lifecycle, isolation, oci_runc, ...)
# in a pure cgroup v2 VM: Debian 12's kernel (6.1) in QEMU (KVM if usable, else TCG), the host's
# root shared read-only, so the release test binaries built here run inside.
test-v2: deps build-test
	@CARGO_TEST_PROFILE=$(TEST_PROFILE) bash scripts/v2vm/run-tests.sh $(TEST_BIN)

leak-check:
	@bash scripts/leak-check.sh

bench: deps build
	@CARGO_PROFILE=$(PROFILE) bash scripts/bench.sh $(BIN)

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
	# SSH access (README "SSH access"): vsh, the slice accounts' group, the keys user, the
	# sshd drop-in (values as in the daemon's defaults), then a config check and reload.
	install -m 0755 $(BIN)/vsh $(PREFIX)/bin/vsh
	getent group vslice-ssh >/dev/null || groupadd --system vslice-ssh
	getent passwd vslice-sshkeys >/dev/null || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vslice-sshkeys
	mkdir -p /etc/ssh/sshd_config.d
	sed -e 's|@GROUP@|vslice-ssh|g' -e 's|@VSH@|$(PREFIX)/bin/vsh|g' -e 's|@SOCKET@|/run/vslice/ssh/vsh.sock|g' \
	  -e 's|@KEYS_USER@|vslice-sshkeys|g' dist/sshd_config.d/vslice.conf > /etc/ssh/sshd_config.d/vslice.conf
	chmod 0644 /etc/ssh/sshd_config.d/vslice.conf
	! command -v sshd >/dev/null || sshd -t
	@echo "sshd drop-in installed: reload sshd to apply it"

# Removes what `install` put in place (state under /var/lib/vslice is kept). Slice accounts
# go with their slices (vslice rm); the group stays while any is left.
uninstall:
	rm -f /etc/ssh/sshd_config.d/vslice.conf
	@echo "sshd drop-in removed: reload sshd to apply it"
	rm -f $(PREFIX)/bin/vsh $(PREFIX)/bin/vslice $(PREFIX)/bin/vsliced $(PREFIX)/bin/vslice-shim $(PREFIX)/bin/vslice-runc
	rm -f /etc/systemd/system/vsliced.service
	! getent passwd vslice-sshkeys >/dev/null || userdel vslice-sshkeys
	! getent group vslice-ssh >/dev/null || groupdel vslice-ssh 2>/dev/null || echo "group vslice-ssh kept: slice accounts still use it"

clean:
	$(CARGO) clean
