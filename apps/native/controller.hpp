// Choosing the member of an elastic file token by token (apps/native/chat.cpp): a pinned member,
// or the latency controller of edge/device/controller.py (and apps/web/controller.js): down one
// member as soon as the pace (the mean of the recent decode times without the largest) exceeds
// the target; up one only after `patience` tokens at the current member, when the time predicted
// there (now x the members' measured time ratio; 1.5 when unknown or last seen over 64 steps
// ago) stays under `up_margin` x the target. A step up that fails (a step down within
// `patience` tokens) doubles the wait before the next, up to kMaxWait tokens; one that holds
// resets it.
#pragma once

#include <algorithm>
#include <deque>
#include <map>
#include <string>
#include <vector>

namespace matedge {

class Chooser {
 public:
  virtual ~Chooser() = default;
  virtual std::string member() const = 0;  // the member for the next token
  virtual void observe(double ms) = 0;     // the decode time of the token just made
};

class Pinned : public Chooser {
 public:
  explicit Pinned(std::string m) : m_(std::move(m)) {}
  std::string member() const override { return m_; }
  void observe(double) override {}

 private:
  std::string m_;
};

class LatencyController : public Chooser {
 public:
  LatencyController(std::vector<std::string> members, double target_ms)  // members cheapest first
      : members_(std::move(members)), target_(target_ms), index_(members_.size() - 1) {}

  std::string member() const override { return members_[index_]; }

  void observe(double ms) override {
    const std::string m = member();
    recent_.push_back(ms);
    if (recent_.size() > kWindow) recent_.pop_front();
    ++since_switch_;
    ++step_;
    seen_[m] = {seen_.count(m) ? 0.8 * seen_[m].first + 0.2 * ms : ms, step_};
    if (recent_.size() < 3) return;
    const double now = pace();
    if (probing_ && since_switch_ >= kPatience) {  // the step up held
      probing_ = false;
      wait_ = kPatience;
    }
    if (now > target_ && index_ > 0) {
      if (probing_) wait_ = std::min(2 * wait_, kMaxWait);  // it failed: wait longer
      switch_to(index_ - 1);
      probing_ = false;
    } else if (index_ + 1 < members_.size() && since_switch_ >= wait_) {
      const std::string& up = members_[index_ + 1];
      // a time seen more than kForget steps ago (perhaps under load since gone) predicts nothing
      const bool known = seen_.count(up) && step_ - seen_[up].second <= kForget;
      const double ratio = known ? seen_[up].first / std::max(seen_[m].first, 1e-9) : 1.5;
      if (now * ratio < kUpMargin * target_) {
        switch_to(index_ + 1);
        probing_ = true;
      }
    }
  }

 private:
  // Mean of the recent times without the largest: preempted tokens count, one stall does not.
  double pace() const {
    double sum = 0, top = 0;
    for (double ms : recent_) sum += ms, top = std::max(top, ms);
    return (sum - top) / (recent_.size() - 1);  // observe() calls it with at least 3 times
  }

  static constexpr size_t kWindow = 8, kPatience = 16, kForget = 64, kMaxWait = 256;
  static constexpr double kUpMargin = 0.85;

  void switch_to(size_t i) {
    index_ = i;
    recent_.clear();
    since_switch_ = 0;
  }

  std::vector<std::string> members_;
  double target_;
  size_t index_;
  std::deque<double> recent_;
  size_t since_switch_ = 0;
  size_t wait_ = kPatience;  // tokens at a member before a step up; doubles after a failed one
  bool probing_ = false;     // the last switch was a step up that has not yet held kPatience tokens
  size_t step_ = 0;
  std::map<std::string, std::pair<double, size_t>> seen_;  // average time, step last seen
};

}  // namespace matedge
