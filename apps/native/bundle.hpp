// Reading a bundle (manifest.json) in the native app: every file's sha256 checked before use
// (OpenSSL), and the device facts the selection rule needs (available memory from the OS).
#pragma once

#include <openssl/evp.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace matedge {

// One line for the user: what is wrong with which file (main() prints it and exits with 2).
struct BundleError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline nlohmann::json read_manifest(const std::string& bundle) {
  std::ifstream in(bundle + "/manifest.json");
  if (!in) throw BundleError(bundle + "/manifest.json: cannot read it (is " + bundle + " a bundle from `matedge bundle`?)");
  auto m = nlohmann::json::parse(in, nullptr, false);
  if (m.is_discarded() || !m.is_object() || m.value("kind", "") != "matedge.bundle")
    throw BundleError(bundle + "/manifest.json is not a matedge bundle manifest");
  if (m.value("schema_version", 0) != 1)
    throw BundleError(bundle + "/manifest.json has schema_version " + m["schema_version"].dump() + "; this app reads 1");
  return m;
}

inline std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw BundleError("refused " + path + ": the file is missing");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) EVP_DigestUpdate(ctx, buf, static_cast<size_t>(in.gcount()));
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx, digest, &n);
  EVP_MD_CTX_free(ctx);
  std::string hex;
  char h[3];
  for (unsigned int i = 0; i < n; ++i) std::snprintf(h, sizeof h, "%02x", digest[i]), hex += h;
  return hex;
}

// Check every file the manifest lists (size and sha256); a changed file is refused by name.
inline void verify_files(const std::string& bundle, const nlohmann::json& manifest) {
  for (const auto& [name, want] : manifest["files"].items()) {
    const std::string path = bundle + "/" + name;
    const std::string got = sha256_file(path);
    if (got != want["sha256"].get<std::string>())
      throw BundleError("refused " + name + ": sha256 " + got.substr(0, 12) + "... does not match the manifest's " +
                        want["sha256"].get<std::string>().substr(0, 12) + "...; the file was changed or damaged");
  }
}

// MemAvailable from /proc/meminfo in MiB (what the OS can give without swapping), or -1.
inline double available_memory_mb() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kb = -1;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb / 1024.0;
  return -1;
}

}  // namespace matedge
