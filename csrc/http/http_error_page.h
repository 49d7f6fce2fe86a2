// evhttp answers some requests itself, before any callback of ours runs: a request
// line or header line it cannot parse (400), a head or body past its own limits
// (413). Those answers are HTML pages, and libevent 2.1 has no hook to replace them
// (2.2's evhttp_set_errorcb is not in Debian's 2.1). So every connection's output
// buffer is watched instead: when evhttp writes such a page, it is swapped, before a
// byte of it leaves, for an answer in Triton's error shape (`{"error": ...}` as
// application/json, Connection: close), as the Python engine gives:
//   400 (unparsable request, or a head past evhttp's bound) -> 400 "Bad Request"
//   413 (a body declared past the bound)  -> 400 with Triton's input-size message
//   413 (a broken or oversized chunked body) -> 400 "Bad Request"
// (The Python engine answers a head past its bound 431; heads between the header
// limit and evhttp's bound get that 431 on the native engine too.) Triton 2.51
// itself closes such connections without an answer.
#pragma once

#include <event2/bufferevent.h>

#include <cstddef>
#include <cstdint>

namespace tritonx {
namespace httpfe {

// The limits the replacement answers quote. Thread safety: immutable while
// connections exist. Ownership: the server owns it and outlives its connections.
struct ErrorPageLimits {
  uint64_t body_cap = 0;  // HttpBodyCap(--http-max-input-size)
};

// The limits quoted by pages replaced on the calling thread: each worker loop thread
// sets its server's once, before it runs (a page is written on the loop thread of
// its connection, and a thread serves one server).
void SetThreadErrorPageLimits(const ErrorPageLimits* limits);

// Watches `bev`'s output for evhttp's own error pages, for as long as `bev` lives
// (nothing to undo). Loop thread of `bev`.
void WatchErrorPages(bufferevent* bev);

}  // namespace httpfe
}  // namespace tritonx
