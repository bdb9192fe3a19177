/* Generating an image with the qd library: the smallest complete program.
 *
 *   cc -std=c17 example.c $(pkg-config --cflags --libs qd) -o example
 *   ./example flux.qplan "a cat holding a sign that says hello" cat.png [seed]
 *
 * The plan comes from `qdc compile` of a diffusers FLUX directory (docs/user-guide.md). `make example` builds this
 * file against a temporary install of the library and runs it on a tiny plan. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <qd/generator.h>

/* Called after every denoising step; returning false would cancel the generation. */
static bool on_step(void* user, const char* label, uint64_t done, uint64_t total, double elapsed_s) {
  (void)user;
  fprintf(stderr, "\r%s: step %" PRIu64 " of %" PRIu64 " (%.1f s)", label, done, total, elapsed_s);
  if (done == total) fputc('\n', stderr);
  return true;
}

/* Prints an error with its context and frees it. */
static int fail(qd_status_t s) {
  qd_status_fprint(stderr, "example", s, false);
  qd_status_free(s);
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s PLAN PROMPT OUT.png [SEED]\n", argv[0]);
    return 2;
  }
  qd_allocator_t allocator = qd_allocator_system();

  qd_plan_t* plan = NULL;
  qd_status_t s = qd_plan_open(argv[1], allocator, 0, &plan);
  if (s) return fail(s);

  qd_generator_options_t options;
  qd_generator_options_init(&options); /* CPU, one thread per core */
  qd_generator_t* generator = NULL;
  s = qd_generator_create(plan, &options, allocator, &generator);
  if (s) {
    qd_plan_close(plan);
    return fail(s);
  }

  qd_generate_params_t params;
  qd_generate_params_init(&params); /* the model's steps and guidance, the plan's first size, one image */
  params.prompt = argv[2];
  params.seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;
  qd_progress_sink_t progress = {QD_PROGRESS_QUIET, NULL, on_step, NULL, 0.0};
  params.progress = &progress;

  qd_generate_result_t result;
  s = qd_generator_generate(generator, &params, &result);
  if (!s) {
    /* result.pixels holds width x height RGB bytes per image; or let qd write a PNG with the parameters in it. */
    s = qd_generate_result_write_png(&result, 0, argv[3]);
    if (!s)
      printf("%s: %dx%d, %d steps, seed %" PRIu64 ", %.2f s of denoising\n", argv[3], result.width, result.height,
             result.steps, result.seed, result.seconds_denoise);
    qd_generate_result_deinit(&result);
  }
  qd_generator_destroy(generator);
  qd_plan_close(plan);
  return s ? fail(s) : 0;
}
