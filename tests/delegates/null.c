/* An external delegate whose create returns NULL, as libedgetpu does when it finds no
 * Edge TPU. Option "message": reported through the error callback first (libedgetpu
 * reports nothing, which is the default here too). */
#include <string.h>

#include "tflite_abi.h"

TfLiteDelegate* tflite_plugin_create_delegate(const char* const* keys,
                                              const char* const* values,
                                              size_t num_options, ErrorHandler report) {
  size_t n = EDGED_NUM_OPTIONS(num_options);
  for (size_t i = 0; i < n; i++) {
    if (strcmp(keys[i], "message") == 0 && report) report(values[i]);
  }
  return NULL;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) { (void)delegate; }
