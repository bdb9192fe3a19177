/* A stand-in for libcuda.so.1, loaded by test_cuda_loading through QD_CUDA_DRIVER_LIBRARY so that the loader's
 * real-driver paths (cuGetProcAddress by base name and ABI version, device queries, error naming) run on
 * machines without a GPU. It behaves like a driver with two devices; QD_FAKE_CUDA_MODE makes it misbehave:
 *   ok (default)  driver 12.8, two devices           new         driver 13.2
 *   missing       cuLaunchKernelEx cannot be found   init_fails  cuInit returns CUDA_ERROR_NO_DEVICE
 *   zero          no devices                         old         driver 11.8
 * The devices are compute capability 9.0, or what QD_FAKE_CUDA_CC says ("86": 8.6), for tests of what a plan's
 * kernels fit (qdrun --check).
 * Like the real driver, cuGetProcAddress refuses an ABI version newer than the driver and answers for base
 * names only. Entry points it does not implement resolve to a function that must never be called. */
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The fake is a plugin: its exports need no prototypes elsewhere. */
#pragma GCC diagnostic ignored "-Wmissing-prototypes"

static const char* fake_mode(void) {
  const char* m = getenv("QD_FAKE_CUDA_MODE");
  return m && *m ? m : "ok";
}
static int fake_is(const char* mode) { return strcmp(fake_mode(), mode) == 0; }

static int fake_version(void) {
  if (fake_is("new")) return 13020;
  if (fake_is("old")) return 11080;
  return 12080;
}

static int fake_cc(void) {
  const char* cc = getenv("QD_FAKE_CUDA_CC");
  int v = cc && *cc ? atoi(cc) : 90;
  return v >= 10 && v <= 199 ? v : 90;
}

static int fake_initialized;

CUresult CUDAAPI cuDriverGetVersion(int* version) {
  if (!version) return CUDA_ERROR_INVALID_VALUE;
  *version = fake_version();
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuInit(unsigned int flags) {
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  if (fake_is("init_fails")) return CUDA_ERROR_NO_DEVICE;
  fake_initialized = 1;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuGetErrorName(CUresult error, const char** name) {
  switch (error) {
    case CUDA_SUCCESS: *name = "CUDA_SUCCESS"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_VALUE: *name = "CUDA_ERROR_INVALID_VALUE"; return CUDA_SUCCESS;
    case CUDA_ERROR_OUT_OF_MEMORY: *name = "CUDA_ERROR_OUT_OF_MEMORY"; return CUDA_SUCCESS;
    case CUDA_ERROR_NOT_INITIALIZED: *name = "CUDA_ERROR_NOT_INITIALIZED"; return CUDA_SUCCESS;
    case CUDA_ERROR_NO_DEVICE: *name = "CUDA_ERROR_NO_DEVICE"; return CUDA_SUCCESS;
    default: *name = NULL; return CUDA_ERROR_INVALID_VALUE;
  }
}

CUresult CUDAAPI cuGetErrorString(CUresult error, const char** text) {
  switch (error) {
    case CUDA_SUCCESS: *text = "no error"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_VALUE: *text = "invalid argument"; return CUDA_SUCCESS;
    case CUDA_ERROR_OUT_OF_MEMORY: *text = "out of memory"; return CUDA_SUCCESS;
    case CUDA_ERROR_NOT_INITIALIZED: *text = "initialization error"; return CUDA_SUCCESS;
    case CUDA_ERROR_NO_DEVICE: *text = "no CUDA-capable device is detected"; return CUDA_SUCCESS;
    default: *text = NULL; return CUDA_ERROR_INVALID_VALUE;
  }
}

CUresult CUDAAPI cuDeviceGetCount(int* count) {
  if (!fake_initialized) return CUDA_ERROR_NOT_INITIALIZED;
  *count = fake_is("zero") ? 0 : 2;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGet(CUdevice* device, int ordinal) {
  if (ordinal < 0 || ordinal > 1) return CUDA_ERROR_INVALID_VALUE;
  *device = ordinal;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetName(char* name, int len, CUdevice dev) {
  if (len <= 0 || dev < 0 || dev > 1) return CUDA_ERROR_INVALID_VALUE;
  snprintf(name, (size_t)len, "qd fake GPU %d", (int)dev);
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetAttribute(int* value, CUdevice_attribute attrib, CUdevice dev) {
  if (dev < 0 || dev > 1) return CUDA_ERROR_INVALID_VALUE;
  switch (attrib) {
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *value = fake_cc() / 10; return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *value = fake_cc() % 10; return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *value = 132; return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: *value = 232448; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
  }
}

/* cuda.h renames these two to their _v2 symbols, as the real driver exports them. */
CUresult CUDAAPI cuDeviceTotalMem(size_t* bytes, CUdevice dev) {
  if (dev < 0 || dev > 1) return CUDA_ERROR_INVALID_VALUE;
  *bytes = ((size_t)80 << 30) + (size_t)dev * ((size_t)1 << 30);
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetUuid(CUuuid* uuid, CUdevice dev) {
  if (dev < 0 || dev > 1) return CUDA_ERROR_INVALID_VALUE;
  for (int i = 0; i < 16; i++) uuid->bytes[i] = (char)(dev * 0x10 + i);
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemAlloc(CUdeviceptr* ptr, size_t bytes) {
  (void)bytes;
  *ptr = 0;
  return CUDA_ERROR_OUT_OF_MEMORY;
}

CUresult CUDAAPI cuMemFree(CUdeviceptr ptr) {
  (void)ptr;
  return CUDA_ERROR_INVALID_VALUE;
}

/* A primary context and modules, counted, for tests of what keeps modules loaded (runtime/cuda/module_cache.h).
 * Each loaded module is a distinct handle; the counts are read back through fake_cuda_counts (dlsym). */
static int fake_retains, fake_releases, fake_loads, fake_unloads;
static char fake_module_storage[4096];

CUresult CUDAAPI cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice dev) {
  if (dev < 0 || dev > 1 || !ctx) return CUDA_ERROR_INVALID_VALUE;
  *ctx = (CUcontext)(fake_module_storage + dev);
  fake_retains++;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDevicePrimaryCtxRelease(CUdevice dev) {
  if (dev < 0 || dev > 1) return CUDA_ERROR_INVALID_VALUE;
  fake_releases++;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxSetCurrent(CUcontext ctx) {
  (void)ctx;
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuModuleLoadData(CUmodule* module, const void* image) {
  if (!module || !image) return CUDA_ERROR_INVALID_VALUE;
  if (fake_loads >= (int)sizeof fake_module_storage - 2) return CUDA_ERROR_OUT_OF_MEMORY;
  *module = (CUmodule)(fake_module_storage + 2 + fake_loads++);
  return CUDA_SUCCESS;
}

CUresult CUDAAPI cuModuleUnload(CUmodule module) {
  if (!module) return CUDA_ERROR_INVALID_VALUE;
  fake_unloads++;
  return CUDA_SUCCESS;
}

void fake_cuda_counts(int* retains, int* releases, int* loads, int* unloads) {
  *retains = fake_retains, *releases = fake_releases, *loads = fake_loads, *unloads = fake_unloads;
}

/* Two flavors under one name, as the real driver has them: CUDA 12's cuCtxSynchronize(void), and CUDA 13.0's,
 * which takes the context. A loader that asks a 13.x driver for the 13.0 ABI gets the second and calls it without
 * an argument; the real one then fails with CONTEXT_IS_DESTROYED, and so does this one. */
static CUresult CUDAAPI fake_ctx_synchronize_v2000(void) { return CUDA_SUCCESS; }
static CUresult CUDAAPI fake_ctx_synchronize_v13000(CUcontext ctx) {
  (void)ctx;
  return CUDA_ERROR_CONTEXT_IS_DESTROYED;
}

static void fake_unimplemented(void) {
  fprintf(stderr, "fake_cuda_driver: an unimplemented entry point was called\n");
  abort();
}

typedef struct {
  const char* base_name;
  void (*fn)(void);
} fake_entry;

#define FAKE_ENTRY(base, fn) {base, (void (*)(void))(fn)}
static const fake_entry fake_entries[] = {
    FAKE_ENTRY("cuDriverGetVersion", cuDriverGetVersion), FAKE_ENTRY("cuInit", cuInit),
    FAKE_ENTRY("cuGetErrorName", cuGetErrorName),         FAKE_ENTRY("cuGetErrorString", cuGetErrorString),
    FAKE_ENTRY("cuDeviceGetCount", cuDeviceGetCount),     FAKE_ENTRY("cuDeviceGet", cuDeviceGet),
    FAKE_ENTRY("cuDeviceGetName", cuDeviceGetName),       FAKE_ENTRY("cuDeviceGetAttribute", cuDeviceGetAttribute),
    FAKE_ENTRY("cuDeviceTotalMem", cuDeviceTotalMem),     FAKE_ENTRY("cuDeviceGetUuid", cuDeviceGetUuid),
    FAKE_ENTRY("cuMemAlloc", cuMemAlloc),                 FAKE_ENTRY("cuMemFree", cuMemFree),
    FAKE_ENTRY("cuDevicePrimaryCtxRetain", cuDevicePrimaryCtxRetain),
    FAKE_ENTRY("cuDevicePrimaryCtxRelease", cuDevicePrimaryCtxRelease),
    FAKE_ENTRY("cuCtxSetCurrent", cuCtxSetCurrent),       FAKE_ENTRY("cuModuleLoadData", cuModuleLoadData),
    FAKE_ENTRY("cuModuleUnload", cuModuleUnload),
};

CUresult CUDAAPI cuGetProcAddress_v2(const char* symbol, void** pfn, int cuda_version, cuuint64_t flags,
                                     CUdriverProcAddressQueryResult* status) {
  if (!symbol || !pfn) return CUDA_ERROR_INVALID_VALUE;
  *pfn = NULL;
  if (status) *status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
  /* As documented for the real driver: no ABI newer than the driver itself. */
  if (cuda_version > fake_version()) return CUDA_ERROR_INVALID_VALUE;
  if (flags != CU_GET_PROC_ADDRESS_LEGACY_STREAM) return CUDA_ERROR_INVALID_VALUE;
  /* Versioned names are not base names: the loader must never ask for them. */
  if (strstr(symbol, "_v2") || strstr(symbol, "_v3")) return CUDA_SUCCESS;
  if (fake_is("missing") && strcmp(symbol, "cuLaunchKernelEx") == 0) return CUDA_SUCCESS;
  void (*fn)(void) = fake_unimplemented;
  for (size_t i = 0; i < sizeof fake_entries / sizeof fake_entries[0]; i++)
    if (strcmp(fake_entries[i].base_name, symbol) == 0) fn = fake_entries[i].fn;
  if (strcmp(symbol, "cuCtxSynchronize") == 0)
    fn = cuda_version >= 13000 ? (void (*)(void))fake_ctx_synchronize_v13000
                               : (void (*)(void))fake_ctx_synchronize_v2000;
  memcpy(pfn, &fn, sizeof fn);
  if (status) *status = CU_GET_PROC_ADDRESS_SUCCESS;
  return CUDA_SUCCESS;
}
