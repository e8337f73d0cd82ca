#ifndef STEMEDB_HTTP_H2_H
#define STEMEDB_HTTP_H2_H

/* HTTP/2 over cleartext TCP (h2c) with nghttp2. A session serves one client
 * connection and forwards each stream as one HTTP/1.1 request to the internal
 * listener of stemedb-api (127.0.0.1, an ephemeral port), so HTTP/2 requests go
 * through exactly the handlers, limits and durable write path of HTTP/1.1. Each
 * forwarded request carries the client's address and the process's forwarding token;
 * the internal listener rejects requests without the token. Responses are streamed:
 * the headers are sent when the upstream headers arrive and every body chunk as it
 * arrives, so Server-Sent Events work over HTTP/2.
 *
 * Sessions start in two ways: the HTTP/1.1 port hands over a connection that began
 * with the HTTP/2 preface or with an "Upgrade: h2c" request, and the optional
 * listener on STEMEDB_HTTP2_LISTEN accepts connections of its own. */

#include <event2/util.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;

/* Length of the forwarding token in hex characters. */
#define HTTP_H2_TOKEN_HEX 64

/* Request header that names the client address on forwarded requests. */
#define HTTP_H2_FORWARDED_FOR "X-StemeDB-Forwarded-For"
/* Request header that carries the forwarding token. */
#define HTTP_H2_FORWARD_TOKEN "X-StemeDB-Forward-Token"

struct http_h2_limits {
	uint64_t max_body_bytes;   /* larger request bodies get a 413 */
	uint64_t max_header_bytes; /* larger header blocks get a 431 */
	uint32_t max_streams;      /* SETTINGS_MAX_CONCURRENT_STREAMS */
	uint64_t idle_timeout_ms;  /* a connection silent this long is closed */
};

/* Forwarding target and limits of the sessions on one event_base. */
struct http_h2_context {
	struct event_base *base;
	uint16_t upstream_port; /* internal listener on 127.0.0.1 */
	char token[HTTP_H2_TOKEN_HEX + 1];
	struct http_h2_limits limits;
	/* Called when a session that owns a per-client connection slot ends; may be
	 * NULL. */
	void (*release_client)(void *arg, const char *client);
	void *release_arg;
};

/* Starts a session on fd, which the session owns and closes. already_read contains the
 * bytes read from fd before the hand-over (the preface or the upgrade request and
 * what followed); they are drained. client is the peer's numeric address. When
 * holds_client_slot is true, ctx->release_client runs once the session ends. Returns
 * false, with fd closed and the slot released, when the session could not start. */
bool http_h2_session_start(struct http_h2_context *ctx, evutil_socket_t fd,
                           struct evbuffer *already_read, const char *client,
                           bool holds_client_slot);

struct http_h2_front;

/* Starts the separate listener on listen (host:port) with its own thread and event
 * base; its sessions forward like the others. Returns NULL with a message in err. */
struct http_h2_front *http_h2_front_start(const char *listen, uint16_t upstream_port,
                                          const char *token, const struct http_h2_limits *limits,
                                          char *err, size_t err_size);

/* Stops the thread and closes the listener. */
void http_h2_front_stop(struct http_h2_front *front);

#endif
