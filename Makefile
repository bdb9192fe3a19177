# Thin wrapper over meson: installs what the build needs, configures once, builds, runs.
#   make demo   build, then run the main job on a built-in tiny default
#   make test   build, then run the CPU test suite, plain and under ASan+UBSan, the example (make example), then
#               the fuzzers (make fuzz)
#   make fuzz   build the libFuzzer targets with clang and run each for FUZZ_SECONDS on its seeds
#   make example  install into a temporary prefix, build docs/example.c with pkg-config, run it on a tiny plan
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 30
MESON_OPTS ?= -Dwerror=true
SANITIZE_OPTS = -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug \
                -Dc_args=-fno-sanitize-recover=all
export ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS ?= halt_on_error=1:print_stacktrace=1

.PHONY: all deps build build-asan demo example test test-unit test-asan fuzz clean

all: build

deps:
	@tools/install-deps.sh

build: deps
	@test -f $(BUILD)/build.ninja || meson setup $(BUILD) $(MESON_OPTS)
	meson compile -C $(BUILD)

build-asan: deps
	@test -f $(ASAN_BUILD)/build.ninja || meson setup $(ASAN_BUILD) $(MESON_OPTS) $(SANITIZE_OPTS)
	meson compile -C $(ASAN_BUILD)

demo: build
	@tools/demo.sh $(BUILD)

test-unit: build
	meson test -C $(BUILD) --print-errorlogs

test-asan: build-asan
	meson test -C $(ASAN_BUILD) --print-errorlogs

example: build
	@tools/build_example.sh $(BUILD)

fuzz: deps
	tools/run_fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

test: test-unit test-asan example fuzz

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
