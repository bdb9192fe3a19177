/* Reading files whole and opening files to map; see file_read.h. */
#include "ir/file_read.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

qd_status_t qd_file_open_regular(const char* path, int* out_fd, uint64_t* out_size) {
  *out_fd = -1;
  *out_size = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    return qd_status_make(e == ENOENT ? QD_CODE_NOT_FOUND : QD_CODE_IO, QD_E_IO_OPEN, __FILE__, __LINE__,
                          "%s: cannot open: %s", path, strerror(e));
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    close(fd);
    return QD_ERR(IO, IO_STAT, "%s: cannot stat: %s", path, strerror(e));
  }
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    return QD_ERR(BAD_INPUT, NOT_A_FILE, "%s: not a regular file%s", path,
                  S_ISDIR(sb.st_mode) ? " (it is a directory)" : "");
  }
  *out_fd = fd;
  *out_size = (uint64_t)sb.st_size;
  return QD_OK;
}

qd_status_t qd_file_read_all(qd_allocator_t a, const char* path, uint64_t limit, qd_error_detail_t too_large,
                             char** out_buf, size_t* out_size) {
  *out_buf = NULL;
  *out_size = 0;
  int fd;
  uint64_t size;
  QD_TRY(qd_file_open_regular(path, &fd, &size));
  if (size > limit) {
    close(fd);
    return qd_status_make(QD_CODE_BAD_INPUT, too_large, __FILE__, __LINE__, "%s: %llu bytes; at most %llu are allowed",
                          path, (unsigned long long)size, (unsigned long long)limit);
  }
  char* buf;
  qd_status_t s = qd_malloc(a, (size_t)size + 1, (void**)&buf);
  if (s) {
    close(fd);
    return s;
  }
  size_t got = 0;
  while (got < size) {
    ssize_t r = read(fd, buf + got, (size_t)size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int e = r < 0 ? errno : 0;
      close(fd);
      qd_free(a, buf, (size_t)size + 1);
      return QD_ERR(IO, IO_READ, "%s: read failed after %zu of %llu bytes%s%s", path, got, (unsigned long long)size,
                    e ? ": " : " (the file shrank)", e ? strerror(e) : "");
    }
    got += (size_t)r;
  }
  close(fd);
  buf[size] = '\0';
  *out_buf = buf;
  *out_size = (size_t)size;
  return QD_OK;
}
