/* A simulated accelerator for scripts/benchmarks/bench.py: an external delegate that claims every node
 * of the graph with one kernel whose Invoke sleeps (nanosleep: off the CPU, the way an Edge
 * TPU holds the invoke while the host thread waits) and then writes zeros to the outputs.
 * Goodput under overload then measures the serving process, not the CPU share the harness
 * leaves to the model.
 *
 * Option "ms": milliseconds per invoke (a decimal number, default 4).
 *
 * edged_sim_timeline() hands an in-process harness the CLOCK_MONOTONIC (time.monotonic())
 * start and end of the recent invokes, so the accelerator's idle gaps between them are
 * measured where they happen instead of inferred from Python's side. With the environment
 * variable SIM_DELEGATE_TIMELINE set to a path, the process writes the same record there
 * with ".PID" appended (text, "start_ns end_ns" per line) when it exits, for a daemon measured from outside.
 *
 * Built at bench time: cc -shared -fPIC -O2 -I tests/delegates -o libsim.so sim_delegate.c
 * (tests/delegates/tflite_abi.h declares the slice of TFLite's C ABI used here). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tflite_abi.h"

/* The leading fields of TfLiteTensor (tensorflow/lite/core/c/common.h) and its full size on
 * 64-bit targets, needed to index context->tensors. Kernel prepare checks the layout against
 * every output's dims and byte count and refuses to run when they disagree, so a runtime
 * with another layout fails loudly instead of writing over the wrong memory. */
typedef struct {
  int type;
  void* data;
  TfLiteIntArray* dims;
  float scale;
  int32_t zero_point;
  int allocation_type;
  size_t bytes;
} SimTensorHead;
enum { kSimTensorSize = 112 };

typedef struct {
  long sleep_ns;
} Settings;

enum { kTimelineSize = 1 << 16 };
static int64_t timeline[kTimelineSize][2]; /* (start, end) ns of invoke n % kTimelineSize */
static size_t timeline_next;              /* invokes recorded so far */

static int64_t monotonic_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Copy the last (at most max) invokes' start and end times, oldest first, into out (2 *
 * max values); return how many were copied. Invokes of several interpreters interleave. */
size_t edged_sim_timeline(int64_t* out, size_t max) {
  size_t total = __atomic_load_n(&timeline_next, __ATOMIC_ACQUIRE);
  size_t n = total < max ? total : max;
  if (n > kTimelineSize) n = kTimelineSize;
  for (size_t i = 0; i < n; i++) {
    size_t slot = (total - n + i) % kTimelineSize;
    out[2 * i] = timeline[slot][0];
    out[2 * i + 1] = timeline[slot][1];
  }
  return n;
}

static SimTensorHead* tensor_at(TfLiteContext* context, int index) {
  return (SimTensorHead*)((char*)context->tensors + (size_t)index * kSimTensorSize);
}

static size_t element_size(int type) {  /* TfLiteType values */
  switch (type) {
    case 3: case 6: case 9: return 1;           /* uint8, bool, int8 */
    case 7: case 10: case 17: return 2;         /* int16, float16, uint16 */
    case 1: case 2: case 16: return 4;          /* float32, int32, uint32 */
    case 4: case 8: case 11: case 13: return 8; /* int64, complex64, float64, uint64 */
    default: return 0;
  }
}

static void* kernel_init(TfLiteContext* context, const char* buffer, size_t length) {
  (void)context;
  (void)length;
  return ((const TfLiteDelegateParams*)buffer)->delegate->data_;
}

static TfLiteStatus kernel_prepare(TfLiteContext* context, TfLiteNode* node) {
  for (int i = 0; i < node->outputs->size; i++) {
    int index = node->outputs->data[i];
    if (index < 0 || (size_t)index >= context->tensors_size) return kTfLiteError;
    SimTensorHead* t = tensor_at(context, index);
    size_t size = element_size(t->type);
    if (t->dims == NULL || size == 0) {
      context->ReportError(context, "sim delegate: output %d has an unknown layout", index);
      return kTfLiteError;
    }
    size_t count = 1;
    for (int d = 0; d < t->dims->size; d++) count *= (size_t)t->dims->data[d];
    if (count * size != t->bytes) {
      context->ReportError(context, "sim delegate: TfLiteTensor layout differs from the one "
                           "compiled in (output %d)", index);
      return kTfLiteError;
    }
  }
  return kTfLiteOk;
}

static void write_timeline(void) {
  const char* path = getenv("SIM_DELEGATE_TIMELINE");
  char full[4096];
  if (!path || snprintf(full, sizeof full, "%s.%d", path, (int)getpid()) >= (int)sizeof full) return;
  FILE* f = fopen(full, "w");
  if (!f) return;
  size_t total = __atomic_load_n(&timeline_next, __ATOMIC_ACQUIRE);
  size_t n = total < kTimelineSize ? total : kTimelineSize;
  for (size_t i = 0; i < n; i++) {
    size_t slot = (total - n + i) % kTimelineSize;
    fprintf(f, "%lld %lld\n", (long long)timeline[slot][0], (long long)timeline[slot][1]);
  }
  fclose(f);
}

static TfLiteStatus kernel_invoke(TfLiteContext* context, TfLiteNode* node) {
  const Settings* s = node->user_data;
  int64_t started = monotonic_ns();
  struct timespec t = {s->sleep_ns / 1000000000L, s->sleep_ns % 1000000000L};
  while (nanosleep(&t, &t) != 0) {
  }
  size_t slot = __atomic_fetch_add(&timeline_next, 1, __ATOMIC_ACQ_REL) % kTimelineSize;
  timeline[slot][0] = started;
  timeline[slot][1] = monotonic_ns();
  for (int i = 0; i < node->outputs->size; i++) {
    SimTensorHead* out = tensor_at(context, node->outputs->data[i]);
    if (out->data) memset(out->data, 0, out->bytes);
  }
  return kTfLiteOk;
}

static TfLiteStatus prepare(TfLiteContext* context, TfLiteDelegate* delegate) {
  TfLiteIntArray* plan = NULL;
  if (context->GetExecutionPlan(context, &plan) != kTfLiteOk) return kTfLiteError;
  TfLiteRegistration reg;
  memset(&reg, 0, sizeof reg);
  reg.init = kernel_init;
  reg.prepare = kernel_prepare;
  reg.invoke = kernel_invoke;
  reg.builtin_code = kTfLiteBuiltinDelegate;
  reg.custom_name = "edged_bench_sim_delegate";
  reg.version = 1;
  return context->ReplaceNodeSubsetsWithDelegateKernels(context, reg, plan, delegate);
}

TfLiteDelegate* tflite_plugin_create_delegate(const char* const* keys,
                                              const char* const* values,
                                              size_t num_options, ErrorHandler report) {
  size_t n = EDGED_NUM_OPTIONS(num_options);
  double ms = 4.0;
  for (size_t i = 0; i < n; i++) {
    char* end = NULL;
    if (strcmp(keys[i], "ms") == 0) {
      ms = strtod(values[i], &end);
      if (end == values[i] || *end != '\0' || ms < 0 || ms > 60000) {
        if (report) report("sim delegate: option ms must be a number of milliseconds");
        return NULL;
      }
    } else {
      char message[256];
      snprintf(message, sizeof message, "sim delegate: unknown option '%s'", keys[i]);
      if (report) report(message);
      return NULL;
    }
  }
  Settings* s = calloc(1, sizeof *s);
  TfLiteDelegate* delegate = calloc(1, sizeof *delegate);
  if (!s || !delegate) {
    free(s);
    free(delegate);
    return NULL;
  }
  s->sleep_ns = (long)(ms * 1e6);
  static int registered;
  if (getenv("SIM_DELEGATE_TIMELINE") && !__atomic_exchange_n(&registered, 1, __ATOMIC_ACQ_REL))
    atexit(write_timeline);
  delegate->data_ = s;
  delegate->Prepare = prepare;
  return delegate;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) {
  if (delegate) free(delegate->data_);
  free(delegate);
}
