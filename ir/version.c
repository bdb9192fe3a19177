#include "qd/version.h"

const char* qd_version_string(void) { return QD_VERSION_STRING; }
