/* qdc: the qd model compiler. Dispatches to one subcommand per file (compiler/cmd_*.c). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "compiler/plan_writer.h"
#include "compiler/qdc_commands.h"
#include "qd/version.h"

typedef struct qdc_command {
  const char* name;
  int (*run)(int argc, char** argv);
  const char* summary;
} qdc_command_t;

static const qdc_command_t qdc_commands[] = {
    {"compile", qdc_cmd_compile, "compile a checkpoint and a graph description into a .qplan"},
    {"quantize", qdc_cmd_quantize, "write a checkpoint's linear weights as bitsandbytes NF4 (a diffusers-loadable file)"},
    {"synth", qdc_cmd_synth, "write seeded random weights for a graph (checkpoint or plan)"},
    {"tune", qdc_cmd_tune, "autotune a plan's GEMMs and kernels on the GPU present"},
    {"inspect", qdc_cmd_inspect, "describe a checkpoint, a graph description or a plan"},
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

/* Ctrl-C or a kill during `qdc compile` must not leave a half-written plan's temporary file behind (the final name
 * is only ever a complete plan: compiler/plan_writer.h). Only async-signal-safe work here: remove the temporary
 * files, then die of the same signal (SA_RESETHAND restored the default action), so the exit status says so. */
static void qdc_on_signal_(int sig) {
  qd_plan_writer_remove_temporaries();
  raise(sig);
}

static void qdc_install_signal_handlers_(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = qdc_on_signal_;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

int main(int argc, char** argv) {
  qdc_install_signal_handlers_();
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
