// ModelRegistry: lookup by name and version with Triton's messages.
#include <gtest/gtest.h>

#include "core/model_registry.h"
#include "test_util.h"

namespace tritonx {
namespace {

using testing::MakeSpec;

std::shared_ptr<Model> MakeModel(const std::string& name, int64_t version) {
  ModelSpec spec = MakeSpec(8, {4}, name);
  spec.version = version;
  return std::make_shared<Model>(spec, SchedulerConfig(),
                                 std::vector<std::shared_ptr<Executor>>());
}

TEST(ModelRegistry, FindsHighestVersionByDefault) {
  ModelRegistry registry;
  registry.Add(MakeModel("m", 1));
  registry.Add(MakeModel("m", 3));
  registry.Add(MakeModel("m", 2));
  std::shared_ptr<Model> found;
  ASSERT_TRUE(registry.Find("m", "", &found).ok());
  EXPECT_EQ(found->spec().version, 3);
  ASSERT_TRUE(registry.Find("m", "2", &found).ok());
  EXPECT_EQ(found->spec().version, 2);
  EXPECT_EQ(registry.All().size(), 3u);
}

TEST(ModelRegistry, UnknownModelMessages) {
  ModelRegistry registry;
  std::shared_ptr<Model> found;
  Status status = registry.Find("nope", "", &found);
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "Request for unknown model: 'nope' is not found");

  registry.SetKnown({"", "loading"}, true);
  status = registry.Find("loading", "", &found);
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_EQ(status.message(),
            "Request for unknown model: 'loading' has no available versions");
  registry.SetKnown({"", "loading"}, false);
  EXPECT_EQ(registry.Find("loading", "", &found).message(),
            "Request for unknown model: 'loading' is not found");
}

TEST(ModelRegistry, ServerNotReadyRefusesEveryLookup) {
  ModelRegistry registry;
  registry.Add(MakeModel("m", 1));
  registry.SetServerNotReady();
  std::shared_ptr<Model> found;
  for (const Status& status :
       {registry.Find("m", "", &found), registry.Find("nope", "1", &found),
        registry.FindIn({"", "m"}, "1", &found)}) {
    EXPECT_EQ(status.code(), StatusCode::kUnavailable);
    EXPECT_EQ(status.message(), "Server not ready");
  }
  EXPECT_EQ(found, nullptr);
}

TEST(ModelRegistry, VersionMessages) {
  ModelRegistry registry;
  registry.Add(MakeModel("m", 1));
  std::shared_ptr<Model> found;
  Status status = registry.Find("m", "7", &found);
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "Request for unknown model: 'm' version 7 is not found");
  status = registry.Find("m", "x1", &found);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            "failed to get model version from specified version string 'x1' (details: "
            "stol), version should be an integral value > 0");
  // Read as std::stoll does: what follows the digits is ignored; a negative
  // version has its own words; the version is read before the name.
  EXPECT_TRUE(registry.Find("m", "1x", &found).ok());
  EXPECT_EQ(registry.Find("nope", "-1", &found).message(),
            "invalid model version specified '-1' , version should be an integral "
            "value > 0");
  EXPECT_EQ(registry.Find("m", "007", &found).message(),
            "Request for unknown model: 'm' version 7 is not found");
}

TEST(ModelRegistry, RemoveKeepsTheModelKnown) {
  ModelRegistry registry;
  std::shared_ptr<Model> model = MakeModel("m", 1);
  registry.Add(model);
  registry.Remove({"", "m"}, 1);
  registry.Remove({"", "m"}, 1);  // harmless twice
  std::shared_ptr<Model> found;
  EXPECT_EQ(registry.Find("m", "", &found).message(),
            "Request for unknown model: 'm' has no available versions");
  EXPECT_TRUE(registry.All().empty());
  // The caller's reference still works after removal.
  EXPECT_EQ(model->spec().name, "m");
}

TEST(ModelRegistry, RemovedVersionIsNotAtReadyState) {
  // Triton keeps an unloaded version's state: asking for it by number says so.
  ModelRegistry registry;
  registry.Add(MakeModel("m", 1));
  registry.Add(MakeModel("m", 2));
  registry.Remove({"", "m"}, 1);
  std::shared_ptr<Model> found;
  Status status = registry.Find("m", "1", &found);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(status.message(),
            "Request for unknown model: 'm' version 1 is not at ready state");
  EXPECT_EQ(registry.Find("m", "3", &found).message(),
            "Request for unknown model: 'm' version 3 is not found");
  registry.Remove({"", "m"}, 2);  // none left: still the version's own state
  EXPECT_EQ(registry.Find("m", "2", &found).code(), StatusCode::kUnavailable);
  EXPECT_EQ(registry.Find("m", "", &found).message(),
            "Request for unknown model: 'm' has no available versions");
  registry.Add(MakeModel("m", 1));  // served again
  ASSERT_TRUE(registry.Find("m", "1", &found).ok());
  EXPECT_EQ(found->spec().version, 1);
}

TEST(ModelRegistry, NamespacesResolveNamesOrRefuseAmbiguousOnes) {
  // --model-namespacing: two repositories each hold a model "m".
  ModelRegistry registry;
  registry.SetNamespacing(true);
  registry.Add(MakeModel("m", 1), "/repo_a");
  registry.SetResolvable({"/repo_a", "m"}, true);
  registry.Add(MakeModel("only_a", 1), "/repo_a");
  registry.SetResolvable({"/repo_a", "only_a"}, true);
  std::shared_ptr<Model> found;
  ASSERT_TRUE(registry.Find("m", "", &found).ok());  // one namespace knows "m"
  registry.Add(MakeModel("m", 2), "/repo_b");
  registry.SetResolvable({"/repo_b", "m"}, true);
  Status status = registry.Find("m", "", &found);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            "There are 2 identifiers of model 'm' in global map, model namespace must "
            "be provided to resolve ambiguity.");
  ASSERT_TRUE(registry.FindIn({"/repo_b", "m"}, "", &found).ok());
  EXPECT_EQ(found->spec().version, 2);
  EXPECT_EQ(registry.FindIn({"/repo_b", "m"}, "1", &found).message(),
            "Request for unknown model: 'm' version 1 is not found");
  ASSERT_TRUE(registry.Find("only_a", "1", &found).ok());
  // A name nobody has is refused as an argument before any lookup, as in Triton.
  status = registry.Find("nope", "", &found);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(), "Request for unknown model: 'nope' is not found");
  // Unloading one of them makes the name unique again.
  registry.Remove({"/repo_b", "m"}, 2);
  registry.SetResolvable({"/repo_b", "m"}, false);
  ASSERT_TRUE(registry.Find("m", "", &found).ok());
  EXPECT_EQ(found->spec().version, 1);
  // A name all of whose models were unloaded is no longer in Triton's global map.
  registry.Remove({"/repo_a", "m"}, 1);
  registry.SetResolvable({"/repo_a", "m"}, false);
  status = registry.Find("m", "", &found);
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "Identifier of model 'm' is not found in global map");
}

}  // namespace
}  // namespace tritonx
