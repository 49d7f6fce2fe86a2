// What --http-max-input-size bounds (core/http_messages.h), at its edges: both HTTP
// engines refuse bodies with these texts, so a boundary moved here moves in both.
#include <cstdint>
#include <limits>
#include <string>

#include "core/http_messages.h"
#include "gtest/gtest.h"

namespace tritonx {
namespace {

constexpr uint64_t kLimit = 1000;
const std::string kRaise = " bytes. Use --http-max-input-size to increase the limit.";

TEST(HttpInputSize, AJsonBodyIsBoundedWhole) {
  EXPECT_EQ(HttpInputSizeError(-1, kLimit, kLimit), "");
  EXPECT_EQ(
      HttpInputSizeError(-1, kLimit + 1, kLimit),
      "Request JSON size of 1001 bytes exceeds the maximum allowed value of 1000" +
          kRaise);
}

TEST(HttpInputSize, BinaryDataAfterTheJsonIsNotBounded) {
  EXPECT_EQ(HttpInputSizeError(kLimit, uint64_t{1} << 40, kLimit), "");
  EXPECT_EQ(
      HttpInputSizeError(kLimit + 1, kLimit + 1, kLimit),
      "Request JSON size of 1001 bytes exceeds the maximum allowed value of 1000" +
          kRaise);
}

TEST(HttpInputSize, ARawBodyIsBoundedWhole) {
  EXPECT_EQ(HttpInputSizeError(0, kLimit, kLimit), "");
  EXPECT_EQ(HttpInputSizeError(0, kLimit + 1, kLimit),
            "Raw input has a byte_size (1001 bytes) that exceeds the maximum allowed "
            "value of 1000" +
                kRaise);
}

TEST(HttpInputSize, TheCapIsTwiceTheLimitAndAtLeastTritonsIntBound) {
  constexpr uint64_t kIntMax = std::numeric_limits<int32_t>::max();
  EXPECT_EQ(HttpBodyCap(kLimit), kIntMax);
  EXPECT_EQ(HttpBodyCap(64 << 20), kIntMax);
  EXPECT_EQ(HttpBodyCap(uint64_t{3} << 30), uint64_t{6} << 30);
  // evhttp takes the cap as a signed size: a huge limit saturates, never wraps.
  EXPECT_EQ(HttpBodyCap(std::numeric_limits<uint64_t>::max()),
            static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
  EXPECT_EQ(
      HttpBodyTooLarge(kIntMax),
      "Request body size exceeds the maximum allowed value of 2147483647" + kRaise);
}

TEST(HttpOriginForm, AnAbsoluteTargetIsRoutedByItsPath) {
  EXPECT_EQ(HttpOriginForm("http://h:8000/v2/health/ready?x=1"),
            "/v2/health/ready?x=1");
  EXPECT_EQ(HttpOriginForm("HTTPS://h/v2"), "/v2");
  EXPECT_EQ(HttpOriginForm("svn+ssh://h/a"), "/a");  // any scheme, as Triton
  EXPECT_EQ(HttpOriginForm("http://h?q"), "?q");     // no path: no route matches
  EXPECT_EQ(HttpOriginForm("http://h"), "");
  // Anything else is left as it is.
  EXPECT_EQ(HttpOriginForm("/v2/health/ready"), "/v2/health/ready");
  EXPECT_EQ(HttpOriginForm("//h/v2"), "//h/v2");
  EXPECT_EQ(HttpOriginForm("http:/v2"), "http:/v2");
  EXPECT_EQ(HttpOriginForm("1http://h/v2"), "1http://h/v2");
  EXPECT_EQ(HttpOriginForm("*"), "*");
  EXPECT_EQ(HttpOriginForm(""), "");
}

}  // namespace
}  // namespace tritonx
