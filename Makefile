# orch — build, run and test. `make run` starts a server; `make test` installs what the tests need and runs them.
CARGO ?= cargo
DATA_DIR ?= /var/lib/orch
# The python `kubernetes` client for the end-to-end tests lives in its own venv.
PY_VENV ?= $(CURDIR)/target/py-venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: build release run deps test test-deps lint unit integration bench clean

build: deps
	$(CARGO) build

release: deps
	$(CARGO) build --release

# What building and running orch needs: libseccomp to link libcontainer's seccomp support, and the `nft`
# command, with which the agent keeps its NAT rules.
deps:
	@missing=""; \
	for pkg in libseccomp-dev nftables; do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (needed to build and run orch)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi

# Builds and starts `orch server` with its embedded SQLite store; kubeconfig at /etc/orch/orch.yaml.
run: release
	$(SUDO) ./target/release/orch server --data-dir $(DATA_DIR)

# The tests drive the real kubectl; install it when it is missing.
test-deps: deps
	@command -v kubectl >/dev/null 2>&1 || { \
		echo "installing kubectl (needed by the end-to-end tests)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq kubectl; }
	@command -v kubectl >/dev/null 2>&1 || { echo "kubectl is required: apt-get install kubectl" >&2; exit 1; }
	@# The image and container tests: a local registry, image building and pushing, busybox as the image,
	@# htpasswd for registry auth, runc as the runtime reference, conntrack for the agent's UDP flow moves,
	@# iptables for its host-firewall opening, iproute2 for the network namespaces the tests make.
	@missing=""; \
	for pkg in docker-registry umoci skopeo busybox-static apache2-utils runc conntrack iptables iproute2; do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (needed by the image and container tests)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@python3 -c 'import venv, ensurepip' 2>/dev/null || { \
		echo "installing python3-venv (the python client test runs in a venv)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }
	@$(PY_VENV)/bin/python -c 'import kubernetes' 2>/dev/null || { \
		echo "installing the python kubernetes client into $(PY_VENV)"; \
		python3 -m venv $(PY_VENV) && $(PY_VENV)/bin/pip install -q kubernetes; }

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(CARGO) test --lib --bins

integration: test-deps
	ORCH_TEST_PYTHON=$(PY_VENV)/bin/python $(CARGO) test --test integration

test: test-deps lint unit integration

# Speed and memory figures against their goals and same-run references (release build); the agent
# benchmark runs real containers and needs root.
bench: test-deps
	$(CARGO) bench --bench api --bench control_plane --bench agent

clean:
	$(CARGO) clean
