# rustgears — the README's two commands are `make run` and `make test`.

CARGO_TARGET_DIR ?= $(HOME)/.cache/rustgears/target
export CARGO_TARGET_DIR
# rustpython 0.6's ruff forks declare rustc 1.96/1.97; they build fine on 1.95.
CARGO_FLAGS := --ignore-rust-version
MODULE := $(CARGO_TARGET_DIR)/release/librustgears.so
PORT ?= 6379
PYTHON ?= python3

.PHONY: all deps build run test unit-test integration-test lint clean

all: build

# Debian packages the build and the tests need, installed only when missing.
deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || missing="$$missing libclang-dev"; \
	command -v cc >/dev/null || missing="$$missing gcc"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	cargo build --release $(CARGO_FLAGS)

run: build
	redis-server --port $(PORT) --loadmodule $(MODULE) --save '' --appendonly no

test: build
	$(PYTHON) -m pip install -q --disable-pip-version-check -r tests/requirements.txt
	cargo test --release --lib $(CARGO_FLAGS)
	RUSTGEARS_MODULE=$(MODULE) $(PYTHON) -m pytest tests -q

lint:
	cargo clippy --release $(CARGO_FLAGS) --all-targets

clean:
	cargo clean
