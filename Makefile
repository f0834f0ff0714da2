# orch — build, run and test. `make run` starts a server; `make test` installs what the tests need and runs them.
CARGO ?= cargo
DATA_DIR ?= /var/lib/orch
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: build release run test test-deps lint unit integration clean

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Builds and starts `orch server` with its embedded SQLite store; kubeconfig at /etc/orch/orch.yaml.
run: release
	$(SUDO) ./target/release/orch server --data-dir $(DATA_DIR)

# The tests drive the real kubectl; install it when it is missing.
test-deps:
	@command -v kubectl >/dev/null 2>&1 || { \
		echo "installing kubectl (needed by the end-to-end tests)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq kubectl; }
	@command -v kubectl >/dev/null 2>&1 || { echo "kubectl is required: apt-get install kubectl" >&2; exit 1; }

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(CARGO) test --lib --bins

integration: test-deps
	$(CARGO) test --test integration

test: test-deps lint unit integration

clean:
	$(CARGO) clean
