# quantd — top-level build.
#   make            build build/quantd and the test binaries
#   make test       run every test (unit, conformance, end-to-end); prints "N passed, N failed"
#   make asan       same build with AddressSanitizer + UBSan into build-asan/
#   make test-asan  run the unit tests under the sanitizers
#   make fuzz       libFuzzer targets (clang) into build-fuzz/ (tests/fuzz/run_fuzz.sh runs them)
#   make fuzz-long  every fuzz target for FUZZ_SECONDS each (default 3600)
#   make bench      run the benchmarks under bench/
#   make container  build the container image (scripts/container.sh: podman, local base image)
#   make container-test  build it and run the end-to-end container suite (tests/container)
# Source files are picked up by wildcard: add a .c file to a module folder and it is built.

B        ?= build
CC       ?= cc
PROTOC_C ?= protoc-c
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
OPT      ?= -O2
SAN      ?=
CFLAGS   ?= $(OPT) -g
CFLAGS   += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
            -pthread -fno-strict-aliasing $(SAN) \
            -I. -Icommon -I$(B)/gen $(shell pkg-config --cflags openblas 2>/dev/null)
LDLIBS   += $(SAN) -pthread -lmicrohttpd -ljansson -lprotobuf-c -lsqlite3 -lopenblas -lcrypto $(CURL_LIBS) -lz -lm

# libcurl (the client commands, daemon/client.c); without it they are left out of the build
CURL_LIBS := $(shell pkg-config --libs libcurl 2>/dev/null)
ifeq ($(CURL_LIBS),)
CFLAGS   += -DQD_NO_CURL
endif

MODULES  := common onnx engine passes search store api daemon
LIB_SRCS := $(filter-out daemon/main.c,$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
GEN_SRCS := $(B)/gen/onnx.pb-c.c
LIB_OBJS := $(patsubst %.c,$(B)/obj/%.o,$(LIB_SRCS)) $(B)/obj/gen/onnx.pb-c.o
TEST_SRCS := $(wildcard tests/unit/test_*.c)
TEST_BINS := $(patsubst tests/unit/%.c,$(B)/tests/%,$(TEST_SRCS))
HDRS     := $(filter-out fuzz/% tests/%,$(wildcard */*.h)) $(wildcard */*.def) $(B)/gen/onnx.pb-c.h

.PHONY: all test asan test-asan fuzz fuzz-bins fuzz-long bench clean container container-test
all: $(B)/quantd $(TEST_BINS)

$(B)/gen/onnx.pb-c.c $(B)/gen/onnx.pb-c.h: $(ONNX_PROTO)
	@mkdir -p $(B)/gen
	$(PROTOC_C) --c_out=$(B)/gen -I$(dir $(ONNX_PROTO)) $(ONNX_PROTO)

$(B)/obj/gen/onnx.pb-c.o: $(B)/gen/onnx.pb-c.c $(B)/gen/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -w -c $< -o $@

$(B)/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# the web page is built into api/web.o (.incbin of web/*, listed in web/assets.def)
$(B)/obj/api/web.o: $(wildcard web/*)

$(B)/libquantd.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(B)/quantd: $(B)/obj/daemon/main.o $(B)/libquantd.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(B)/tests/%: tests/unit/%.c tests/unit/qd_test.h $(B)/libquantd.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(B)/libquantd.a $(LDLIBS)

test: all
	B=$(B) tests/run.sh

asan:
	$(MAKE) B=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer"

test-asan: asan
	B=build-asan QD_TEST_UNIT_ONLY=1 tests/run.sh

# Fuzz targets: every fuzz/fuzz_<name>.c is one libFuzzer binary build-fuzz/fuzz/fuzz_<name>
# (incremental: only changed objects and targets are rebuilt). `make fuzz-long` runs each
# for FUZZ_SECONDS (default 3600) after replaying its corpus fuzz/corpus/<name>/.
FUZZ_SRCS := $(wildcard fuzz/fuzz_*.c)
FUZZ_SAN  := -fsanitize=fuzzer-no-link,address,undefined
fuzz:
	$(MAKE) B=build-fuzz CC=clang OPT=-O1 SAN="$(FUZZ_SAN)" fuzz-bins

fuzz-bins: $(patsubst fuzz/%.c,$(B)/fuzz/%,$(FUZZ_SRCS))

$(B)/fuzz/fuzz_%: fuzz/fuzz_%.c $(wildcard fuzz/*.h) $(B)/libquantd.a
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -g -fsanitize=fuzzer,address,undefined -I. -Icommon -I$(B)/gen -o $@ $< \
	  $(B)/libquantd.a $(filter-out $(SAN),$(LDLIBS))

fuzz-long: fuzz
	FUZZ_SECONDS=$${FUZZ_SECONDS:-3600} FUZZ_KEEP=$${FUZZ_KEEP:-build-fuzz/corpus-new} tests/fuzz/run_fuzz.sh

bench: all
	bench/run.sh

container:
	scripts/container.sh build

container-test:
	tests/container/run_container.sh

clean:
	rm -rf build build-asan build-fuzz
