// Creating an Engine with a real inference runtime. The JNI bridge calls CreateEngine and otherwise
// only talks to the abstract mobilefer::Engine, so it compiles without TNN.
//
// Implementations: tnn_backend.cc (the app, and host-tests/run_engine_main.cc with
// MOBILEFER_WITH_TNN=ON); host-tests provide a replay implementation for the JNI test.
#ifndef MOBILEFER_ENGINE_FACTORY_H_
#define MOBILEFER_ENGINE_FACTORY_H_

#include <memory>
#include <string>

#include "core/config.h"
#include "core/engine.h"

namespace mobilefer {

// One network's files, as contents (TNN's ModelConfig takes contents, not paths).
struct ModelData {
  std::string proto;  // .tnnproto text
  std::string model;  // .tnnmodel bytes
};

enum class Precision { kHigh = 0, kNormal = 1, kLow = 2 };

struct RuntimeOptions {
  bool use_gpu = false;             // OpenCL; falls back to the CPU when the GPU instance cannot be created
  int num_threads = 0;              // CPU threads, <= 0 keeps the runtime's default
  Precision precision = Precision::kHigh;  // kHigh: fp32 (parity with Python); kNormal may use fp16 on ARMv8.2
};

// Creates the engine; returns nullptr and sets `error` on failure. `error` is also set (to a warning)
// when the engine was created on the CPU after the GPU failed; Engine::Describe() says what runs.
std::unique_ptr<Engine> CreateEngine(const EngineConfig& config, const ModelData& detector,
                                     const ModelData& classifier, const RuntimeOptions& options,
                                     std::string* error);

}  // namespace mobilefer

#endif  // MOBILEFER_ENGINE_FACTORY_H_
