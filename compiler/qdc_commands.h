/* The subcommands of qdc, one file each (compiler/cmd_<name>.c). Each takes argv after the command name
 * (argv[0] is the command name itself, as getopt expects) and returns the process exit code. */
#ifndef QDC_COMMANDS_H
#define QDC_COMMANDS_H

int qdc_cmd_inspect(int argc, char** argv);
int qdc_cmd_compile(int argc, char** argv);
int qdc_cmd_synth(int argc, char** argv);
int qdc_cmd_quantize(int argc, char** argv);
int qdc_cmd_tune(int argc, char** argv);

#endif
