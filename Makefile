# orch — build, run and test. `make run` starts a server; `make test` installs what the tests need and runs them.
CARGO ?= cargo
DATA_DIR ?= /var/lib/orch
# The python `kubernetes` client for the end-to-end tests lives in its own venv.
PY_VENV ?= $(CURDIR)/target/py-venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: build release run deps test test-deps bench-deps lint unit integration bench clean

# Installs those of the Debian packages $(1) that are missing, saying why ($(2), without commas); on a
# system without dpkg it names them instead.
define install_missing
	@if ! command -v dpkg-query >/dev/null 2>&1; then \
		echo "no dpkg here: make sure these are installed ($(2)): $(1)"; \
	else \
		missing=""; \
		for pkg in $(1); do \
			dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
		done; \
		if [ -n "$$missing" ]; then \
			echo "installing$$missing ($(2))"; \
			$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
		fi; \
	fi
endef

build: deps
	$(CARGO) build

release: deps
	$(CARGO) build --release

# What building and running orch needs: libseccomp to link libcontainer's seccomp support, and the `nft`
# command, with which the agent keeps its NAT rules.
deps:
	$(call install_missing,libseccomp-dev nftables,needed to build and run orch)

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
	$(call install_missing,docker-registry umoci skopeo busybox-static apache2-utils runc conntrack iptables iproute2,needed by the image and container tests)
	@python3 -c 'import venv, ensurepip' 2>/dev/null || { \
		echo "installing python3-venv (the python client test runs in a venv)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }
	@$(PY_VENV)/bin/python -c 'import kubernetes' 2>/dev/null || { \
		echo "installing the python kubernetes client into $(PY_VENV)"; \
		python3 -m venv $(PY_VENV) && $(PY_VENV)/bin/pip install -q kubernetes; }

lint: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

unit: deps
	$(CARGO) test --lib --bins

integration: test-deps
	ORCH_TEST_PYTHON=$(PY_VENV)/bin/python $(CARGO) test --test integration

test: test-deps lint unit integration

# Speed and memory figures against their goals and same-run references (release build); the agent
# benchmark runs real containers and needs root.
# The agent benchmark runs busybox pods and measures runc beside orch's shim.
bench-deps: deps
	$(call install_missing,busybox-static runc,needed by the agent benchmark)

bench: bench-deps
	$(CARGO) bench --bench api --bench control_plane --bench agent

clean:
	$(CARGO) clean
