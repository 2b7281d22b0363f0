// Large outputs on transparent huge pages, for fastact's own tensors only.
//
// By default glibc serves every large allocation with a fresh mmap, so each
// new 64 MiB output takes 16384 page faults on first touch: for a relu over
// 4096x4096 floats that is most of the time torch spends. torch's
// THP_MEM_ALLOC_ENABLE fixes this for the whole process; fastact does it for
// the tensors it allocates, leaving everyone else's allocations alone. A
// 2 MiB-aligned mapping advised MADV_HUGEPAGE faults once per 2 MiB instead of
// once per 4 KiB (Linux with THP in "madvise" or "always" mode; elsewhere the
// advice is a no-op and this is a plain mmap).
//
// Even on huge pages, the kernel must zero every fresh page: that alone costs
// about as much as a relu over the same bytes. So freed mappings are kept in
// a cache (FASTACT_CACHE_MB; by default 1/16 of physical memory, at least
// 256 MiB: one step's loss gradient at 4096 x 32000 is 500 MiB;
// fastact.empty_cache() returns them) and handed out again: a training loop
// allocates the same output shapes every step, and reuses pages that are
// already faulted in. Only fastact's own outputs live here. The policy:
//  - size classes: a request is rounded up to one of four sizes per power of
//    two (1, 1.25, 1.5, 1.75 x 2^k), so a loop whose batch size varies reuses
//    a few classes instead of keeping one mapping per exact size; at most 25%
//    more address space, and the pages past the request are never touched
//    (so never resident) unless a larger request of the class reuses them;
//  - least recently freed out first: a mapping given back to a full cache
//    evicts the oldest ones, so the sizes in use now stay cached;
//  - a bound that holds: the cached bytes never exceed the capacity.
#include "cpu_shared/output_allocator.h"

#include <ATen/EmptyTensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include <unistd.h>

#if defined(__linux__)
#include <sys/mman.h>
#define FASTACT_HAS_MMAP 1
#endif

namespace fastact::cpu {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kPage = size_t(4) << 10;
// From here up, outputs come from our own mappings (and their cache): glibc
// serves such sizes with fresh mmaps or from its heap depending on its
// adaptive threshold, so whether a 1 MiB output page-faults on every use
// otherwise depends on the process's allocation history.
constexpr size_t kMappedMin = size_t(256) << 10;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// The mapping length for a request of nbytes: its size class, in whole
// pages (whole huge pages from 2 MiB).
size_t mapping_length(size_t nbytes) {
  size_t power = 1;
  while (power * 2 <= nbytes) power *= 2;
  const size_t cls = power >= 4 ? round_up(nbytes, power / 4) : nbytes;
  return round_up(cls, cls < kHugePage ? kPage : kHugePage);
}

// FASTACT_HUGE_PAGES=0 turns our own mappings off: plain torch allocations.
bool huge_pages_enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("FASTACT_HUGE_PAGES");
    return !(env && std::strcmp(env, "0") == 0);
  }();
  return enabled;
}

size_t cache_capacity_bytes() {
  static const size_t capacity = [] {
    if (const char* env = std::getenv("FASTACT_CACHE_MB")) return size_t(std::strtoull(env, nullptr, 10)) << 20;
    size_t physical = 0;
#if defined(_SC_PHYS_PAGES)
    physical = size_t(sysconf(_SC_PHYS_PAGES)) * size_t(sysconf(_SC_PAGE_SIZE));
#endif
    return std::max(size_t(256) << 20, physical / 16);
  }();
  return capacity;
}

#if FASTACT_HAS_MMAP
struct Mapping {
  void* base;
  size_t length;
};

// Freed mappings, most recently freed first, found by length; within
// cache_capacity_bytes() in total at all times.
class MappingCache {
 public:
  void* take(size_t length) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = by_length_.find(length);
    if (it == by_length_.end() || it->second.empty()) return nullptr;
    const auto entry = it->second.back();  // the most recently freed of that length
    it->second.pop_back();
    void* base = entry->base;
    recent_.erase(entry);
    cached_bytes_ -= length;
    return base;
  }
  void give(void* base, size_t length) {
    std::vector<Mapping> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (length > cache_capacity_bytes()) {
        evicted.push_back({base, length});
      } else {
        recent_.push_front({base, length});
        by_length_[length].push_back(recent_.begin());
        cached_bytes_ += length;
        while (cached_bytes_ > cache_capacity_bytes()) evicted.push_back(evict_oldest());
      }
    }
    for (const Mapping& m : evicted) munmap(m.base, m.length);  // outside the lock: syscalls
  }
  void release_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Mapping& m : recent_) munmap(m.base, m.length);
    recent_.clear();
    by_length_.clear();
    cached_bytes_ = 0;
  }
  size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_bytes_;
  }

 private:
  Mapping evict_oldest() {
    const Mapping oldest = recent_.back();
    auto& same = by_length_[oldest.length];
    const auto last = std::prev(recent_.end());
    same.erase(std::find(same.begin(), same.end(), last));  // few per length: a short scan
    recent_.pop_back();
    cached_bytes_ -= oldest.length;
    return oldest;
  }

  std::mutex mutex_;
  std::list<Mapping> recent_;
  std::unordered_map<size_t, std::vector<std::list<Mapping>::iterator>> by_length_;
  size_t cached_bytes_ = 0;
};

// Leaked on purpose: tensors freed during interpreter shutdown still return
// their mappings here after static destructors would have run.
MappingCache& mapping_cache() {
  static auto* cache = new MappingCache();
  return *cache;
}

void release_mapping(void* ctx) {
  auto* m = static_cast<Mapping*>(ctx);
  mapping_cache().give(m->base, m->length);
  delete m;
}

void* map_pages(size_t length) {
  if (length < kHugePage) {
    void* data = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return data == MAP_FAILED ? nullptr : data;
  }
  // Over-map by one huge page, then trim to a 2 MiB-aligned window: THP
  // backs only aligned 2 MiB ranges.
  void* raw = mmap(nullptr, length + kHugePage, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = round_up(start, kHugePage);
  if (aligned > start) munmap(raw, aligned - start);
  const size_t tail = (start + length + kHugePage) - (aligned + length);
  if (tail > 0) munmap(reinterpret_cast<void*>(aligned + length), tail);
  void* data = reinterpret_cast<void*>(aligned);
  madvise(data, length, MADV_HUGEPAGE);
  return data;
}

class HugePageAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t nbytes) override {
    if (nbytes < kMappedMin || !huge_pages_enabled()) {
      return c10::GetDefaultCPUAllocator()->allocate(nbytes);
    }
    const size_t length = mapping_length(nbytes);
    void* data = mapping_cache().take(length);
    if (data == nullptr) data = map_pages(length);
    if (data == nullptr) return c10::GetDefaultCPUAllocator()->allocate(nbytes);
    return {data, new Mapping{data, length}, &release_mapping, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
};

c10::Allocator* output_allocator() {
  static HugePageAllocator allocator;
  return &allocator;
}
#else
c10::Allocator* output_allocator() { return c10::GetDefaultCPUAllocator(); }
#endif

}  // namespace

void empty_cache() {
#if FASTACT_HAS_MMAP
  mapping_cache().release_all();
#endif
}

int64_t cached_bytes() {
#if FASTACT_HAS_MMAP
  return static_cast<int64_t>(mapping_cache().cached_bytes());
#else
  return 0;
#endif
}

int64_t huge_page_threshold_bytes() { return static_cast<int64_t>(kHugePage); }

int64_t cache_capacity() { return static_cast<int64_t>(cache_capacity_bytes()); }

at::Tensor empty_output_like(const at::Tensor& like) {
  if (!like.is_non_overlapping_and_dense()) return at::empty_like(like);
  return at::detail::empty_strided_generic(like.sizes(), like.strides(), output_allocator(),
                                           c10::DispatchKeySet(c10::DispatchKey::CPU),
                                           like.scalar_type());
}

at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  return at::detail::empty_generic(sizes, output_allocator(),
                                   c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   options.dtype().toScalarType(), c10::MemoryFormat::Contiguous);
}

}  // namespace fastact::cpu
