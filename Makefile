# rustgears — the README's two commands are `make run` and `make test`.

CARGO_TARGET_DIR ?= $(HOME)/.cache/rustgears/target
export CARGO_TARGET_DIR
# rustpython 0.6's ruff forks declare rustc 1.96/1.97; they build fine on 1.95.
CARGO_FLAGS := --ignore-rust-version
MODULE := $(CARGO_TARGET_DIR)/release/librustgears.so
PORT ?= 6379
# `make cluster`: the first node's port (the nodes use CLUSTER_PORT .. CLUSTER_PORT + 5).
CLUSTER_PORT ?= 30001
PYTHON ?= python3

FUZZ_TARGET_DIR ?= $(HOME)/.cache/rustgears/fuzz-target
FUZZ_TARGETS := commands peers records scripts
# `make fuzz`: how long each target runs; `make test` runs each for FUZZ_SMOKE_SECONDS.
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 10
# The cargo wrapper in fuzz/bin adds --ignore-rust-version, which cargo-fuzz cannot pass.
FUZZ_CARGO := cd fuzz && PATH=$(CURDIR)/fuzz/bin:$$PATH cargo fuzz
FUZZ_FLAGS := -O --sanitizer none --target-dir $(FUZZ_TARGET_DIR)

.PHONY: all deps has-libclang build run cluster test lint clean fuzz fuzz-build fuzz-smoke bench soak

all: build

# Debian packages the build and the tests need, installed only when missing. APT_GET overrides the
# installer (tests/test_make_deps.py records what would be installed instead).
APT_GET ?= apt-get
deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	( $(FIND_LIBCLANG) ) >/dev/null || missing="$$missing libclang-dev"; \
	command -v cc >/dev/null || missing="$$missing gcc"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq $$missing; \
	fi

# bindgen (redis-module's build script) loads libclang.so or libclang-N.so.M, from LIBCLANG_PATH
# if set. Other libclang* files (libclang-cpp, pulled in by unrelated packages) do not count.
# LIBCLANG_SEARCH overrides where to look (tests/test_make_deps.py simulates a machine without it).
LIBCLANG_SEARCH ?= $(LIBCLANG_PATH) /usr/lib/llvm-*/lib /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib /usr/local/lib
# Prints the first libclang found and succeeds, or fails silently.
FIND_LIBCLANG = for d in $(LIBCLANG_SEARCH); do \
		for f in $$d/libclang.so $$d/libclang.so.* $$d/libclang-[0-9]*.so $$d/libclang-[0-9]*.so.*; do \
			[ -e "$$f" ] && echo "$$f" && exit 0; \
		done; \
	done; exit 1

has-libclang:
	@( $(FIND_LIBCLANG) ) || { echo "no libclang in: $(LIBCLANG_SEARCH) (make deps installs libclang-dev)"; exit 1; }

build: deps
	cargo build --release $(CARGO_FLAGS)

run: build
	redis-server --port $(PORT) --loadmodule $(MODULE) --save '' --appendonly no

test: build lint fuzz-smoke
	$(PYTHON) -m pip install -q --disable-pip-version-check -r tests/requirements.txt
	cargo test --release --lib $(CARGO_FLAGS)
	RUSTGEARS_MODULE=$(MODULE) $(PYTHON) -m pytest tests -q -p no:cacheprovider

fuzz-build: deps
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	$(FUZZ_CARGO) build $(FUZZ_FLAGS)

# Each target briefly, from its committed seed corpus, so CI keeps them building and green.
fuzz-smoke: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		scratch=$$(mktemp -d); \
		( $(FUZZ_CARGO) run $(FUZZ_FLAGS) $$t $$scratch corpus/$$t -- -max_total_time=$(FUZZ_SMOKE_SECONDS) -timeout=30 ) || exit 1; \
		rm -rf $$scratch; \
	done

# Long runs; new inputs are added to the committed corpora.
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		$(FUZZ_CARGO) run $(FUZZ_FLAGS) $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -timeout=30 || exit 1; \
	done

bench: build
	$(PYTHON) -m pip install -q --disable-pip-version-check -r tests/requirements.txt
	RUSTGEARS_MODULE=$(MODULE) $(PYTHON) bench/run.py

soak: build
	$(PYTHON) -m pip install -q --disable-pip-version-check -r tests/requirements.txt
	RUSTGEARS_MODULE=$(MODULE) $(PYTHON) bench/soak.py

# Formatting (rustfmt.toml) and clippy, warnings as errors: part of `make test`.
lint: deps
	@cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1 || rustup component add rustfmt clippy
	cargo fmt --check
	cargo clippy --release $(CARGO_FLAGS) --all-targets -- -D warnings

clean:
	cargo clean

# 3 masters + 3 replicas with the module, in the foreground until Ctrl-C (scripts/cluster.py).
cluster: build
	$(PYTHON) scripts/cluster.py --port $(CLUSTER_PORT) --module $(MODULE)
