/* Benchmark: one denoising step (a forward pass of a plan's transformer) on the GPU.
 *
 * usage: flux_step PLAN [PLAN...] [--resolution WxH] [--batch N] [--iters N] [--autotune [--autotune-candidates N]]
 *                  [--untuned] [--no-graph] [--no-overlap]
 *                  [--no-gelu-epilogue] [--no-hoist] [--stream [--layers] [--slots K] [--keep GIB]] [--check-cpu]
 *                  [--jsonl FILE] [--gemm-profile] [--batch-linears] [--no-concat-parts] [--no-concat-in-place]
 *                  [--class-sweep]
 *
 * --stream: the blocks' weights stay in pinned host memory and are copied in while the step runs
 * (runtime/cuda/weight_stream.h), through K slots (default 2); the first blocks that fit GIB stay resident.
 * --layers: streamed layer by layer instead of block by block (the sequential schedule).
 * --gemm-profile: the eager pass's time per GEMM shape (M x N x K, uses per step, TFLOP/s). --batch-linears: q, k, v
 * projections as one batched GEMM instead of three (runtime/cuda/lowering.h; off by default: no faster here).
 * --no-concat-in-place: concatenations are not written in place by their parts' producers (lowering.h); with
 * --no-concat-parts too, a linear over one (the single blocks' proj_out) copies it and runs one GEMM instead of one
 * GEMM per part.
 * --autotune: cuBLASLt's first N (8) candidates timed per GEMM shape (single runs). --untuned: the plan's autotuning
 * records (qdc tune) left unused: the heuristic's GEMM algorithms and the default kernel variants.
 * --class-sweep: after the step, times the step's launches of one op class at a time (and a few unions: GEMMs with
 * their dequantization, everything but the dequantization) in the step's order and memory
 * (qd_cuda_executor_set_class_filter): what each class costs under the power it draws itself.
 * Every timing line carries the SM clock and board power NVML saw while it ran (bench/gpu_sampler.h).
 *
 * For each plan: builds a CUDA executor for the compiled resolution, feeds inputs shaped as FluxPipeline makes them
 * (random latents and text states, the pipeline's position ids, t = 0.5, guidance 3.5), checks that the output is
 * finite (and, with --check-cpu, close to the CPU reference run of the same plan: only for small models), then
 * times N steps (CUDA events, median after warm-up) and one eager pass with an event per launch for the time per
 * op class. The conditioning (embedders and adaLN modulation, runtime/cuda/hoist.h) is hoisted unless --no-hoist:
 * it is prepared once for 28 steps (t from 1 down to 1/28; the check and the timed steps run t = 0.5, step 14),
 * and its time per image is reported beside the step's, with the step's share of it (time / 28). Prints one table row per plan against the physical floor (FLOPs at 790 TFLOP/s), and appends JSON
 * lines for docs/performance.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/graph.h"
#include "qd/plan.h"
#include "qd/progress.h"
#include "runtime/cpu/executor.h"
#include "runtime/cuda/executor.h"
#include "runtime/cuda_driver.h"
#include "runtime/plan_internal.h"
#include "bench/gpu_sampler.h"

static uint64_t rng_state = 0x1234567u;
static float randn(void) {
  /* xorshift + Box-Muller: inputs only need to be reproducible and non-degenerate. */
  double u1, u2;
  do {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    u1 = (double)(rng_state >> 11) * 0x1p-53;
  } while (u1 <= 0);
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  u2 = (double)(rng_state >> 11) * 0x1p-53;
  return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Inputs as FluxPipeline prepares them: image ids (0, row, col) over the latent grid, text ids zero. */
static qd_status_t make_input(const qd_graph_t* g, int32_t i, int64_t width, qd_tensor_t* t) {
  const qd_value_t* v = &g->values[g->inputs[i]];
  int64_t n = qd_shape_numel(&v->shape);
  t->dtype = v->dtype;
  t->shape = v->shape;
  t->bytes = (size_t)n * 4;
  t->data = malloc(t->bytes);
  if (!t->data) return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "input '%s'", v->name);
  float* x = t->data;
  if (strcmp(v->name, "img_ids") == 0) {
    int64_t cols = width / 16;
    for (int64_t s = 0; s < v->shape.dims[0]; s++) {
      x[s * 3] = 0;
      x[s * 3 + 1] = (float)(s / cols);
      x[s * 3 + 2] = (float)(s % cols);
    }
  } else if (strcmp(v->name, "txt_ids") == 0) {
    memset(x, 0, t->bytes);
  } else if (strcmp(v->name, "timestep") == 0) {
    for (int64_t k = 0; k < n; k++) x[k] = 0.5f;
  } else if (strcmp(v->name, "guidance") == 0) {
    for (int64_t k = 0; k < n; k++) x[k] = 3.5f;
  } else {
    for (int64_t k = 0; k < n; k++) x[k] = randn();
  }
  return QD_OK;
}

/* --class-sweep: the step's launches of some op classes only, timed like the step. */
static qd_status_t sweep_classes(qd_cuda_executor_t* e, int iters, qd_gpu_sampler_t* sampler) {
  static const struct {
    const char* name;
    unsigned mask; /* bits as qd_cuda_op_class_name numbers the classes */
  } sets[] = {
      {"linear", 1u << 0},
      {"dequantize", 1u << 1},
      {"linear + dequantize", 1u << 0 | 1u << 1},
      {"attention", 1u << 2},
      {"norm + elementwise + other", 1u << 3 | 1u << 4 | 1u << 5},
      {"all but dequantize", 63u & ~(1u << 1)},
      {"all", 0},
  };
  printf("  class sweep: the step's launches of these classes only, in its order (median of %d):\n", iters);
  for (size_t k = 0; k < sizeof sets / sizeof sets[0]; k++) {
    QD_TRY(qd_cuda_executor_set_class_filter(e, sets[k].mask));
    qd_cuda_timing_t t;
    qd_gpu_sample_report_t r;
    qd_gpu_sampler_start(sampler);
    qd_status_t s = qd_cuda_executor_time(e, iters, false, &t);
    qd_gpu_sampler_stop(sampler, &r);
    if (s) {
      qd_cuda_executor_set_class_filter(e, 0);
      return s;
    }
    char text[128];
    printf("    %-28s %8.2f ms (min %.2f)%s\n", sets[k].name, t.median_ms, t.min_ms, qd_gpu_sample_text(&r, text, sizeof text));
  }
  return QD_OK;
}

/* After the sweep (filter cleared, the CUDA graph captured again): the step must give the output it gave before,
 * bit for bit, whatever the filtered runs left in the arena. */
static qd_status_t check_same_output(qd_cuda_executor_t* e, const qd_tensor_t* before) {
  qd_tensor_t again = {0};
  qd_status_t s = qd_cuda_executor_run(e);
  if (!s) s = qd_cuda_executor_get_output(e, 0, &again);
  int64_t n = qd_shape_numel(&before->shape), differ = 0;
  for (int64_t k = 0; !s && k < n; k++) differ += memcmp(&((float*)again.data)[k], &((float*)before->data)[k], 4) != 0;
  qd_tensor_free(qd_allocator_system(), &again);
  if (!s && differ)
    s = QD_ERR(INTERNAL, INTERNAL, "after the class sweep %lld of %lld output values differ from the step's before it",
               (long long)differ, (long long)n);
  if (!s) printf("  after the sweep the step's output is bit-identical to its first\n");
  return s;
}

int main(int argc, char** argv) {
  const char* plans[8];
  int plan_count = 0, iters = 20, batch = 1;
  int64_t widths[8] = {1024}, heights[8] = {1024};
  int res_count = 1;
  const char* jsonl = NULL;
  bool check_cpu = false, gemm_profile = false, class_sweep = false;
  qd_cuda_executor_options_t opt;
  qd_cuda_executor_options_default(&opt);
  opt.hoist_state_input = "hidden_states";
  opt.hoist_step_input = "timestep";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--resolution") == 0 && i + 1 < argc) {
      /* WxH[,WxH...] */
      res_count = 0;
      for (char* tok = strtok(argv[++i], ","); tok && res_count < 8; tok = strtok(NULL, ","), res_count++)
        if (sscanf(tok, "%ldx%ld", &widths[res_count], &heights[res_count]) != 2) return 2;
    } else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
      iters = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--autotune") == 0) {
      opt.autotune = true;
    } else if (strcmp(argv[i], "--untuned") == 0) {
      opt.ignore_tuning = true;
    } else if (strcmp(argv[i], "--autotune-candidates") == 0 && i + 1 < argc) {
      opt.autotune_candidates = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--no-graph") == 0) {
      opt.use_graph = false;
    } else if (strcmp(argv[i], "--no-overlap") == 0) {
      opt.overlap = false;
    } else if (strcmp(argv[i], "--no-gelu-epilogue") == 0) {
      opt.gelu_epilogue = false;
    } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
      batch = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--no-hoist") == 0) {
      opt.hoist_state_input = opt.hoist_step_input = NULL;
    } else if (strcmp(argv[i], "--stream") == 0) {
      opt.stream_weights = true;
    } else if (strcmp(argv[i], "--layers") == 0) {
      opt.stream_weights = opt.stream_layers = true;
    } else if (strcmp(argv[i], "--slots") == 0 && i + 1 < argc) {
      opt.stream_slots = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--keep") == 0 && i + 1 < argc) {
      opt.stream_keep_bytes = (uint64_t)(atof(argv[++i]) * 1073741824.0);
    } else if (strcmp(argv[i], "--batch-linears") == 0) {
      opt.batch_linears = true;
    } else if (strcmp(argv[i], "--no-concat-parts") == 0) {
      opt.concat_parts = false;
    } else if (strcmp(argv[i], "--no-concat-in-place") == 0) {
      opt.concat_in_place = false;
    } else if (strcmp(argv[i], "--gemm-profile") == 0) {
      gemm_profile = true;
    } else if (strcmp(argv[i], "--class-sweep") == 0) {
      class_sweep = true;
    } else if (strcmp(argv[i], "--check-cpu") == 0) {
      check_cpu = true;
    } else if (strcmp(argv[i], "--jsonl") == 0 && i + 1 < argc) {
      jsonl = argv[++i];
    } else if (argv[i][0] != '-' && plan_count < 8) {
      plans[plan_count++] = argv[i];
    } else {
      fprintf(stderr, "flux_step: unknown argument '%s'\n", argv[i]);
      return 2;
    }
  }
  const qd_cuda_driver_t* cu;
  qd_status_t s = qd_cuda_driver_load(&cu);
  if (s) {
    qd_status_fprint(stderr, "flux_step", s, false);
    return 77;
  }
  qd_gpu_sampler_t* sampler = NULL;
  s = qd_gpu_sampler_create(cu, opt.device, 20, &sampler);
  if (s) {
    qd_status_fprint(stderr, "flux_step", s, false);
    return 1;
  }
  printf("%-28s %-9s %9s %9s %8s %7s %9s %9s  %s\n", "plan", "res", "median", "min", "TFLOP/s", "floor", "weights",
         "peak", "per class (ms)");
  int rc = 0;
  for (int job = 0; job < plan_count * res_count; job++) {
    int p = job / res_count;
    int64_t width = widths[job % res_count], height = heights[job % res_count];
    qd_allocator_t a = qd_allocator_system();
    qd_plan_t* plan = NULL;
    qd_cuda_executor_t* e = NULL;
    int32_t res = -1;
    double t0 = qd_now_seconds();
    s = qd_plan_open(plans[p], a, 0, &plan);
    /* A pipeline plan's transformer, or a transformer plan's only component. */
    int32_t comp = plan ? qd_plan_find_component(plan, "transformer") : -1;
    if (comp < 0) comp = 0;
    if (!s) s = qd_plan_find_resolution(plan, comp, width, height, batch, &res);
    if (!s) s = qd_cuda_executor_create(plan, comp, res, &opt, a, &e);
    double t_create = qd_now_seconds() - t0;
    const qd_graph_t* g = e ? qd_cuda_executor_graph(e) : NULL;
    qd_tensor_t inputs[16] = {0};
    for (int32_t i = 0; g && i < g->input_count && !s; i++) s = make_input(g, i, width, &inputs[i]);
    for (int32_t i = 0; g && i < g->input_count && !s; i++) s = qd_cuda_executor_set_input(e, i, &inputs[i]);
    /* Hoisted: 28 steps with t = 1, 27/28, ..., 1/28; step 14 has t = 0.5, the value the CPU check feeds. */
    qd_cuda_hoisting_t ho = {0};
    double prepare_ms = 0;
    if (e) qd_cuda_executor_hoisting(e, &ho);
    if (!s && ho.nodes) {
      float ts[28 * 64];
      for (int k = 0; k < 28 * batch && batch <= 64; k++) ts[k] = (float)(28 - k / batch) / 28.0f;
      for (int rep = 0; rep < 2 && !s; rep++) { /* the first builds the conditioning program */
        double t1 = qd_now_seconds();
        s = qd_cuda_executor_prepare_steps(e, 28, ts);
        prepare_ms = (qd_now_seconds() - t1) * 1e3;
      }
      if (!s) s = qd_cuda_executor_select_step(e, 14);
      qd_cuda_executor_hoisting(e, &ho); /* now with the prepared steps' memory */
    }
    qd_tensor_t out = {0};
    if (!s) s = qd_cuda_executor_run(e);
    if (!s) s = qd_cuda_executor_get_output(e, 0, &out);
    int nonfinite = 0;
    double norm = 0;
    for (int64_t k = 0; !s && k < qd_shape_numel(&out.shape); k++) {
      float v = ((float*)out.data)[k];
      if (!isfinite(v)) nonfinite++;
      norm += (double)v * v;
    }
    if (!s && nonfinite) s = QD_ERR(INTERNAL, INTERNAL, "%d non-finite output values", nonfinite);
    double rel = -1;
    if (!s && check_cpu) {
      float** w = NULL;
      qd_graph_t* cg = NULL;
      qd_tensor_t ref = {0};
      s = qd_plan_instantiate(plan, comp, res, a, &cg);
      if (!s) s = qd_plan_weights_f32(plan, comp, a, &w);
      if (!s) s = qd_cpu_execute(cg, (const float* const*)w, inputs, &ref, NULL, a);
      if (!s) {
        double num = 0, den = 0;
        for (int64_t k = 0; k < qd_shape_numel(&out.shape); k++) {
          double d = (double)((float*)out.data)[k] - ((float*)ref.data)[k];
          num += d * d;
          den += (double)((float*)ref.data)[k] * ((float*)ref.data)[k];
        }
        rel = sqrt(num / den);
      }
      qd_tensor_free(a, &ref);
      if (w) qd_plan_weights_f32_free(plan, comp, a, w);
      qd_graph_destroy(cg);
    }
    qd_cuda_timing_t t = {0}, classes = {0};
    qd_gpu_sample_report_t clock;
    qd_gpu_sampler_start(sampler);
    if (!s) s = qd_cuda_executor_time(e, iters, false, &t);
    qd_gpu_sampler_stop(sampler, &clock);
    if (!s) s = qd_cuda_executor_time(e, 0, true, &classes);
    memcpy(t.class_ms, classes.class_ms, sizeof t.class_ms);
    t.gemm_count = classes.gemm_count;
    memcpy(t.gemms, classes.gemms, sizeof t.gemms);
    if (s) {
      qd_status_fprint(stderr, plans[p], s, true);
      qd_status_free(s);
      rc = 1;
    } else {
      qd_graph_stats_t st;
      qd_graph_stats(g, &st);
      double flop = st.linear_flops + st.attention_flops;
      qd_cuda_memory_t m;
      qd_cuda_executor_memory(e, &m);
      qd_cuda_tuning_t tu;
      qd_cuda_executor_tuning(e, &tu);
      double tflops = flop / (t.median_ms * 1e-3) / 1e12, floor_ms = flop / 790e12 * 1e3;
      char res_text[32];
      snprintf(res_text, sizeof res_text, batch > 1 ? "%ldx%ldx%d" : "%ldx%ld", width, height, batch);
      const char* base = strrchr(plans[p], '/') ? strrchr(plans[p], '/') + 1 : plans[p];
      printf("%-28s %-9s %8.2fms %8.2fms %8.1f %6.1fms %8.2fG %8.2fG ", base, res_text, t.median_ms, t.min_ms, tflops,
             floor_ms, m.weights / 1073741824.0, (m.device_used_after - m.device_used_before) / 1073741824.0);
      for (int c = 0; c < 6; c++) printf(" %s %.1f", qd_cuda_op_class_name(c), t.class_ms[c]);
      printf("\n");
      char clock_text[128];
      if (clock.available) printf("  the timed steps ran%s\n", qd_gpu_sample_text(&clock, clock_text, sizeof clock_text));
      if (class_sweep) s = sweep_classes(e, iters, sampler);
      if (class_sweep && !s) s = check_same_output(e, &out);
      if (s) {
        qd_status_fprint(stderr, plans[p], s, true);
        qd_status_free(s);
        s = QD_OK;
        rc = 1;
      }
      if (check_cpu) printf("  vs CPU reference of the same plan: rel L2 %.3e (output norm %.3e)\n", rel, sqrt(norm));
      if (tu.shapes)
        printf("  GEMM tuning: %d shapes, %d changed, heuristic %.2f ms -> tuned %.2f ms per step\n", tu.shapes,
               tu.changed, tu.default_ms, tu.tuned_ms);
      if (gemm_profile)
        for (int k = 0; k < t.gemm_count; k++) {
          const qd_cuda_gemm_timing_t* gt = &t.gemms[k];
          if (!gt->uses) continue;
          double tf = 2.0 * gt->m * gt->n * gt->k * gt->batch * gt->uses / (gt->ms * 1e-3) / 1e12;
          printf("  GEMM %5lld x %5lld x %5lld (batch %d) x%-3d %8.2f ms  %6.1f TFLOP/s\n", (long long)gt->m,
                 (long long)gt->n, (long long)gt->k, gt->batch, gt->uses, gt->ms, tf);
        }
      printf("  launches %d, executor creation %.1f s (kernels: %s; weights uploaded)\n", t.launches, t_create,
             qd_cuda_executor_kernel_source(e));
      if (opt.stream_weights)
        printf("  streamed weights: %.3f GiB per step in %d groups through %d slots (%.1f MiB in all); %.3f GiB "
               "resident; %.1f GB/s needed to hide under the step\n", m.streamed / 1073741824.0, m.streamed_groups,
               opt.stream_slots, m.slots / 1048576.0, m.weights / 1073741824.0,
               m.streamed / (t.median_ms * 1e-3) / 1e9);
      if (ho.nodes)
        printf("  hoisted conditioning: %d nodes, %d values per step (%.1f KiB); 28 steps prepared in %.2f ms "
               "(%.3f ms per step; %.1f MiB on the device)\n", ho.nodes, ho.boundary_values, ho.block_bytes / 1024.0,
               prepare_ms, prepare_ms / 28, ho.device_bytes / 1048576.0);
      else
        printf("  conditioning not hoisted%s%s\n", ho.why_not[0] ? ": " : "", ho.why_not);
      if (jsonl) {
        FILE* f = fopen(jsonl, "a");
        if (f) {
          fprintf(f,
                  "{\"plan\": \"%s\", \"resolution\": \"%s\", \"median_ms\": %.3f, \"min_ms\": %.3f, \"tflops\": %.1f, "
                  "\"floor_ms\": %.2f, \"weights_gib\": %.3f, \"device_used_gib\": %.3f, \"arena_gib\": %.3f, "
                  "\"scratch_gib\": %.3f, \"overlap\": %d, \"graph\": %d, \"gelu_epilogue\": %d, \"autotune\": %d, "
                  "\"tuned_ms\": %.3f, \"heuristic_ms\": %.3f, \"class_ms\": [%.3f, %.3f, %.3f, %.3f, %.3f, %.3f], "
                  "\"cpu_rel_l2\": %.4g, \"hoisted_nodes\": %d, \"prepare_28_ms\": %.3f, \"streamed_gib\": %.3f, "
                  "\"slots_gib\": %.3f, \"batch_linears\": %d, \"concat_parts\": %d, \"concat_in_place\": %d}\n",
                  base, res_text, t.median_ms, t.min_ms, tflops, floor_ms, m.weights / 1073741824.0,
                  (m.device_used_after - m.device_used_before) / 1073741824.0, m.arena / 1073741824.0,
                  m.scratch / 1073741824.0, opt.overlap, opt.use_graph, opt.gelu_epilogue, opt.autotune, tu.tuned_ms,
                  tu.default_ms, t.class_ms[0], t.class_ms[1], t.class_ms[2], t.class_ms[3], t.class_ms[4],
                  t.class_ms[5], rel, ho.nodes, prepare_ms, m.streamed / 1073741824.0, m.slots / 1073741824.0,
                  opt.batch_linears, opt.concat_parts, opt.concat_in_place);
          fclose(f);
        }
      }
    }
    for (int32_t i = 0; i < 16; i++) free(inputs[i].data);
    qd_tensor_free(a, &out);
    qd_cuda_executor_destroy(e);
    qd_plan_close(plan);
  }
  qd_gpu_sampler_destroy(sampler);
  return rc;
}
