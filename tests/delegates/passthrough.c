/* An external delegate that accepts its options and claims no node, so the whole model
 * stays on the CPU and must give exactly the outputs it gives with no delegate at all.
 * Option "record": a file the delegate writes every key=value it was given to, so a test
 * can see what edged passed. Any key other than "record", "device" and those starting
 * with "x_" is refused, the way real delegates refuse what they do not know. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tflite_abi.h"

static TfLiteStatus prepare(TfLiteContext* context, TfLiteDelegate* delegate) {
  (void)context;
  (void)delegate;
  return kTfLiteOk;  /* claims nothing */
}

TfLiteDelegate* tflite_plugin_create_delegate(const char* const* keys,
                                              const char* const* values,
                                              size_t num_options, ErrorHandler report) {
  size_t n = EDGED_NUM_OPTIONS(num_options);
  const char* record = NULL;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(keys[i], "record") == 0) {
      record = values[i];
    } else if (strcmp(keys[i], "device") != 0 && strncmp(keys[i], "x_", 2) != 0) {
      char message[256];
      snprintf(message, sizeof message, "passthrough: unknown option '%s'", keys[i]);
      if (report) report(message);
      return NULL;
    }
  }
  if (record) {
    FILE* out = fopen(record, "a");
    if (out) {
      for (size_t i = 0; i < n; i++) fprintf(out, "%s=%s\n", keys[i], values[i]);
      fclose(out);
    }
  }
  TfLiteDelegate* delegate = calloc(1, sizeof *delegate);
  if (delegate) delegate->Prepare = prepare;
  return delegate;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) { free(delegate); }
