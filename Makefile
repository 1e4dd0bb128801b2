# Two commands matter: `make demo` (the local demo) and `make test` (everything CI checks).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: test demo lint fmt-check clippy unit crds crd-drift e2e env-up env-down

## make test: fmt check, clippy -D warnings, unit tests, CRD drift check, the e2e suite.
test: fmt-check clippy unit crd-drift e2e

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --exclude cvs-e2e --locked

## make crds: regenerate crds/ from the Rust types.
crds:
	$(CARGO) run -q -p operator --locked -- crd > crds/cvs.dev.yaml

## Fails when crds/ differs from what the Rust types generate.
crd-drift:
	@tmp=$$(mktemp); trap 'rm -f $$tmp' EXIT; \
	$(CARGO) run -q -p operator --locked -- crd > $$tmp; \
	if ! diff -u crds/cvs.dev.yaml $$tmp; then \
	  echo "crds/cvs.dev.yaml is out of date: run 'make crds' and commit it" >&2; exit 1; \
	fi

## The e2e suite against the real local environment, which it starts and always stops.
e2e:
	$(CARGO) build -p operator --locked
	trap 'tests/env/down.sh' EXIT; \
	env_lines=$$(tests/env/up.sh); eval "$$env_lines"; \
	$(CARGO) test -p cvs-e2e --locked -- --test-threads=4

env-up:
	@tests/env/up.sh

env-down:
	@tests/env/down.sh

## make demo: start the environment, install the CRDs and the example, run the operator.
demo:
	tests/demo.sh
