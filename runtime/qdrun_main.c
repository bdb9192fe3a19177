/* qdrun: runs a compiled .qplan. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "qd/log.h"
#include "qd/version.h"
#include "runtime/qdrun_devices.h"

static void qdrun_usage(FILE* f) {
  fprintf(f,
          "qdrun %s: run a compiled qd plan\n"
          "\n"
          "usage: qdrun [options]\n"
          "\n"
          "options:\n"
          "  -h, --help       show this help\n"
          "      --version    print the version\n"
          "      --devices    list the CUDA devices and the CUDA driver, NVRTC and cuBLASLt versions\n"
          "      --json       with --devices: print one JSON document instead of a table\n",
          QD_VERSION_STRING);
}

int main(int argc, char** argv) {
  static const struct option opts[] = {
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {"devices", no_argument, NULL, 'D'},
      {"json", no_argument, NULL, 'J'},
      {NULL, 0, NULL, 0},
  };
  bool devices = false, json = false;
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
      case 'h': qdrun_usage(stdout); return 0;
      case 'V': printf("qdrun %s\n", QD_VERSION_STRING); return 0;
      case 'D': devices = true; break;
      case 'J': json = true; break;
      default: qdrun_usage(stderr); return 2;
    }
  }
  if (devices) return qdrun_devices(json);
  qdrun_usage(stderr);
  return 2;
}
