/* qdc: the qd model compiler. Dispatches to one subcommand per file (compiler/cmd_*.c). */
#include <stdio.h>
#include <string.h>

#include "compiler/qdc_commands.h"
#include "qd/version.h"

typedef struct qdc_command {
  const char* name;
  int (*run)(int argc, char** argv);
  const char* summary;
} qdc_command_t;

static const qdc_command_t qdc_commands[] = {
    {"inspect", qdc_cmd_inspect, "describe a .safetensors file, checkpoint index or directory"},
};

static void qdc_usage(FILE* f) {
  fprintf(f,
          "qdc %s: ahead-of-time compiler for diffusion-transformer image models\n"
          "\n"
          "usage: qdc <command> [options]\n"
          "\n"
          "commands:\n",
          QD_VERSION_STRING);
  for (size_t i = 0; i < sizeof qdc_commands / sizeof qdc_commands[0]; i++)
    fprintf(f, "  %-10s %s\n", qdc_commands[i].name, qdc_commands[i].summary);
  fprintf(f,
          "\n"
          "Run 'qdc <command> --help' for a command's options.\n");
}

int main(int argc, char** argv) {
  if (argc < 2) {
    qdc_usage(stderr);
    return 2;
  }
  const char* cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    qdc_usage(stdout);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0) {
    printf("qdc %s\n", QD_VERSION_STRING);
    return 0;
  }
  for (size_t i = 0; i < sizeof qdc_commands / sizeof qdc_commands[0]; i++)
    if (strcmp(cmd, qdc_commands[i].name) == 0) return qdc_commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "qdc: error: unknown command '%s' (run 'qdc --help' for the list)\n", cmd);
  return 2;
}
