/* An external delegate that claims every node of the graph with one kernel that fails when
 * invoked, as an accelerator does when its device drops off the bus.
 * Options:
 *   action   error (default): Invoke returns kTfLiteError;
 *            hang: Invoke sleeps hang_ms, then returns kTfLiteError;
 *            slow: Invoke sleeps hang_ms, then returns kTfLiteOk (outputs untouched);
 *            abort: Invoke calls abort(), as a fatal USB transfer error does.
 *   hang_ms  for actions hang and slow (default 60000).
 *   flag     a file path: the delegate claims nodes only while this file exists, else it
 *            leaves the graph on the CPU, so a test can make the device "come back". */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tflite_abi.h"

typedef struct {
  char action[16];
  long hang_ms;
  char flag[1024];
} Settings;

/* The kernel finds its delegate's settings through the params init receives. */
static void* kernel_init(TfLiteContext* context, const char* buffer, size_t length) {
  (void)context;
  (void)length;
  return ((const TfLiteDelegateParams*)buffer)->delegate->data_;
}

static TfLiteStatus kernel_invoke(TfLiteContext* context, TfLiteNode* node) {
  const Settings* s = node->user_data;
  if (strcmp(s->action, "abort") == 0) abort();
  if (strcmp(s->action, "hang") == 0 || strcmp(s->action, "slow") == 0) {
    struct timespec t = {s->hang_ms / 1000, (s->hang_ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
    if (s->action[0] == 's') return kTfLiteOk;
  }
  context->ReportError(context, "failing delegate: device error (action %s)", s->action);
  return kTfLiteError;
}

static TfLiteStatus kernel_prepare(TfLiteContext* context, TfLiteNode* node) {
  (void)context;
  (void)node;
  return kTfLiteOk;
}

static TfLiteStatus prepare(TfLiteContext* context, TfLiteDelegate* delegate) {
  Settings* s = delegate->data_;
  if (s->flag[0] && access(s->flag, F_OK) != 0) return kTfLiteOk;  /* "healthy": claim nothing */
  TfLiteIntArray* plan = NULL;
  if (context->GetExecutionPlan(context, &plan) != kTfLiteOk) return kTfLiteError;
  TfLiteRegistration reg;
  memset(&reg, 0, sizeof reg);
  reg.init = kernel_init;
  reg.prepare = kernel_prepare;
  reg.invoke = kernel_invoke;
  reg.builtin_code = kTfLiteBuiltinDelegate;
  reg.custom_name = "edged_failing_delegate";
  reg.version = 1;
  return context->ReplaceNodeSubsetsWithDelegateKernels(context, reg, plan, delegate);
}

TfLiteDelegate* tflite_plugin_create_delegate(const char* const* keys,
                                              const char* const* values,
                                              size_t num_options, ErrorHandler report) {
  size_t n = EDGED_NUM_OPTIONS(num_options);
  Settings* s = calloc(1, sizeof *s);
  if (!s) return NULL;
  strcpy(s->action, "error");
  s->hang_ms = 60000;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(keys[i], "action") == 0) {
      strncpy(s->action, values[i], sizeof s->action - 1);
    } else if (strcmp(keys[i], "hang_ms") == 0) {
      s->hang_ms = strtol(values[i], NULL, 10);
    } else if (strcmp(keys[i], "flag") == 0) {
      strncpy(s->flag, values[i], sizeof s->flag - 1);
    } else {
      if (report) report("failing: unknown option");
      free(s);
      return NULL;
    }
  }
  TfLiteDelegate* delegate = calloc(1, sizeof *delegate);
  if (!delegate) {
    free(s);
    return NULL;
  }
  delegate->data_ = s;
  delegate->Prepare = prepare;
  return delegate;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) {
  if (delegate) free(delegate->data_);
  free(delegate);
}
