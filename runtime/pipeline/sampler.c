/* FlowMatchEulerDiscreteScheduler as FluxPipeline runs it; see sampler.h for the math and why each operation is
 * written the way it is. */
#include "runtime/pipeline/sampler.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

void qd_scheduler_config_flux(qd_scheduler_config_t* c, bool dev) {
  memset(c, 0, sizeof *c);
  c->num_train_timesteps = 1000;
  c->base_shift = 0.5;
  c->max_shift = 1.15;
  c->base_image_seq_len = 256;
  c->max_image_seq_len = 4096;
  c->use_dynamic_shifting = dev;
  c->shift = dev ? 3.0 : 1.0;
}

static qd_status_t qd_sched_bad_(const char* source, const char* key, const char* what) {
  return QD_ERR(INVALID_ARGUMENT, PIPELINE_SCHEDULER, "%s: scheduler config: \"%s\" %s", source, key, what);
}

/* A number field; absent keeps *out. null is refused: FluxPipeline would pass None into arithmetic and fail. */
static qd_status_t qd_sched_number_(const cJSON* o, const char* source, const char* key, double* out) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v) return QD_OK;
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return qd_sched_bad_(source, key, "is not a finite number");
  *out = v->valuedouble;
  return QD_OK;
}

static qd_status_t qd_sched_int_(const cJSON* o, const char* source, const char* key, int64_t lo, int64_t hi,
                                 int64_t* out) {
  double d = (double)*out;
  QD_TRY(qd_sched_number_(o, source, key, &d));
  if (d != floor(d) || d < (double)lo || d > (double)hi)
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_SCHEDULER, "%s: scheduler config: \"%s\" is %.17g; expected an integer "
                  "from %lld to %lld", source, key, d, (long long)lo, (long long)hi);
  *out = (int64_t)d;
  return QD_OK;
}

static qd_status_t qd_sched_bool_(const cJSON* o, const char* source, const char* key, bool* out) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v || cJSON_IsNull(v)) return QD_OK;
  if (!cJSON_IsBool(v)) return qd_sched_bad_(source, key, "is not true or false");
  *out = cJSON_IsTrue(v);
  return QD_OK;
}

/* Options that change the schedule in ways qd does not implement: refused rather than ignored, so a plan never
 * samples differently from the pipeline it was compiled from. */
static qd_status_t qd_sched_must_be_false_(const cJSON* o, const char* source, const char* key, const char* what) {
  bool v = false;
  QD_TRY(qd_sched_bool_(o, source, key, &v));
  if (v)
    return QD_ERR(UNSUPPORTED, PIPELINE_SCHEDULER, "%s: scheduler config: \"%s\" is true (%s); qd implements the "
                  "FLUX schedule only", source, key, what);
  return QD_OK;
}

qd_status_t qd_scheduler_config_from_json(const cJSON* o, const char* source, qd_scheduler_config_t* out) {
  if (!cJSON_IsObject(o))
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_SCHEDULER, "%s: the scheduler config is not a JSON object", source);
  qd_scheduler_config_t c;
  /* FlowMatchEulerDiscreteScheduler's own defaults, as diffusers fills missing keys. */
  qd_scheduler_config_flux(&c, false);
  const cJSON* cls = cJSON_GetObjectItemCaseSensitive(o, "_class_name");
  if (cls && (!cJSON_IsString(cls) || strcmp(cls->valuestring, "FlowMatchEulerDiscreteScheduler") != 0))
    return QD_ERR(UNSUPPORTED, PIPELINE_SCHEDULER, "%s: scheduler config: \"_class_name\" is %s; qd runs "
                  "FlowMatchEulerDiscreteScheduler", source, cJSON_IsString(cls) ? cls->valuestring : "not a string");
  QD_TRY(qd_sched_int_(o, source, "num_train_timesteps", 1, 1000000, &c.num_train_timesteps));
  QD_TRY(qd_sched_number_(o, source, "shift", &c.shift));
  if (!(c.shift > 0)) return qd_sched_bad_(source, "shift", "must be positive");
  QD_TRY(qd_sched_bool_(o, source, "use_dynamic_shifting", &c.use_dynamic_shifting));
  QD_TRY(qd_sched_number_(o, source, "base_shift", &c.base_shift));
  QD_TRY(qd_sched_number_(o, source, "max_shift", &c.max_shift));
  QD_TRY(qd_sched_int_(o, source, "base_image_seq_len", 0, INT64_C(1) << 40, &c.base_image_seq_len));
  QD_TRY(qd_sched_int_(o, source, "max_image_seq_len", 0, INT64_C(1) << 40, &c.max_image_seq_len));
  if (c.base_image_seq_len == c.max_image_seq_len)
    return qd_sched_bad_(source, "max_image_seq_len", "equals base_image_seq_len (calculate_shift divides by their "
                         "difference)");
  const cJSON* tst = cJSON_GetObjectItemCaseSensitive(o, "time_shift_type");
  if (tst) {
    if (!cJSON_IsString(tst) || (strcmp(tst->valuestring, "exponential") != 0 && strcmp(tst->valuestring, "linear") != 0))
      return qd_sched_bad_(source, "time_shift_type", "is not \"exponential\" or \"linear\"");
    c.time_shift_linear = strcmp(tst->valuestring, "linear") == 0;
  }
  const cJSON* term = cJSON_GetObjectItemCaseSensitive(o, "shift_terminal");
  if (term && !cJSON_IsNull(term)) {
    QD_TRY(qd_sched_number_(o, source, "shift_terminal", &c.shift_terminal));
    /* diffusers tests `if self.config.shift_terminal:`, so 0 means off. */
    c.has_shift_terminal = c.shift_terminal != 0;
    if (c.has_shift_terminal && !(c.shift_terminal > 0 && c.shift_terminal < 1))
      return qd_sched_bad_(source, "shift_terminal", "must lie strictly between 0 and 1");
  }
  QD_TRY(qd_sched_must_be_false_(o, source, "use_karras_sigmas", "Karras sigmas"));
  QD_TRY(qd_sched_must_be_false_(o, source, "use_exponential_sigmas", "exponential sigmas"));
  QD_TRY(qd_sched_must_be_false_(o, source, "use_beta_sigmas", "beta sigmas"));
  QD_TRY(qd_sched_must_be_false_(o, source, "invert_sigmas", "inverted sigmas"));
  QD_TRY(qd_sched_must_be_false_(o, source, "stochastic_sampling", "noise added at every step"));
  QD_TRY(qd_sched_must_be_false_(o, source, "use_flow_sigmas", "FluxPipeline then ignores its own sigmas"));
  *out = c;
  return QD_OK;
}

qd_status_t qd_scheduler_config_parse(const char* json, size_t length, const char* source, qd_scheduler_config_t* out) {
  cJSON* o = cJSON_ParseWithLength(json, length);
  if (!o) return QD_ERR(INVALID_ARGUMENT, PIPELINE_SCHEDULER, "%s: the scheduler config is not valid JSON", source);
  qd_status_t s = qd_scheduler_config_from_json(o, source, out);
  cJSON_Delete(o);
  return s;
}

double qd_flux_calculate_shift(int64_t image_seq_len, int64_t base_seq_len, int64_t max_seq_len, double base_shift,
                               double max_shift) {
  double m = (max_shift - base_shift) / (double)(max_seq_len - base_seq_len);
  double b = base_shift - m * (double)base_seq_len;
  return (double)image_seq_len * m + b;
}

qd_status_t qd_schedule_compute(const qd_scheduler_config_t* c, int32_t steps, int64_t image_seq_len, float* sigmas,
                                float* timesteps, float* model_t) {
  if (steps < 1 || steps > QD_SAMPLER_MAX_STEPS)
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_STEPS, "%d denoising steps; expected 1 to %d", steps, QD_SAMPLER_MAX_STEPS);
  /* np.linspace(1.0, 1 / n, n): y = i * step + start with step = (stop - start) / (n - 1), the last one set to
   * stop; then .astype(np.float32). */
  double start = 1.0, stop = 1.0 / (double)steps;
  double step = steps > 1 ? (stop - start) / (double)(steps - 1) : 0.0;
  for (int32_t i = 0; i < steps; i++) {
    double y = (double)i * step;
    y += start;
    if (steps > 1 && i == steps - 1) y = stop;
    sigmas[i] = (float)y;
  }
  double mu = qd_flux_calculate_shift(image_seq_len, c->base_image_seq_len, c->max_image_seq_len, c->base_shift,
                                      c->max_shift);
  if (c->use_dynamic_shifting) {
    /* math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** 1.0): the Python float meets the float32 array, so it is
     * rounded to float32 and every operation is a float32 one; ** 1.0 is the identity. */
    float e = c->time_shift_linear ? (float)mu : (float)exp(mu);
    for (int32_t i = 0; i < steps; i++) {
      float d = 1.0f / sigmas[i];
      d = d - 1.0f;
      float den = e + d;
      sigmas[i] = e / den;
    }
  } else {
    /* shift * sigmas / (1 + (shift - 1) * sigmas), evaluated left to right in float32. */
    float shift = (float)c->shift, shift_m1 = (float)(c->shift - 1.0);
    for (int32_t i = 0; i < steps; i++) {
      float num = shift * sigmas[i];
      float prod = shift_m1 * sigmas[i];
      float den = 1.0f + prod;
      sigmas[i] = num / den;
    }
  }
  if (c->has_shift_terminal) {
    /* one_minus_z = 1 - t; scale = one_minus_z[-1] / (1 - shift_terminal); t = 1 - one_minus_z / scale */
    float last = 1.0f - sigmas[steps - 1];
    float scale = last / (float)(1.0 - c->shift_terminal);
    for (int32_t i = 0; i < steps; i++) {
      float omz = 1.0f - sigmas[i];
      sigmas[i] = 1.0f - omz / scale;
    }
  }
  float ntt = (float)c->num_train_timesteps;
  for (int32_t i = 0; i < steps; i++) {
    timesteps[i] = sigmas[i] * ntt;
    /* FluxPipeline: timestep=timestep / 1000, a literal, whatever num_train_timesteps is. */
    if (model_t) model_t[i] = timesteps[i] / 1000.0f;
  }
  sigmas[steps] = 0.0f;
  return QD_OK;
}

void qd_euler_step(float* x, const float* v, size_t n, float sigma, float sigma_next) {
  /* prev_sample = sample + dt * model_output: PyTorch runs the product and the sum as two kernels, so two
   * roundings (never an FMA). */
  float dt = sigma_next - sigma;
  for (size_t i = 0; i < n; i++) {
    float d = dt * v[i];
    x[i] = x[i] + d;
  }
}
