// Tensors that know where they live: the host-bytes rule (tensor_memory.h), where
// the core applies it (Send, batch scatter, shared memory outputs, the response
// cache), and DLPack in both directions (dlpack.h). Without a usable GPU a "GPU"
// tensor here points at an address that faults if read: the tests check that every
// path refuses it with INTERNAL instead. With a GPU, real device memory is used.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "core/batch_io.h"
#include "core/cuda_runtime.h"
#include "core/dlpack.h"
#include "core/infer_request.h"
#include "core/response_cache.h"
#include "core/response_outputs.h"
#include "core/shared_memory_registry.h"
#include "core/tensor_memory.h"
#include "test_util.h"

namespace tritonx {
namespace {

using testing::FloatTensor;
using testing::MakeSpec;

// Never dereferenced: reading it would crash the test.
const char* const kUnreadable = reinterpret_cast<const char*>(uintptr_t{0x10});

Tensor FakeGpuTensor(const std::string& name, size_t floats) {
  Tensor t;
  t.name = name;
  t.dtype = DataType::kFp32;
  t.shape = {static_cast<int64_t>(floats)};
  t.data = kUnreadable;
  t.byte_size = floats * sizeof(float);
  t.memory_type = MemoryType::kGpu;
  t.device_id = 0;
  return t;
}

// A GPU tensor with `values` in real device memory (GPU machines only).
Tensor DeviceTensor(const std::string& name, const std::vector<float>& values) {
  const size_t bytes = values.size() * sizeof(float);
  void* device = CudaDeviceAlloc(0, bytes);
  EXPECT_NE(device, nullptr);
  EXPECT_EQ(CudaCopyBlocking(device, values.data(), bytes), "");
  Tensor t;
  t.name = name;
  t.dtype = DataType::kFp32;
  t.shape = {static_cast<int64_t>(values.size())};
  t.data = static_cast<const char*>(device);
  t.byte_size = bytes;
  t.owner = std::shared_ptr<void>(device, CudaDeviceFree);
  t.memory_type = MemoryType::kGpu;
  return t;
}

std::vector<float> Floats(const Tensor& t) {
  std::vector<float> out(t.byte_size / sizeof(float));
  std::memcpy(out.data(), t.data, t.byte_size);
  return out;
}

TEST(TensorMemory, HostTensorsAreTheirOwnHostView) {
  Tensor t = FloatTensor("x", {4}, 2.f);
  EXPECT_EQ(t.memory_type,
            MemoryType::kCpu);  // every existing producer: host, device 0
  EXPECT_EQ(t.device_id, 0);
  Tensor host;
  ASSERT_TRUE(HostTensor(t, &host).ok());
  EXPECT_EQ(host.data, t.data);  // no copy
  std::vector<float> dst(4);
  ASSERT_TRUE(CopyTensorBytes(t, reinterpret_cast<char*>(dst.data())).ok());
  EXPECT_EQ(dst, std::vector<float>(4, 2.f));
}

TEST(TensorMemory, GpuTensorsAreNeverReadAsHostMemoryWithoutCuda) {
  if (CudaUsable()) GTEST_SKIP() << "a GPU is usable: covered by the device tests";
  Tensor gpu = FakeGpuTensor("OUTPUT0", 4);
  Tensor host;
  Status status = HostTensor(gpu, &host);
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  EXPECT_NE(status.message().find("'OUTPUT0'"), std::string::npos) << status.message();
  std::vector<char> dst(16);
  EXPECT_EQ(CopyTensorBytes(gpu, dst.data()).code(), StatusCode::kInternal);

  // Send: a response whose output is on the GPU reaches a host consumer as an
  // INTERNAL error, not as bytes read from a device pointer.
  auto request = std::make_shared<InferenceRequest>();
  request->spec = std::make_shared<ModelSpec>(MakeSpec(0));
  std::unique_ptr<InferenceResponse> got;
  request->SetResponseCallback(
      [&](std::unique_ptr<InferenceResponse> r) { got = std::move(r); });
  auto response = std::make_unique<InferenceResponse>();
  response->outputs.push_back(gpu);
  ASSERT_TRUE(request->Send(std::move(response), kResponseFlagFinal).ok());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status.code(), StatusCode::kInternal);
  EXPECT_TRUE(got->outputs.empty());

  // Into a system shared memory region: refused the same way.
  std::vector<char> region(16);
  ShmOutput target;
  target.name = "OUTPUT0";
  target.region = "r";
  target.span.data = region.data();
  target.span.byte_size = region.size();
  Status shm = WriteShmOutput(target, gpu);
  EXPECT_EQ(shm.code(), StatusCode::kInternal);
  EXPECT_NE(shm.message().find("shared memory region 'r'"), std::string::npos);

  // The response cache keeps host bytes only: such a response is not cached.
  LocalResponseCache cache(1 << 20);
  InferenceResponse cached;
  cached.outputs.push_back(gpu);
  EXPECT_EQ(cache.Insert(42, cached).code(), StatusCode::kInternal);  // logged
  EXPECT_EQ(cache.Lookup(42), nullptr);
}

TEST(TensorMemory, OutputsKeptOnTheDeviceAreLeftAlone) {
  // A consumer that takes device tensors (a CUDA shm target, a BLS caller) gets the
  // GPU tensor as produced: nothing reads it, nothing copies it.
  Tensor gpu = FakeGpuTensor("OUTPUT0", 4);
  InferenceRequest named;
  named.device_outputs.push_back("OUTPUT0");
  InferenceRequest any;
  any.device_outputs_any = true;
  for (const InferenceRequest* request : {&named, &any}) {
    InferenceResponse response;
    response.outputs.push_back(gpu);
    ASSERT_TRUE(PlaceOutputs(*request, &response).ok());
    EXPECT_EQ(response.outputs[0].data, kUnreadable);
    EXPECT_EQ(response.outputs[0].memory_type, MemoryType::kGpu);
  }
  EXPECT_FALSE(InferenceRequest().KeepsOnDevice("OUTPUT0"));

  // Batched: slices of a GPU output keep its memory type and device (pointer
  // arithmetic only) when every request keeps it on the device.
  ModelSpec spec = MakeSpec(8);
  Batch batch;
  for (int i = 0; i < 2; ++i) {
    auto r = std::make_shared<InferenceRequest>();
    r->device_outputs_any = true;
    r->batch_size = 1;
    batch.requests.push_back(r);
  }
  batch.total_batch_size = 2;
  Tensor batched = FakeGpuTensor("OUTPUT0", 8);
  batched.shape = {2, 4};
  batched.device_id = 3;
  batch.gathered_outputs.push_back(batched);
  ASSERT_TRUE(ScatterOutputs(spec, &batch).ok());
  ASSERT_EQ(batch.responses.size(), 2u);
  const Tensor& second = batch.responses[1]->outputs[0];
  EXPECT_EQ(second.data, kUnreadable + 16);
  EXPECT_EQ(second.memory_type, MemoryType::kGpu);
  EXPECT_EQ(second.device_id, 3);
}

TEST(DLPack, DescribesHostTensorsWithoutCopying) {
  std::vector<int32_t> values = {1, 2, 3, 4, 5, 6};
  int64_t shape[] = {2, 3};
  DLTensor dl{values.data(), {kDLCPU, 0}, 2, {kDLInt, 32, 1}, shape, nullptr, 4};
  Tensor t;
  ASSERT_TRUE(DescribeDLTensor(dl, "x", &t).ok());
  EXPECT_EQ(t.dtype, DataType::kInt32);
  EXPECT_EQ(t.shape, (Shape{2, 3}));
  EXPECT_EQ(t.byte_size, 24u);
  EXPECT_EQ(t.data, reinterpret_cast<const char*>(values.data()) + 4);  // byte_offset
  EXPECT_EQ(t.memory_type, MemoryType::kCpu);

  dl.device = {kDLCUDAHost, 1};
  ASSERT_TRUE(DescribeDLTensor(dl, "x", &t).ok());
  EXPECT_EQ(t.memory_type, MemoryType::kCpuPinned);
  EXPECT_TRUE(t.on_host());

  struct Case {
    DLDataType dtype;
    DataType want;
  };
  for (const Case& c : {Case{{kDLBool, 8, 1}, DataType::kBool},
                        Case{{kDLBfloat, 16, 1}, DataType::kBf16},
                        Case{{kDLFloat, 16, 1}, DataType::kFp16},
                        Case{{kDLUInt, 64, 1}, DataType::kUint64},
                        Case{{kDLFloat, 32, 4}, DataType::kInvalid},
                        Case{{5 /* complex */, 64, 1}, DataType::kInvalid}}) {
    dl.dtype = c.dtype;
    Status status = DescribeDLTensor(dl, "x", &t);
    if (c.want == DataType::kInvalid) {
      EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
      EXPECT_NE(status.message().find("unsupported DLPack data type"),
                std::string::npos);
    } else {
      ASSERT_TRUE(status.ok()) << status.message();
      EXPECT_EQ(t.dtype, c.want);
    }
  }
}

TEST(DLPack, RefusesStridedLayoutsAndUnknownDevicesAndCopiesOnRequest) {
  std::vector<float> values = {0, 1, 2, 3, 4, 5};  // a 2x3 matrix, read transposed
  int64_t shape[] = {3, 2};
  int64_t strides[] = {1, 3};
  DLTensor dl{values.data(), {kDLCPU, 0}, 2, {kDLFloat, 32, 1}, shape, strides, 0};
  Tensor t;
  bool strided = false;
  Status status = DescribeDLTensor(dl, "x", &t, &strided);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_TRUE(strided);
  EXPECT_NE(status.message().find("not contiguous"), std::string::npos);

  ASSERT_TRUE(CompactHostDLTensor(dl, "x", &t).ok());
  EXPECT_EQ(Floats(t), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_TRUE(t.owner);

  int64_t unit_strides[] = {2, 1};  // compact strides given explicitly: no copy
  dl.strides = unit_strides;
  ASSERT_TRUE(CompactHostDLTensor(dl, "x", &t).ok());
  EXPECT_EQ(t.data, reinterpret_cast<const char*>(values.data()));

  dl.device = {10 /* ROCm */, 0};
  status = DescribeDLTensor(dl, "x", &t);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_NE(status.message().find("only CPU and CUDA"), std::string::npos);
  dl.device = {kDLCUDA, 0};
  status = DescribeDLTensor(dl, "x", &t);
  if (CudaUsable()) {
    EXPECT_TRUE(status.ok());
    EXPECT_EQ(t.memory_type, MemoryType::kGpu);
  } else {
    EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
    EXPECT_NE(status.message().find("no usable CUDA device"), std::string::npos);
  }
}

TEST(DLPack, ExportViewsTheTensorAndHoldsItsOwnerUntilDeleted) {
  Tensor t = FloatTensor("x", {2, 2}, 7.f);
  std::weak_ptr<const void> owner = t.owner;
  DLManagedTensor* managed = nullptr;
  ASSERT_TRUE(ExportDLPack(t, &managed).ok());
  t = Tensor();  // only the export holds the bytes now
  EXPECT_FALSE(owner.expired());
  Tensor back;
  ASSERT_TRUE(DescribeDLTensor(managed->dl_tensor, "x", &back).ok());
  EXPECT_EQ(Floats(back), std::vector<float>(4, 7.f));
  EXPECT_EQ(back.shape, (Shape{2, 2}));
  managed->deleter(managed);
  EXPECT_TRUE(owner.expired());

  DLManagedTensorVersioned* versioned = nullptr;
  Tensor gpu = FakeGpuTensor("g", 2);
  gpu.device_id = 1;
  ASSERT_TRUE(ExportDLPackVersioned(gpu, &versioned).ok());
  EXPECT_EQ(versioned->version.major, 1u);
  EXPECT_EQ(versioned->dl_tensor.device.device_type, kDLCUDA);
  EXPECT_EQ(versioned->dl_tensor.device.device_id, 1);
  EXPECT_EQ(versioned->flags, 0u);
  versioned->deleter(versioned);
  // A read-only producer's bytes are exported read-only; describing a DLTensor
  // (which has no flags) starts writable again.
  Tensor kept = FloatTensor("k", {2}, 1.f);
  kept.read_only = true;
  ASSERT_TRUE(ExportDLPackVersioned(kept, &versioned).ok());
  EXPECT_EQ(versioned->flags, kDLPackFlagReadOnly);
  ASSERT_TRUE(DescribeDLTensor(versioned->dl_tensor, "k", &kept).ok());
  EXPECT_FALSE(kept.read_only);
  versioned->deleter(versioned);

  Tensor bytes;
  bytes.name = "s";
  bytes.dtype = DataType::kBytes;
  EXPECT_EQ(ExportDLPack(bytes, &managed).code(), StatusCode::kInvalidArg);
}

// --- on a GPU (scripts/gpu-check.sh) ---

TEST(TensorMemoryOnGpu, HostCopiesAndDeviceToDeviceShmWrites) {
  if (!CudaUsable()) GTEST_SKIP() << "no usable GPU";
  const std::vector<float> values = {1.5f, -2.f, 3.25f, 4.f};
  Tensor gpu = DeviceTensor("OUTPUT0", values);
  Tensor host;
  auto arena = TensorArena::Create(1 << 20, true);
  ASSERT_TRUE(HostTensor(gpu, &host, arena.get()).ok());
  EXPECT_EQ(host.memory_type, MemoryType::kCpuPinned);
  EXPECT_EQ(Floats(host), values);

  // Send to a host consumer: copied once; kept on the device when named.
  for (bool keep : {false, true}) {
    InferenceRequest request;
    if (keep) request.device_outputs.push_back("OUTPUT0");
    InferenceResponse response;
    response.outputs.push_back(gpu);
    ASSERT_TRUE(PlaceOutputs(request, &response).ok());
    EXPECT_EQ(response.outputs[0].on_host(), !keep);
    if (!keep) {
      EXPECT_EQ(Floats(response.outputs[0]), values);
    }
  }

  // A GPU output into a CUDA region: device -> device.
  Tensor region = DeviceTensor("region", std::vector<float>(4, 0.f));
  ShmOutput target;
  target.name = "OUTPUT0";
  target.region = "cuda";
  target.span.data = const_cast<char*>(region.data);
  target.span.byte_size = region.byte_size;
  target.span.device = 0;
  ASSERT_TRUE(WriteShmOutput(target, gpu).ok());
  ASSERT_TRUE(HostTensor(region, &host).ok());
  EXPECT_EQ(Floats(host), values);

  // A batched GPU output: one copy into the arena, slices on the host.
  Batch batch;
  for (int i = 0; i < 2; ++i) {
    auto r = std::make_shared<InferenceRequest>();
    r->batch_size = 1;
    batch.requests.push_back(r);
  }
  batch.total_batch_size = 2;
  Tensor batched = DeviceTensor("OUTPUT0", {1, 2, 3, 4, 5, 6, 7, 8});
  batched.shape = {2, 4};
  batch.gathered_outputs.push_back(batched);
  ASSERT_TRUE(ScatterOutputs(MakeSpec(8), &batch, arena.get()).ok());
  EXPECT_EQ(Floats(batch.responses[1]->outputs[0]), (std::vector<float>{5, 6, 7, 8}));
  EXPECT_TRUE(batch.responses[1]->outputs[0].on_host());
}

}  // namespace
}  // namespace tritonx
