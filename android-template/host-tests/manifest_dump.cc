// Prints the engine config a bundle manifest maps to (DescribeConfig), or the error: checks a
// mobilefer.json without TNN.   manifest_dump BUNDLE_DIR/mobilefer.json
#include <cstdio>
#include <string>

#include "core/config.h"
#include "manifest.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s mobilefer.json\n", argv[0]);
    return 2;
  }
  try {
    const mobilefer::EngineConfig config = manifest::ToEngineConfig(manifest::Load(argv[1]));
    const std::string problem = mobilefer::ValidateConfig(config);
    std::printf("%s", mobilefer::DescribeConfig(config).c_str());
    if (!problem.empty()) {
      std::printf("invalid: %s\n", problem.c_str());
      return 1;
    }
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
  return 0;
}
