# ebpfu: `make` builds everything into bin/, `make test` runs every test, `make bench` prints the
# benchmark tables, `make demo` runs the main job on a stock tool.
GO       ?= go
BIN      := bin
GOFLAGS  ?=
export GOFLAGS

.PHONY: all build deps test bench demo fuzz clean

all: build

build: $(BIN)/libebpfu.so
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./cmd/...

# the agent preloaded into traced processes (cshim/, C)
$(BIN)/libebpfu.so: $(wildcard cshim/*.c cshim/*.h cshim/*.S cshim/maps/*.c cshim/maps/*.h) cshim/build.sh
	@mkdir -p $(BIN)
	cshim/build.sh $@

# deps installs the Debian packages the tests and benchmarks use when one is missing.
deps:
	@scripts/check-deps.sh || scripts/install-deps.sh

test: deps build
	$(GO) vet -unsafeptr=false ./...
	@scripts/kernel-objects.sh > $(BIN)/kernel-objects.before
	$(GO) test -count=1 -timeout 18m ./...
	@scripts/kernel-objects.sh > $(BIN)/kernel-objects.after
	@diff $(BIN)/kernel-objects.before $(BIN)/kernel-objects.after >/dev/null || \
		{ echo "the test suite changed the kernel's BPF program or map list:"; \
		  diff $(BIN)/kernel-objects.before $(BIN)/kernel-objects.after; exit 1; }

bench: deps build
	scripts/bench.sh

demo: deps build
	scripts/demo.sh

# fuzz runs every fuzz target for FUZZTIME each (default 30s); corpora live in testdata/fuzz.
FUZZTIME ?= 30s
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf $(BIN)
