/* qdc inspect: placeholder until the safetensors reader lands (this file is replaced by it). */
#include <stdio.h>

#include "compiler/qdc_commands.h"

int qdc_cmd_inspect(int argc, char** argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "qdc inspect: not built yet\n");
  return 1;
}
