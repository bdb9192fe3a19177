/* Device and library-version queries: see include/qd/device.h. */
#include "qd/device.h"

#include <stdio.h>
#include <string.h>

#include "runtime/cuda_cublaslt.h"
#include "runtime/cuda_driver.h"
#include "runtime/cuda_nvrtc.h"

struct qd_device_list {
  qd_allocator_t allocator;
  qd_cuda_versions_t versions;
  size_t count;
  qd_device_info_t* devices;
};

const char* qd_cuda_version_format(int version, char* buf, size_t size) {
  if (size == 0) return buf;
  snprintf(buf, size, "%d.%d", version / 1000, (version % 1000) / 10);
  return buf;
}

void qd_cuda_versions_query(qd_cuda_versions_t* out) {
  memset(out, 0, sizeof *out);
  out->toolkit = CUDA_VERSION;
  /* The load is cached; its error only means "no driver" or "no device" here, and the version libcuda reported
   * before that is still worth printing. */
  const qd_cuda_driver_t* cu;
  qd_status_free(qd_cuda_driver_load(&cu));
  out->driver = qd_cuda_driver_version_seen(&out->driver_library);

  const qd_nvrtc_t* nv;
  qd_status_t s = qd_nvrtc_load(&nv);
  if (!s) {
    out->nvrtc_major = nv->version_major;
    out->nvrtc_minor = nv->version_minor;
    out->nvrtc_library = nv->library;
    out->nvrtc_include_dir = nv->include_dir;
  }
  qd_status_free(s);

  const qd_cublaslt_t* lt;
  s = qd_cublaslt_load(&lt);
  if (!s) {
    out->cublaslt = (int)lt->version;
    out->cublaslt_library = lt->library;
  }
  qd_status_free(s);
}

static void qd_device_uuid_format_(const uint8_t u[16], char* buf, size_t size) {
  snprintf(buf, size,
           "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4],
           u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

static qd_status_t qd_device_describe_(const qd_cuda_driver_t* cu, int ordinal, qd_device_info_t* info) {
  memset(info, 0, sizeof *info);
  info->ordinal = ordinal;
  CUdevice dev;
  QD_CU_TRY(cu->cuDeviceGet(&dev, ordinal));
  QD_CU_TRY(cu->cuDeviceGetName(info->name, (int)sizeof info->name - 1, dev));
  info->name[sizeof info->name - 1] = '\0';
  QD_CU_TRY(cu->cuDeviceGetAttribute(&info->cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
  QD_CU_TRY(cu->cuDeviceGetAttribute(&info->cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev));
  QD_CU_TRY(cu->cuDeviceGetAttribute(&info->multiprocessor_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev));
  QD_CU_TRY(cu->cuDeviceGetAttribute(&info->max_shared_memory_per_block,
                                     CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev));
  size_t total = 0;
  QD_CU_TRY(cu->cuDeviceTotalMem(&total, dev));
  info->total_memory = total;
  CUuuid uuid;
  QD_CU_TRY(cu->cuDeviceGetUuid(&uuid, dev));
  memcpy(info->uuid, uuid.bytes, sizeof info->uuid);
  qd_device_uuid_format_(info->uuid, info->uuid_string, sizeof info->uuid_string);
  return QD_OK;
}

qd_status_t qd_devices_query(qd_allocator_t a, qd_device_list_t** out_list) {
  *out_list = NULL;
  const qd_cuda_driver_t* cu;
  QD_TRY(qd_cuda_driver_load(&cu));
  qd_device_list_t* list;
  QD_TRY(qd_calloc(a, 1, sizeof *list, (void**)&list));
  list->allocator = a;
  qd_status_t s = QD_OK;
  QD_CHECK_GOTO(s, qd_calloc(a, (size_t)cu->device_count, sizeof *list->devices, (void**)&list->devices), fail);
  list->count = (size_t)cu->device_count;
  for (size_t i = 0; i < list->count; i++) {
    s = qd_device_describe_(cu, (int)i, &list->devices[i]);
    if (s) {
      qd_status_annotate(s, "while describing CUDA device %zu", i);
      goto fail;
    }
  }
  qd_cuda_versions_query(&list->versions);
  *out_list = list;
  return QD_OK;
fail:
  qd_device_list_destroy(list);
  return s;
}

void qd_device_list_destroy(qd_device_list_t* list) {
  if (!list) return;
  qd_allocator_t a = list->allocator;
  qd_free(a, list->devices, list->count * sizeof *list->devices);
  qd_free(a, list, sizeof *list);
}

size_t qd_device_list_count(const qd_device_list_t* list) { return list ? list->count : 0; }

const qd_device_info_t* qd_device_list_get(const qd_device_list_t* list, size_t index) {
  return list && index < list->count ? &list->devices[index] : NULL;
}

const qd_cuda_versions_t* qd_device_list_versions(const qd_device_list_t* list) {
  return list ? &list->versions : NULL;
}
