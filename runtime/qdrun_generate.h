/* qdrun PLAN --prompt TEXT: text-to-image generation through the public generator API (qd/generator.h). */
#ifndef QDRUN_GENERATE_H
#define QDRUN_GENERATE_H

#include <stdbool.h>

/* Whether the arguments ask for generation (a --prompt option is present). */
bool qdrun_wants_generate(int argc, char** argv);

/* Parses its own options from argv (argv[0] is the program); returns the exit code: 0, 1 (failure) or 2 (usage). */
int qdrun_generate_main(int argc, char** argv);

#endif
