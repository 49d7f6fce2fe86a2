// Runs a fuzz target over saved inputs without libFuzzer (any compiler): every file
// named, and every file in each directory named; a file ending in ".pack" holds many
// inputs, each a uint32 little-endian length and then its bytes (corpus_pack.py
// makes them from libFuzzer's corpus directories). ctest runs each target over its
// seeds (corpus/<target>/) and the inputs kept from fuzzing runs
// (corpus/<target>.pack), so inputs that once failed stay fixed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void RunInput(const char* data, size_t size) {
  // A copy of exactly the input's size, so reads past its end reach the sanitizers.
  std::vector<uint8_t> input(data, data + size);
  LLVMFuzzerTestOneInput(input.data(), input.size());
}

// Returns the number of inputs run, or -1 when the file cannot be read or a pack is
// cut short.
long RunFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    return -1;
  }
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  if (path.extension() != ".pack") {
    RunInput(bytes.data(), bytes.size());
    return 1;
  }
  long ran = 0;
  size_t at = 0;
  while (at < bytes.size()) {
    uint32_t length = 0;
    if (bytes.size() - at < 4) break;
    std::memcpy(&length, bytes.data() + at, 4);
    at += 4;
    if (length > bytes.size() - at) break;
    RunInput(bytes.data() + at, length);
    at += length;
    ++ran;
  }
  if (at != bytes.size()) {
    std::fprintf(stderr, "%s: cut short after %ld inputs\n", path.c_str(), ran);
    return -1;
  }
  return ran;
}

}  // namespace

int main(int argc, char** argv) {
  long ran = 0;
  int failures = 0;
  auto run = [&](const std::filesystem::path& path) {
    const long n = RunFile(path);
    if (n < 0) {
      ++failures;
    } else {
      ran += n;
    }
  };
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path path(argv[i]);
    if (std::filesystem::is_directory(path)) {
      std::vector<std::filesystem::path> files;
      for (const auto& entry : std::filesystem::directory_iterator(path)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());
      for (const auto& file : files) run(file);
    } else {
      run(path);
    }
  }
  std::printf("replayed %ld inputs\n", ran);
  // An empty corpus would make the test pass without running anything.
  return failures != 0 || ran == 0 ? 1 : 0;
}
