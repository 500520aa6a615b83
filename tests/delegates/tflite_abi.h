/* The slice of TensorFlow Lite's C ABI (tensorflow/lite/core/c/common.h) that the test
 * delegates touch, written out so the tests need no TensorFlow headers. Only leading
 * fields are declared where the runtime reads a prefix; TfLiteRegistration is declared
 * in full (up to inplace_operator) because ReplaceNodeSubsetsWithDelegateKernels takes it
 * by value and a newer runtime reads every field it knows. These structs are
 * "semi-ABI stable": fields are only ever appended. */
#ifndef EDGED_TEST_TFLITE_ABI_H
#define EDGED_TEST_TFLITE_ABI_H

#include <stddef.h>
#include <stdint.h>

typedef enum { kTfLiteOk = 0, kTfLiteError = 1, kTfLiteDelegateError = 2 } TfLiteStatus;
enum { kTfLiteBuiltinDelegate = 51 };

typedef struct TfLiteIntArray { int size; int data[]; } TfLiteIntArray;
typedef struct TfLiteNode {
  TfLiteIntArray* inputs;
  TfLiteIntArray* outputs;
  TfLiteIntArray* intermediates;
  TfLiteIntArray* temporaries;
  void* user_data;  /* what the kernel's init returned */
  /* ... more fields the test delegates never touch */
} TfLiteNode;
typedef struct TfLiteTensor TfLiteTensor;  /* opaque here */
struct TfLiteDelegate;
struct TfLiteRegistration;

typedef struct TfLiteContext {
  size_t tensors_size;
  TfLiteStatus (*GetExecutionPlan)(struct TfLiteContext*, TfLiteIntArray** plan);
  TfLiteTensor* tensors;
  void* impl_;
  TfLiteStatus (*ResizeTensor)(struct TfLiteContext*, TfLiteTensor*, TfLiteIntArray*);
  void (*ReportError)(struct TfLiteContext*, const char* msg, ...);
  TfLiteStatus (*AddTensors)(struct TfLiteContext*, int, int*);
  TfLiteStatus (*GetNodeAndRegistration)(struct TfLiteContext*, int, TfLiteNode**,
                                         struct TfLiteRegistration**);
  TfLiteStatus (*ReplaceNodeSubsetsWithDelegateKernels)(
      struct TfLiteContext*, struct TfLiteRegistration registration,
      const TfLiteIntArray* nodes_to_replace, struct TfLiteDelegate* delegate);
  /* ... more fields the test delegates never touch */
} TfLiteContext;

typedef struct TfLiteRegistration {
  void* (*init)(TfLiteContext*, const char* buffer, size_t length);
  void (*free)(TfLiteContext*, void* buffer);
  TfLiteStatus (*prepare)(TfLiteContext*, TfLiteNode*);
  TfLiteStatus (*invoke)(TfLiteContext*, TfLiteNode*);
  const char* (*profiling_string)(const TfLiteContext*, const TfLiteNode*);
  int32_t builtin_code;
  const char* custom_name;
  int version;
  void* registration_external;  /* must stay NULL: else the runtime routes through it */
  void* (*async_kernel)(TfLiteContext*, TfLiteNode*);
  uint64_t inplace_operator;
} TfLiteRegistration;

typedef struct TfLiteDelegate {
  void* data_;
  TfLiteStatus (*Prepare)(TfLiteContext*, struct TfLiteDelegate*);
  void* CopyFromBufferHandle;
  void* CopyToBufferHandle;
  void* FreeBufferHandle;
  int64_t flags;
  void* opaque_delegate_builder;  /* must stay NULL: else Prepare above is ignored */
} TfLiteDelegate;

/* What a delegate kernel's init receives as its buffer (leading field only). */
typedef struct TfLiteDelegateParams {
  struct TfLiteDelegate* delegate;
} TfLiteDelegateParams;

/* The external delegate plugin ABI (tensorflow/lite/delegates/external). */
typedef void (*ErrorHandler)(const char*);
TfLiteDelegate* tflite_plugin_create_delegate(const char* const* keys,
                                              const char* const* values,
                                              size_t num_options, ErrorHandler report);
void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate);

/* Python's load_delegate passes num_options as a C int through ctypes; only its low 32 bits
 * are meaningful. */
#define EDGED_NUM_OPTIONS(n) ((size_t)((n) & 0xffffffffu))

#endif
