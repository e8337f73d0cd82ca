#ifndef STEMEDB_HTTP_H2_H
#define STEMEDB_HTTP_H2_H

/* HTTP/2 over cleartext TCP (h2c) with nghttp2. The front listens on its own address
 * and forwards each stream as one HTTP/1.1 request to the API listener on loopback,
 * so HTTP/2 requests go through exactly the handlers, limits and durable write path
 * of HTTP/1.1. It accepts the prior-knowledge preface and the HTTP/1.1
 * "Upgrade: h2c" request without a body. */

#include <stddef.h>
#include <stdint.h>

struct http_h2_front;

struct http_h2_limits {
	uint64_t max_body_bytes;   /* larger request bodies get a 413 */
	uint64_t max_header_bytes; /* larger header blocks get a 431 */
	uint32_t max_streams;      /* SETTINGS_MAX_CONCURRENT_STREAMS */
	uint64_t idle_timeout_ms;  /* a connection silent this long is closed */
};

/* Starts the front on listen (host:port) with its own thread, forwarding to upstream
 * (host:port of the HTTP/1.1 listener). Returns NULL with a message in err. */
struct http_h2_front *http_h2_front_start(const char *listen, const char *upstream,
                                          const struct http_h2_limits *limits, char *err,
                                          size_t err_size);

/* Stops the thread and closes every connection. */
void http_h2_front_stop(struct http_h2_front *front);

#endif
