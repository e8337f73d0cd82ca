#ifndef STEMEDB_HTTP_FRONT_H
#define STEMEDB_HTTP_FRONT_H

/* The connection layer under evhttp on the API port. Every accepted connection gets a
 * filtering bufferevent (evhttp_set_bevcb) over a socket or TLS bufferevent. The
 * filter
 *   - counts connections per client address and closes those over
 *     STEMEDB_MAX_CONNECTIONS_PER_CLIENT;
 *   - closes a connection whose request head and body do not arrive within
 *     STEMEDB_READ_TIMEOUT_MS of its first byte (evhttp's own timeout only measures
 *     silence, so a client sending one byte at a time would never time out);
 *   - on a cleartext connection, looks at the first bytes. The HTTP/2 preface, or a
 *     GET or HEAD request with "Upgrade: h2c", moves the socket to an HTTP/2 session
 *     (http_h2.h), and anything else passes through to evhttp unchanged. */

#include <event2/util.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api_config.h"
#include "http_h2.h"

struct event_base;
struct evhttp;
struct evhttp_connection;
struct http_front;
struct http_front_worker;

/* Loads the TLS certificate and key when configured and sets up the per-client
 * table. Returns NULL with a message in err. */
struct http_front *http_front_new(const struct api_config *cfg, char *err, size_t err_size);
void http_front_free(struct http_front *front);

/* True when connections on the API port use TLS. */
bool http_front_tls(const struct http_front *front);

/* Installs the filter on http, whose event base is base. Sessions handed to HTTP/2
 * forward to the internal listener on 127.0.0.1:internal_port with token. */
struct http_front_worker *http_front_worker_new(struct http_front *front, struct event_base *base,
                                                struct evhttp *http,
                                                const struct http_h2_limits *limits,
                                                uint16_t internal_port, const char *token);
void http_front_worker_free(struct http_front_worker *fw);

/* Marks the request on conn as complete (evhttp has read its head and body), which
 * stops the read deadline until the next request begins. */
void http_front_request_started(struct http_front_worker *fw, struct evhttp_connection *conn);

#endif
