# cadenza build.
#   make            build/cadenza, build/libcadenza.a, build/libcadenza.so (CUDA when nvcc is found)
#   make CUDA=0     CPU-only build
#   make ARCH="89 90"  GPU targets (default: every sm_80+ architecture this nvcc supports)
#   make test       CPU test suite (CI); ends with "N passed, M failed, K skipped"
#   make test-gpu   op suite CUDA vs CPU on the GPU of this machine
#   make fuzz       libFuzzer targets (clang), run for FUZZ_SECONDS each
#   make clean
.DEFAULT_GOAL := all
.SUFFIXES:
SHELL := /bin/bash

BUILD ?= build
CC ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif

# ---------------------------------------------------------------- feature detection
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifeq ($(CUDA),)
  CUDA := $(if $(NVCC),1,0)
endif
ifeq ($(CUDA),1)
  ifeq ($(NVCC),)
    $(error CUDA=1 but nvcc was not found; install the CUDA toolkit or build with CUDA=0)
  endif
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(realpath $(NVCC)))
  CUDA_INC := $(CUDA_HOME)/include
  CUDA_LIBDIR := $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/targets/x86_64-linux/lib))
  have_lib = $(if $(wildcard $(CUDA_LIBDIR)/lib$(1).so* /usr/lib/x86_64-linux-gnu/lib$(1).so*),1,0)
  HAVE_CUBLAS := $(call have_lib,cublasLt)
  HAVE_CUDNN := $(if $(wildcard $(CUDA_INC)/cudnn.h /usr/include/cudnn.h /usr/include/x86_64-linux-gnu/cudnn.h),$(call have_lib,cudnn),0)
  HAVE_CUFFT := $(call have_lib,cufft)
  HAVE_NCCL := $(call have_lib,nccl)
  $(info ✓ nvcc: $(NVCC) ($(shell $(NVCC) --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')))
  $(info $(if $(filter 1,$(HAVE_CUBLAS)),✓ cuBLASLt found,✗ cuBLASLt not found))
  $(info $(if $(filter 1,$(HAVE_CUDNN)),✓ cuDNN found,✗ cuDNN not found))
  $(info $(if $(filter 1,$(HAVE_CUFFT)),✓ cuFFT found,✗ cuFFT not found))
  $(info $(if $(filter 1,$(HAVE_NCCL)),✓ NCCL found,✗ NCCL not found))
  ifneq ($(HAVE_CUBLAS)$(HAVE_CUDNN)$(HAVE_CUFFT),111)
    $(error cuBLASLt, cuDNN and cuFFT are required for a CUDA build; install them or build with CUDA=0)
  endif
else
  $(info ✗ nvcc not used: CPU-only build (CUDA=0))
endif

have_pkg = $(shell pkg-config --exists $(1) 2>/dev/null && echo 1 || echo 0)
HAVE_FFTW := $(call have_pkg,fftw3f)
HAVE_SNDFILE := $(call have_pkg,sndfile)
HAVE_JANSSON := $(call have_pkg,jansson)
HAVE_SOXR := $(call have_pkg,soxr)
HAVE_MHD := $(call have_pkg,libmicrohttpd)
$(info $(if $(filter 1,$(HAVE_FFTW)),✓ FFTW found,✗ FFTW not found (apt-get install libfftw3-dev)))
$(info $(if $(filter 1,$(HAVE_SNDFILE)),✓ libsndfile found,✗ libsndfile not found (apt-get install libsndfile1-dev)))
$(info $(if $(filter 1,$(HAVE_JANSSON)),✓ jansson found,✗ jansson not found (apt-get install libjansson-dev)))
$(info $(if $(filter 1,$(HAVE_SOXR)),✓ libsoxr found,✗ libsoxr not found: no resampling (apt-get install libsoxr-dev)))
$(info $(if $(filter 1,$(HAVE_MHD)),✓ libmicrohttpd found,✗ libmicrohttpd not found: no admin HTTP port (apt-get install libmicrohttpd-dev)))
ifneq ($(HAVE_FFTW)$(HAVE_JANSSON),11)
  $(error FFTW and jansson are required: apt-get install libfftw3-dev libjansson-dev pkg-config)
endif

# GPU targets: every sm_80+ architecture the toolkit lists, unless ARCH= says otherwise.
ifeq ($(CUDA),1)
  ARCH ?= $(shell $(NVCC) --list-gpu-arch 2>/dev/null | sed -n 's/compute_//p' | awk '$$1>=80' | sort -n | tr '\n' ' ')
  ARCH_MAX := $(shell echo $(ARCH) | tr ' ' '\n' | sort -n | tail -n1)
  GENCODE := $(foreach a,$(ARCH),-gencode=arch=compute_$(a),code=sm_$(a)) \
             -gencode=arch=compute_$(ARCH_MAX),code=compute_$(ARCH_MAX)
  $(info ✓ GPU targets: sm_$(subst $(eval) ,$(eval) sm_,$(strip $(ARCH))) + PTX $(ARCH_MAX))
endif

# ---------------------------------------------------------------- flags
WARN := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wno-format-truncation
CPPFLAGS := -Iruntime -Ikernels -Imodels -D_GNU_SOURCE
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -fPIC -pthread $(WARN) $(shell pkg-config --cflags fftw3f jansson)
LDLIBS := $(shell pkg-config --libs fftw3f fftw3 jansson) -lm -lpthread -ldl
ifeq ($(HAVE_SNDFILE),1)
  CPPFLAGS += -DCDZ_HAVE_SNDFILE
  LDLIBS += $(shell pkg-config --libs sndfile)
endif
ifeq ($(HAVE_SOXR),1)
  CPPFLAGS += -DCDZ_HAVE_SOXR
  LDLIBS += $(shell pkg-config --libs soxr)
endif
ifeq ($(HAVE_MHD),1)
  CPPFLAGS += -DCDZ_HAVE_MHD
  LDLIBS += $(shell pkg-config --libs libmicrohttpd)
endif
ifeq ($(CUDA),1)
  CPPFLAGS += -DCDZ_HAVE_CUDA -I$(CUDA_INC)
  ifeq ($(HAVE_NCCL),1)
    CPPFLAGS += -DCDZ_HAVE_NCCL
    NCCL_LIB := -lnccl
  endif
  NVCCFLAGS ?= -O3 -lineinfo
  NVCCFLAGS += -std=c++17 -Xcompiler -fPIC,-Wall,-Wextra,-Werror,-Wno-unused-parameter \
               --Werror all-warnings -Wno-deprecated-gpu-targets $(GENCODE)
  LDLIBS += -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcudnn -lcufft -lcublasLt -lcublas \
            $(NCCL_LIB) -lcudart -lstdc++
endif

# ---------------------------------------------------------------- sources
# OPS="gemm softmax" limits the kernels (and op tests) built to those families: a quick
# inner loop while one family is being written. Empty (default): everything.
OPS ?=
ifeq ($(strip $(OPS)),)
  KERNEL_C := $(wildcard kernels/*.c)
  KERNEL_CU := $(wildcard kernels/*.cu)
  OPS_TESTS := $(wildcard tests/ops/*.c)
else
  KERNEL_C := $(wildcard $(OPS:%=kernels/%.c))
  KERNEL_CU := $(wildcard $(OPS:%=kernels/%.cu))
  OPS_TESTS := $(wildcard $(OPS:%=tests/ops/test_%.c))
  MODELS_C := none
endif
LIB_C := $(sort $(wildcard runtime/*.c) $(KERNEL_C) $(if $(MODELS_C),,$(wildcard models/*.c)))
LIB_CU := $(if $(filter 1,$(CUDA)),$(sort $(KERNEL_CU) $(if $(MODELS_C),,$(wildcard models/*.cu runtime/*.cu))))
LIB_OBJ := $(LIB_C:%.c=$(BUILD)/obj/%.o) $(LIB_CU:%.cu=$(BUILD)/obj/%.cu.o)
CLI_C := $(sort $(wildcard server/*.c))
CLI_OBJ := $(CLI_C:%.c=$(BUILD)/obj/%.o)
TEST_COMMON := $(BUILD)/obj/tests/harness.o
TEST_OPS_OBJ := $(BUILD)/obj/tests/test_ops.o $(patsubst %.c,$(BUILD)/obj/%.o,$(sort $(OPS_TESTS)))
TEST_PROGS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(filter-out tests/harness.c tests/test_ops.c,$(sort $(wildcard tests/test_*.c)))) $(BUILD)/tests/test_ops

DEPFLAGS = -MMD -MP
-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---------------------------------------------------------------- rules
.PHONY: all lib test test-gpu fuzz clean demo bench
all: $(BUILD)/cadenza $(BUILD)/libcadenza.a $(BUILD)/libcadenza.so

lib: $(BUILD)/libcadenza.a $(BUILD)/libcadenza.so

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(CPPFLAGS) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libcadenza.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libcadenza.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDLIBS)

# The CLI and the test programs link the static library; TEST_LINK=shared links libcadenza.so
# instead (one copy of the GPU code for all programs: small enough to carry to a GPU machine).
ifeq ($(TEST_LINK),shared)
  TEST_LIB_DEP := $(BUILD)/libcadenza.so
  TEST_LIB := -L$(BUILD) -lcadenza -Wl,-rpath,'$$ORIGIN:$$ORIGIN/..'
else
  TEST_LIB_DEP := $(BUILD)/libcadenza.a
  TEST_LIB := $(BUILD)/libcadenza.a
endif

$(BUILD)/cadenza: $(CLI_OBJ) $(TEST_LIB_DEP)
	$(CC) -o $@ $(CLI_OBJ) $(TEST_LIB) $(LDLIBS)

$(BUILD)/tests/test_ops: $(TEST_OPS_OBJ) $(TEST_COMMON) $(TEST_LIB_DEP)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $(TEST_OPS_OBJ) $(TEST_COMMON) $(TEST_LIB) $(LDLIBS)

$(BUILD)/tests/test_%: $(BUILD)/obj/tests/test_%.o $(TEST_COMMON) $(TEST_LIB_DEP)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $< $(TEST_COMMON) $(TEST_LIB) $(LDLIBS)

tests: $(TEST_PROGS) $(BUILD)/cadenza

# The README's first run: random HTDemucs weights, a synthetic mix, timing (cadenza demo --help).
demo: all
	$(BUILD)/cadenza demo

# CPU suite: every test program; CUDA checks are counted as skipped.
test: tests
	@bash tests/models/make-refs.sh $(BUILD)
	@bash tests/run.sh --cpu-only $(BUILD)

# GPU suite: the op tests CUDA vs CPU (needs a GPU; fails without one).
test-gpu: tests
	@bash tests/run-gpu.sh $(BUILD)

# Benchmark against PyTorch on this machine's GPU (docs/performance.md): builds
# BUILD/bench/bench_cadenza, then bench/run.sh makes weights and inputs, runs both sides,
# compares outputs and writes bench/results/<gpu>/. BENCH_ARGS="--cpu --small": CPU smoke test.
bench: $(BUILD)/libcadenza.a
	@mkdir -p $(BUILD)/bench
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $(BUILD)/bench/bench_cadenza bench/bench_cadenza.c $(BUILD)/libcadenza.a $(LDLIBS)
	@[ -n "$(BENCH_BUILD_ONLY)" ] || bash bench/run.sh --build $(BUILD) $(BENCH_ARGS)

# ---------------------------------------------------------------- fuzzing (clang + libFuzzer)
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_SRC := runtime/status.c runtime/log.c runtime/tensor.c runtime/weights.c runtime/arena.c \
            runtime/device.c runtime/check.c
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))

# (targets for server/ parsers #include their .c file: the fuzzers link no server objects)
$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_SRC) runtime/*.h server/*.c server/*.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -std=c11 -D_GNU_SOURCE -Iruntime $(shell pkg-config --cflags jansson) \
	    -o $@ $< $(FUZZ_SRC) $(shell pkg-config --libs jansson) -lm -lpthread

fuzz: $(FUZZ_TARGETS)
	@bash tests/fuzz/run.sh $(BUILD) $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD)
