/* qdrun --devices: the device table (or one JSON document) on stdout. */
#ifndef QD_RUNTIME_QDRUN_DEVICES_H
#define QD_RUNTIME_QDRUN_DEVICES_H

#include <stdbool.h>

/* Prints the devices and CUDA library versions; returns qdrun's exit code. A machine without a CUDA driver or
 * device is not an error here (exit 0, said plainly on stdout); any other failure exits 1. */
int qdrun_devices(bool json);

#endif /* QD_RUNTIME_QDRUN_DEVICES_H */
