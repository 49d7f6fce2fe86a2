// generate_json::ShapeFor: the shape Triton's generate gives a value of N elements
// (the walk itself is tested end to end on both HTTP engines,
// tests/frontends/test_http_generate.py, against the reference Triton too).
#include <gtest/gtest.h>

#include "core/generate_json.h"

namespace tritonx {
namespace {

using generate_json::ShapeFor;

TensorSpec Input(Shape dims) {
  TensorSpec spec;
  spec.name = "x";
  spec.dtype = DataType::kFp32;
  spec.dims = std::move(dims);
  return spec;
}

TEST(GenerateShape, FixedDimsMustHoldEveryElement) {
  Shape shape;
  EXPECT_TRUE(ShapeFor(Input({2, 2}), false, 4, &shape));
  EXPECT_EQ(shape, (Shape{2, 2}));
  EXPECT_FALSE(ShapeFor(Input({2, 2}), false, 3, &shape));
  EXPECT_FALSE(ShapeFor(Input({1}), false, 2, &shape));
}

TEST(GenerateShape, InnermostVariableDimTakesWhatIsLeft) {
  Shape shape;
  EXPECT_TRUE(ShapeFor(Input({-1, -1, 2}), false, 6, &shape));
  EXPECT_EQ(shape, (Shape{1, 3, 2}));
  EXPECT_TRUE(ShapeFor(Input({-1}), false, 0, &shape));
  EXPECT_EQ(shape, (Shape{0}));
}

TEST(GenerateShape, BatchDimIsOneNeverTheElementCount) {
  Shape shape;
  EXPECT_TRUE(ShapeFor(Input({-1}), true, 5, &shape));
  EXPECT_EQ(shape, (Shape{1, 5}));
  EXPECT_TRUE(ShapeFor(Input({2}), true, 4, &shape));  // the batch dim takes 2
  EXPECT_EQ(shape, (Shape{2, 2}));
}

TEST(GenerateShape, ZeroDimsTakeOnlyNoElements) {
  Shape shape;
  EXPECT_TRUE(ShapeFor(Input({0, 3}), false, 0, &shape));
  EXPECT_EQ(shape, (Shape{0, 3}));
  EXPECT_FALSE(ShapeFor(Input({0}), false, 1, &shape));
}

}  // namespace
}  // namespace tritonx
