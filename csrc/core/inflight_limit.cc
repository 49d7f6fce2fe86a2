#include "inflight_limit.h"

namespace tritonx {

InflightLimit& InflightLimit::Global() {
  // Never destroyed: requests answered during static destruction may still release.
  static InflightLimit* instance = new InflightLimit();
  return *instance;
}

}  // namespace tritonx
