# Two commands matter: `make demo` (the local demo) and `make test` (everything CI checks).
# `make bench` runs the stale-playlist detector's benchmarks, `make bench-patch` the patch-to-table
# delay (neither is part of `make test`).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: test demo demo-check lint merge-check fmt-check clippy unit crds crd-drift chart-lint e2e env-up env-down bench bench-build bench-parse bench-patch soak
.PHONY: edge-bundle edge-drift edge-test bench-edge player-test dashboard-test player-bench player-chain-bench deny deny-advisories fuzz
.PHONY: argocd-health image image-test

## make test: fmt check, clippy -D warnings, the dependency policy (cargo-deny), unit and property
## tests, CRD drift check, the chart checks, the Argo CD health checks, the image packing check,
## the e2e suite, the copilot bundle drift check and its Node tests, the player tests, the
## dashboard's browser tests.
test: fmt-check clippy deny unit crd-drift chart-lint argocd-health image-test e2e edge-drift edge-test player-test dashboard-test

## The player tests: hls.js in Debian's headless Chromium watches the simulated three-region event
## (real H.264/AAC, MPEG-TS and fMP4) through local Lambda@Edge edges while a region is killed,
## closed (404), loses its origin (502) or freezes then closes; then through the whole operator
## chain (tests/demo.sh in .cvs-env-player: the master the operator publishes to moto's S3, edges
## running the copilot zip it deployed to moto's Lambda) while a region is closed by kubectl patch,
## frozen or refuses connections, with content steering on and off. Installs chromium, ffmpeg and
## the pinned npm packages when missing. About 6 minutes; artefacts in target/player/<stamp>/.
player-test:
	tests/player/run.sh

## The dashboard's browser tests: the page (operator/src/dashboard/assets/) in Debian's headless
## Chromium (playwright-core), against a fixture server of its HTTP contract (what it shows, in-place
## updates, the minOpen confirmation, keyboard only, refusals, reconnection, no CSP violation) and
## against the real operator, kube-apiserver, DynamoDB Local and the HLS origin simulator in
## .cvs-env-dashboard (a frozen rendition shown stale, a close through the dialog reaching the
## StreamInstance and the state table, a ServiceAccount without RBAC refused, no token refused).
## Screenshots in target/dashboard-artifacts/. Installs chromium and the pinned npm packages when
## missing.
dashboard-test:
	tests/dashboard/run.sh

## make player-bench: the same failovers PLAYER_RUNS times each (default 10), printing p50/p90/max
## of the time from the fault to the last request to the failed region and to the first segment
## from another one. Not part of `make test`.
PLAYER_RUNS ?= 10
player-bench:
	PLAYER_RUNS=$(PLAYER_RUNS) tests/player/run.sh test/failover.test.mjs

## make player-chain-bench: the audience-side failover through the operator chain, PLAYER_RUNS
## times (default 10) each of patch/freeze/refuse with steering on and off: p50/p90/max from the
## fault to each stage (detection, table write, steering manifest, copilot 404) and to the
## player's last request to the region and first segment from another. About 35 minutes here.
player-chain-bench:
	PLAYER_RUNS=$(PLAYER_RUNS) tests/player/run.sh test/chain.test.mjs

## Licences, bans and sources of every Rust dependency against deny.toml (cargo-deny is built
## from crates.io once and cached). The advisory database is fetched from GitHub, so it has its
## own target for machines that reach it.
deny:
	deny=$$(tests/env/build-cargo-deny.sh); $$deny --locked check licenses bans sources

deny-advisories:
	deny=$$(tests/env/build-cargo-deny.sh); $$deny --locked check advisories

## make fuzz: every cargo fuzz target for FUZZ_SECONDS (default 600) each, on nightly; prints
## executions and coverage per target. Not part of `make test` (the property tests are).
FUZZ_SECONDS ?= 600
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh

## The chart without a cluster: helm lint --strict, values refused by values.schema.json, what the
## defaults render, and helm template | kubeconform -strict (Kubernetes' schemas, our CRDs',
## minimal ServiceMonitor/PrometheusRule ones) for the defaults and tests/chart/values-all.yaml.
## helm and kubeconform are built from their Go modules and cached. See tests/chart/check.sh.
chart-lint:
	tests/chart/check.sh

## The Argo CD health checks (manifests/argocd/health/*.lua) on sample objects of every state,
## under Debian's lua5.1 (gopher-lua's dialect) and lua5.4, installed when missing.
argocd-health:
	tests/argocd/run.sh

## make image: the operator as a static musl binary in an OCI image from scratch, built without a
## container engine (crane, from its Go module, cached), written as an OCI archive to IMAGE_OUT,
## then read back and checked (tests/image/inspect.py). Installs the musl target (rustup) and
## Debian's musl-tools when missing. A release build for another target: minutes on 2 cores and a
## target/x86_64-unknown-linux-musl of its own. Load it with
## `skopeo copy oci-archive:target/image/cvs-operator.oci.tar docker://REGISTRY/cvs-operator:TAG`
## or `podman load -i`. See image/pack.sh; Containerfile does the same with an engine.
IMAGE_OUT ?= $(or $(CARGO_TARGET_DIR),target)/image/cvs-operator.oci.tar
image:
	image/setup.sh --c
	$(CARGO) build --release --locked --target x86_64-unknown-linux-musl -p operator --bin cvs-operator
	bin="$${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/cvs-operator"; \
	version=$$(sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -1); \
	image/pack.sh --binary "$$bin" --out '$(IMAGE_OUT)' --version "$$version" >/dev/null; \
	python3 tests/image/inspect.py '$(IMAGE_OUT)' --version "$$version" --run-output "cvs-operator $$version"; \
	echo "$(IMAGE_OUT)"

## The image packing of `make image` on a tiny static stand-in binary, read back and checked
## (seconds; the operator's own musl release build is left to `make image`).
image-test:
	tests/image/check.sh

## The merge over every master playlist fixture, each output parsed by m3u8-rs and by hls.js's own
## parser in Node (tests/js, hls.js pinned; `npm ci` runs when node_modules is missing). Part of
## `unit`; this target runs it alone.
merge-check:
	$(CARGO) test -p operator --locked --test merge_fixtures

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --exclude cvs-e2e --locked

## make crds: regenerate crds/ (and the chart's copy) from the Rust types.
crds:
	$(CARGO) run -q -p operator --locked -- crd > crds/cvs.dev.yaml
	cp crds/cvs.dev.yaml charts/cvs-operator/crds/cvs.dev.yaml

## Fails when crds/ differs from what the Rust types generate.
crd-drift:
	@tmp=$$(mktemp); trap 'rm -f $$tmp' EXIT; \
	$(CARGO) run -q -p operator --locked -- crd > $$tmp; \
	for f in crds/cvs.dev.yaml charts/cvs-operator/crds/cvs.dev.yaml; do \
	  if ! diff -u $$f $$tmp; then \
	    echo "$$f is out of date: run 'make crds' and commit it" >&2; exit 1; \
	  fi; \
	done

## The e2e suite against the real local environment, which it starts and always stops. The fault
## suite (tests/tests/faults.rs, about 5 minutes) restarts components, so it starts and stops an
## environment of its own (.cvs-env-faults) and runs its tests one at a time.
e2e:
	$(CARGO) build -p operator --locked
	trap 'tests/env/down.sh' EXIT; \
	env_lines=$$(tests/env/up.sh); eval "$$env_lines"; \
	export CVS_HELM=$$(tests/env/build-helm.sh); \
	$(CARGO) test -p cvs-e2e --locked -- --test-threads=4

## The copilot (edge-lambda/, see edge-lambda/README.md).
## make edge-bundle: rebuild edge-lambda/bundle/ and edge-lambda/bundle.sha256 (commit both).
edge-bundle:
	edge-lambda/build.sh

## Fails when the committed bundle or its checksums differ from a fresh build of the sources.
edge-drift:
	edge-lambda/build.sh --check

## Node runs the committed bundle on CloudFront events against DynamoDB Local, in an environment
## of its own (.cvs-env-edge), or in the one AWS_ENDPOINT_URL_DYNAMODB points to.
edge-test:
	edge-lambda/test/run.sh

## make bench-edge: the copilot's benchmark (warm and cold invocation time, bundle size, DynamoDB
## reads per 10,000 requests, against the original design). Results go into BENCHMARKS.md by hand.
bench-edge:
	edge-lambda/test/run.sh --no-warnings bench/bench.js

env-up:
	@tests/env/up.sh

env-down:
	@tests/env/down.sh

## make demo: the whole chain on loopback (control plane, DynamoDB Local, moto, a three-region live
## event with real media, an edge per region running the copilot bundle, the operator, the player
## page), then a scripted failure whose timeline it prints; runs until Ctrl-C. See tests/demo.sh.
##   make demo DEMO_ARGS=--keep-running     no scripted failure
DEMO_ARGS ?=
demo:
	tests/demo.sh $(DEMO_ARGS)

## make demo-check: `make demo` once through the scripted failure, then stops everything; fails when
## a step of the timeline is not seen. About 2-3 minutes warm; not part of `make test`.
demo-check:
	timeout 900 tests/demo.sh --exit-after-script --no-viewer

## make bench: the stale-playlist detector's benchmarks (see BENCHMARKS.md). Not part of `make test`.
## Builds the release binaries, starts etcd + kube-apiserver in a state dir of its own (so a `make
## test` environment is never reused or stopped), installs the CRDs, runs each scenario of BENCH,
## always stops the environment, and prints the results as Markdown tables.
##   make bench BENCH=scale-td6                  one scenario (or a space-separated list)
##   make bench BENCH="detection-ll-part1 detection-ll-part05 detection-ll-part1-plain detection-ll-part05-plain"
##                                               the LL-HLS scenarios (blocking reload vs plain polling)
##   make bench BENCH="detection-segment404-td2 scale-td6 scale-td6-no-segment-checks"
##                                               segment-unavailable detection, and the checks' cost
##   make bench BENCH_OPERATOR_ARGS=--operator-arg=--probe-concurrency=512
##   make bench BENCH_ENV_ARGS=                   with DynamoDB Local and moto as well
## Each scenario is bounded (--max-runtime, 15 min by default); the default set took 13 min on 2 cores.
# LL-HLS detection (blocking reload, judged on parts) at part targets 1 s and 0.5 s, and the same
# LL-HLS streams polled plainly (no blocking slot: segments only) for the request-rate comparison.
BENCH_LL := detection-ll-part1 detection-ll-part05 detection-ll-part1-plain detection-ll-part05-plain
BENCH_SEGMENTS := detection-segment404-td2 scale-td6 scale-td6-no-segment-checks
BENCH_ALL := detection-td2 detection-td6 scale-td6 scale-td2 scale-td2-5k false-verdicts-td2 $(BENCH_LL) detection-segment404-td2 scale-td6-no-segment-checks scale-td2-no-segment-checks
BENCH ?= detection-td2 detection-td6 scale-td6 scale-td2
BENCH_STAMP := $(shell date +%Y%m%d-%H%M%S)
BENCH_OUT ?= $(or $(CARGO_TARGET_DIR),target)/bench/$(BENCH_STAMP).jsonl
BENCH_STATE_DIR ?= $(CURDIR)/.cvs-env-bench
BENCH_OPERATOR_ARGS ?=
# etcd + kube-apiserver only. BENCH_ENV_ARGS= also starts DynamoDB Local and moto, so the state
# table the cluster reconciler writes is reachable (without them it fails and retries every 5 s).
BENCH_ENV_ARGS ?= --no-aws
bench_detection-td2 := detection --target-duration 2 --freezes 100 --parallel 25
bench_detection-td6 := detection --target-duration 6 --freezes 100 --parallel 25
bench_scale-td6 := scale --target-duration 6 --playlists 10000 --duration 120s --freezes 30 --parallel 15
bench_scale-td2 := scale --target-duration 2 --playlists 10000 --duration 120s --freezes 30 --parallel 15
bench_scale-td2-5k := scale --target-duration 2 --playlists 5000 --duration 120s --freezes 30 --parallel 15
# Healthy but imperfect origins (publication jitter +-30 % of TD, 1 % of requests failing, never
# twice in a row per playlist) for 30 min with freezes injected meanwhile: false Stale verdicts.
bench_false-verdicts-td2 := false-verdicts --target-duration 2 --playlists 1000 --duration 30m --parallel 3 --max-runtime 45m
bench_detection-ll-part1 := detection --target-duration 4 --part-target 1 --freezes 60 --parallel 20
bench_detection-ll-part05 := detection --target-duration 2 --part-target 0.5 --freezes 60 --parallel 20
# Segments answering 404 while the playlist advances (found by the sampled segment checks), timed
# from the fault; and the 10,000-playlist scale run without the checks, to price them.
bench_detection-segment404-td2 := detection --target-duration 2 --freezes 60 --parallel 20 --fault segment-404
bench_scale-td6-no-segment-checks := $(bench_scale-td6) --no-segment-checks
bench_scale-td2-no-segment-checks := $(bench_scale-td2) --no-segment-checks
bench_detection-ll-part1-plain := $(bench_detection-ll-part1) --operator-arg=--probe-blocking-concurrency=0
bench_detection-ll-part05-plain := $(bench_detection-ll-part05) --operator-arg=--probe-blocking-concurrency=0

bench-build:
	$(CARGO) build --release --locked -p operator -p hls-sim -p cvs-e2e \
	  --bin cvs-operator --bin hls-origin-sim --bin cvs-bench

bench: bench-build
	$(foreach s,$(BENCH),$(if $(bench_$(s)),,$(error unknown benchmark '$(s)'; known: $(BENCH_ALL))))
	export CVS_STATE_DIR='$(BENCH_STATE_DIR)'; \
	trap 'tests/env/down.sh' EXIT; \
	env_lines=$$(tests/env/up.sh $(BENCH_ENV_ARGS)); eval "$$env_lines"; \
	kubectl apply --server-side --force-conflicts -f crds/ >/dev/null; \
	kubectl wait --for=condition=Established --timeout=60s \
	  crd/clusteredstreams.cvs.dev crd/streaminstances.cvs.dev >/dev/null; \
	bench="$${CARGO_TARGET_DIR:-target}/release/cvs-bench"; failed=0; \
	$(foreach s,$(BENCH),"$$bench" $(bench_$(s)) --label $(s) --json-out '$(BENCH_OUT)' $(BENCH_OPERATOR_ARGS) || failed=1;) \
	echo; echo "Results ($(BENCH_OUT)):"; echo; \
	"$$bench" report '$(BENCH_OUT)'; \
	exit $$failed

## make soak: one hour at 10,000 playlists (TD 6 s) with a fault every 2 minutes (freezes, and every
## 4th a whole-region outage, refused or hanging, healed after 40 s) and 500 StreamInstances
## deleted and 500 created over the run: the operator's RSS, threads, fds, TCP connections, CPU and
## probe tasks every 10 s into target/soak/<label>-<time>/ (samples.csv, soak.svg, summary.json),
## and a flatness verdict (see RELIABILITY.md). Builds the release binaries and runs in the bench
## state dir like `make bench`; not part of `make test`. Override with SOAK_ARGS, for example
##   make soak SOAK_ARGS="--playlists 1000 --duration 5m --fault-every 40s --fault-for 20s"
SOAK_ARGS ?=
soak: bench-build
	export CVS_STATE_DIR='$(BENCH_STATE_DIR)'; \
	trap 'tests/env/down.sh' EXIT; \
	env_lines=$$(tests/env/up.sh $(BENCH_ENV_ARGS)); eval "$$env_lines"; \
	kubectl apply --server-side --force-conflicts -f crds/ >/dev/null; \
	kubectl wait --for=condition=Established --timeout=60s \
	  crd/clusteredstreams.cvs.dev crd/streaminstances.cvs.dev >/dev/null; \
	"$${CARGO_TARGET_DIR:-target}/release/cvs-bench" soak --json-out '$(BENCH_OUT)' $(SOAK_ARGS) $(BENCH_OPERATOR_ARGS)

## make bench-parse: the operator's CPU probing long media playlists (RELIABILITY.md, hostile
## input): 34 streams x 3 media playlists (video, audio, I-frames) listing 10,800 segments (a
## 6-hour EVENT window of 2 s segments, 0.26-0.5 MiB), then 20,000 (0.5-0.9 MiB), then 80,000
## (2-3.8 MiB: refused by the segment and size limits). Compare with another build (which must
## accept the same flags):
##   make bench-parse PARSE_OPERATOR_BIN=/path/to/an/older/cvs-operator
## Release build; each run is a 30 s warm-up and six 10 s windows (under 2 min).
PARSE_OPERATOR_BIN ?=
bench-parse:
	$(CARGO) build --release --locked -p operator -p hls-sim -p cvs-e2e \
	  --bin cvs-operator --bin hls-origin-sim --bin cvs-bench
	export CVS_STATE_DIR='$(BENCH_STATE_DIR)'; \
	trap 'tests/env/down.sh' EXIT; \
	env_lines=$$(tests/env/up.sh $(BENCH_ENV_ARGS)); eval "$$env_lines"; \
	kubectl apply --server-side --force-conflicts -f crds/ >/dev/null; \
	kubectl wait --for=condition=Established --timeout=60s \
	  crd/clusteredstreams.cvs.dev crd/streaminstances.cvs.dev >/dev/null; \
	target="$${CARGO_TARGET_DIR:-target}/release"; \
	$(if $(PARSE_OPERATOR_BIN),export CVS_OPERATOR_BIN='$(PARSE_OPERATOR_BIN)';) \
	for n in 10800 20000 80000; do \
	  "$$target/cvs-bench" parse-cost --segments $$n --label segments-$$n || exit 1; \
	done

## make bench-patch: the delay from a `distroOpen` patch to the state-table item changing (issue
## goal: p99 < 1 s). Starts the environment with DynamoDB Local in the bench state dir, runs the
## release operator with a 2-instance cluster and again with 48 more instances, then with the
## steering manifest published to moto's S3 (also timing the S3 object and the HTTP endpoint);
## always stops it.
BENCH_PATCHES ?= 200
bench-patch:
	$(CARGO) build --release --locked -p operator -p cvs-e2e --bin cvs-operator --bin cvs-bench-patch
	export CVS_STATE_DIR='$(BENCH_STATE_DIR)'; \
	trap 'tests/env/down.sh' EXIT; \
	env_lines=$$(tests/env/up.sh); eval "$$env_lines"; \
	target="$${CARGO_TARGET_DIR:-target}/release"; \
	export CVS_OPERATOR_BIN="$$target/cvs-operator"; \
	for extra in 0 48; do \
	  echo "== $$(( extra + 2 )) instances in the cluster"; \
	  "$$target/cvs-bench-patch" --patches $(BENCH_PATCHES) --extra-instances $$extra; echo; \
	done; \
	echo "== 2 instances, steering manifest published to S3 (moto) and served over HTTP"; \
	"$$target/cvs-bench-patch" --patches $(BENCH_PATCHES) --steering
