/* qdrun --devices: see runtime/qdrun_devices.h. */
#include "runtime/qdrun_devices.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/device.h"

#define QDRUN_GIB (1024.0 * 1024.0 * 1024.0)

/* No driver and no device are facts about the machine, not failures: CPU execution still works. */
static bool qdrun_devices_absent_(qd_status_t s) {
  return qd_status_is(s, QD_E_CUDA_NO_DRIVER) || qd_status_is(s, QD_E_CUDA_NO_DEVICE);
}

static void qdrun_cublaslt_version_(int v, char* buf, size_t size) {
  snprintf(buf, size, "%d.%d.%d", v / 10000, (v / 100) % 100, v % 100);
}

static void qdrun_print_versions_(const qd_cuda_versions_t* v) {
  char b[32];
  printf("\n");
  if (v->driver_library)
    printf("CUDA driver   %-8s %s\n", v->driver ? qd_cuda_version_format(v->driver, b, sizeof b) : "unknown",
           v->driver_library);
  else
    printf("CUDA driver   none\n");
  printf("CUDA toolkit  %-8s (the headers qd was compiled against)\n", qd_cuda_version_format(v->toolkit, b, sizeof b));
  if (v->nvrtc_library) {
    snprintf(b, sizeof b, "%d.%d", v->nvrtc_major, v->nvrtc_minor);
    printf("NVRTC         %-8s %s (headers: %s)\n", b, v->nvrtc_library,
           v->nvrtc_include_dir ? v->nvrtc_include_dir : "none found; set QD_CUDA_INCLUDE_DIR");
  } else {
    printf("NVRTC         %-8s (kernels cannot be compiled here)\n", "none");
  }
  if (v->cublaslt_library) {
    qdrun_cublaslt_version_(v->cublaslt, b, sizeof b);
    printf("cuBLASLt      %-8s %s\n", b, v->cublaslt_library);
  } else {
    printf("cuBLASLt      none\n");
  }
}

static void qdrun_print_table_(const qd_device_list_t* list) {
  int name_w = 4;
  for (size_t i = 0; i < qd_device_list_count(list); i++) {
    int n = (int)strlen(qd_device_list_get(list, i)->name);
    if (n > name_w) name_w = n;
  }
  printf("%-3s  %-*s  %-6s  %10s  %4s  %s\n", "#", name_w, "name", "arch", "memory", "SMs", "uuid");
  for (size_t i = 0; i < qd_device_list_count(list); i++) {
    const qd_device_info_t* d = qd_device_list_get(list, i);
    char arch[16], mem[32];
    snprintf(arch, sizeof arch, "sm_%d%d", d->cc_major, d->cc_minor);
    snprintf(mem, sizeof mem, "%.1f GiB", (double)d->total_memory / QDRUN_GIB);
    printf("%-3d  %-*s  %-6s  %10s  %4d  %s\n", d->ordinal, name_w, d->name, arch, mem, d->multiprocessor_count,
           d->uuid_string);
  }
}

static cJSON* qdrun_version_json_(int version) {
  char b[32];
  return version ? cJSON_CreateString(qd_cuda_version_format(version, b, sizeof b)) : cJSON_CreateNull();
}

static cJSON* qdrun_string_or_null_(const char* s) { return s ? cJSON_CreateString(s) : cJSON_CreateNull(); }

/* Builds the document; NULL when cJSON runs out of memory. */
static cJSON* qdrun_devices_json_(const qd_device_list_t* list, const qd_cuda_versions_t* v, qd_status_t s) {
  cJSON* root = cJSON_CreateObject();
  if (!root) return NULL;
  cJSON_AddBoolToObject(root, "cuda_available", list != NULL);
  if (s) {
    char msg[4096];
    qd_status_format(s, msg, sizeof msg);
    cJSON* err = cJSON_AddObjectToObject(root, "status");
    if (err) {
      cJSON_AddStringToObject(err, "detail", qd_error_detail_name(qd_status_detail(s)));
      cJSON_AddStringToObject(err, "code", qd_status_code_name(qd_status_code(s)));
      cJSON_AddStringToObject(err, "message", msg);
    }
  } else {
    cJSON_AddNullToObject(root, "status");
  }
  cJSON* vj = cJSON_AddObjectToObject(root, "versions");
  if (vj) {
    char b[32];
    cJSON_AddItemToObject(vj, "toolkit", qdrun_version_json_(v->toolkit));
    cJSON_AddItemToObject(vj, "driver", qdrun_version_json_(v->driver));
    cJSON_AddItemToObject(vj, "driver_library", qdrun_string_or_null_(v->driver_library));
    snprintf(b, sizeof b, "%d.%d", v->nvrtc_major, v->nvrtc_minor);
    cJSON_AddItemToObject(vj, "nvrtc", v->nvrtc_library ? cJSON_CreateString(b) : cJSON_CreateNull());
    cJSON_AddItemToObject(vj, "nvrtc_library", qdrun_string_or_null_(v->nvrtc_library));
    cJSON_AddItemToObject(vj, "nvrtc_include_dir", qdrun_string_or_null_(v->nvrtc_include_dir));
    qdrun_cublaslt_version_(v->cublaslt, b, sizeof b);
    cJSON_AddItemToObject(vj, "cublaslt", v->cublaslt_library ? cJSON_CreateString(b) : cJSON_CreateNull());
    cJSON_AddItemToObject(vj, "cublaslt_library", qdrun_string_or_null_(v->cublaslt_library));
  }
  cJSON* devs = cJSON_AddArrayToObject(root, "devices");
  for (size_t i = 0; devs && i < qd_device_list_count(list); i++) {
    const qd_device_info_t* d = qd_device_list_get(list, i);
    cJSON* dj = cJSON_CreateObject();
    if (!dj) break;
    char b[32];
    cJSON_AddNumberToObject(dj, "ordinal", d->ordinal);
    cJSON_AddStringToObject(dj, "name", d->name);
    snprintf(b, sizeof b, "%d.%d", d->cc_major, d->cc_minor);
    cJSON_AddStringToObject(dj, "compute_capability", b);
    snprintf(b, sizeof b, "sm_%d%d", d->cc_major, d->cc_minor);
    cJSON_AddStringToObject(dj, "arch", b);
    cJSON_AddNumberToObject(dj, "total_memory_bytes", (double)d->total_memory);
    cJSON_AddNumberToObject(dj, "multiprocessors", d->multiprocessor_count);
    cJSON_AddNumberToObject(dj, "max_shared_memory_per_block", d->max_shared_memory_per_block);
    cJSON_AddStringToObject(dj, "uuid", d->uuid_string);
    cJSON_AddItemToArray(devs, dj);
  }
  return root;
}

int qdrun_devices(bool json) {
  qd_device_list_t* list = NULL;
  qd_status_t s = qd_devices_query(qd_allocator_system(), &list);
  qd_cuda_versions_t versions;
  if (list)
    versions = *qd_device_list_versions(list);
  else
    qd_cuda_versions_query(&versions);
  int rc = !s || qdrun_devices_absent_(s) ? 0 : 1;

  if (json) {
    cJSON* root = qdrun_devices_json_(list, &versions, s);
    char* text = root ? cJSON_Print(root) : NULL;
    if (text) {
      printf("%s\n", text);
      free(text);
    } else {
      fprintf(stderr, "qdrun: error: out of memory while writing the device list\n");
      rc = 1;
    }
    cJSON_Delete(root);
  } else if (s) {
    char msg[4096];
    qd_status_format(s, msg, sizeof msg);
    if (rc == 0) {
      printf("qdrun: %s; CPU execution is still available\n", msg);
      qdrun_print_versions_(&versions);
    } else {
      qd_status_fprint(stderr, "qdrun", s, false);
    }
  } else {
    qdrun_print_table_(list);
    qdrun_print_versions_(&versions);
  }
  qd_status_free(s);
  qd_device_list_destroy(list);
  return rc;
}
