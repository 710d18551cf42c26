// A mobilefer::Network that replays recorded outputs (from the golden vectors) and, optionally,
// checks that each input equals the recorded one. Test-only; header-only.
#ifndef MOBILEFER_HOST_TESTS_REPLAY_NETWORK_H_
#define MOBILEFER_HOST_TESTS_REPLAY_NETWORK_H_

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/network.h"

namespace golden {

class ReplayNetwork : public mobilefer::Network {
 public:
  struct Step {
    std::vector<mobilefer::Tensor> outputs;  // one per output name
    std::vector<float> expected_input;       // empty: not checked
  };

  // `cycle`: start over after the last step (otherwise an extra call is an error).
  ReplayNetwork(std::vector<std::string> output_names, std::vector<Step> steps, std::string label, bool cycle)
      : names_(std::move(output_names)), steps_(std::move(steps)), label_(std::move(label)), cycle_(cycle) {}

  bool Run(const mobilefer::Tensor& input, const std::vector<std::string>& output_names,
           std::vector<mobilefer::Tensor>* outputs, std::string* error) override {
    if (output_names != names_) {
      *error = label_ + ": asked for unexpected output names";
      return false;
    }
    if (steps_.empty() || (!cycle_ && calls_ >= steps_.size())) {
      *error = label_ + ": more calls than recorded steps";
      return false;
    }
    const Step& step = steps_[calls_ % steps_.size()];
    ++calls_;
    if (!step.expected_input.empty()) {
      if (step.expected_input.size() != input.data.size()) {
        *error = label_ + ": input has " + std::to_string(input.data.size()) + " values, recorded " +
                 std::to_string(step.expected_input.size());
        return false;
      }
      for (size_t i = 0; i < input.data.size(); ++i) {
        max_input_diff_ = std::max(max_input_diff_, static_cast<double>(std::fabs(input.data[i] - step.expected_input[i])));
      }
    }
    *outputs = step.outputs;
    return true;
  }

  std::string Describe() const override { return "replay " + label_; }
  size_t calls() const { return calls_; }
  double max_input_diff() const { return max_input_diff_; }

 private:
  std::vector<std::string> names_;
  std::vector<Step> steps_;
  std::string label_;
  bool cycle_;
  size_t calls_ = 0;
  double max_input_diff_ = 0.0;
};

// Non-owning view that forwards to a ReplayNetwork (so a test keeps access after handing it over).
class NetworkRef : public mobilefer::Network {
 public:
  explicit NetworkRef(mobilefer::Network* target) : target_(target) {}
  bool Run(const mobilefer::Tensor& input, const std::vector<std::string>& names,
           std::vector<mobilefer::Tensor>* outputs, std::string* error) override {
    return target_->Run(input, names, outputs, error);
  }
  std::string Describe() const override { return target_->Describe(); }

 private:
  mobilefer::Network* target_;
};

}  // namespace golden

#endif  // MOBILEFER_HOST_TESTS_REPLAY_NETWORK_H_
