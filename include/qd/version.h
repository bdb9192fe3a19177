/* qd: library version. */
#ifndef QD_VERSION_H
#define QD_VERSION_H

#define QD_VERSION_MAJOR 0
#define QD_VERSION_MINOR 1
#define QD_VERSION_PATCH 0
#define QD_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif
/* The version the library was built as (may differ from the header an application compiled against). */
const char* qd_version_string(void);
#ifdef __cplusplus
}
#endif
#endif
