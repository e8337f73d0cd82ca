#ifndef STEMEDB_RATE_LIMIT_H
#define STEMEDB_RATE_LIMIT_H
/* Token-bucket rate limits per client and endpoint class. The client is the API key
 * id when the request carries a valid key, else the peer IP address. Buckets live in a
 * hash table split into shards, each with its own mutex, so concurrent requests of
 * different clients rarely wait on each other. The table contains at most max_clients
 * clients and evicts idle ones first. docs/protection.md explains the defaults. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_server.h"

struct http_call;

/* Rate in tokens (requests) per second and bucket size (burst) of one class. */
struct rate_limit_class {
	double rate;
	double burst;
};

struct rate_limit_settings {
	bool enabled;
	struct rate_limit_class classes[HTTP_ROUTE_CLASS_COUNT]; /* EXEMPT is unused */
	uint64_t max_clients;
};

/* Takes one token from a bucket that last had *tokens at *last_ns. Returns true when a
 * token was available; else false with the wait until the next token, in whole
 * seconds and at least 1, in *retry_after_s. */
bool rate_limit_take(const struct rate_limit_class *c, double *tokens, uint64_t *last_ns,
                     uint64_t now_ns, uint64_t *retry_after_s);

/* A bounded table of client buckets. */
struct rate_limiter;
struct rate_limiter *rate_limiter_new(const struct rate_limit_settings *settings);
void rate_limiter_free(struct rate_limiter *limiter);
/* Takes a token of class cls for client (len bytes). Returns false with the wait in
 * *retry_after_s when the client's bucket is empty. */
bool rate_limiter_allow(struct rate_limiter *limiter, const void *client, size_t len,
                        enum http_route_class cls, uint64_t now_ns, uint64_t *retry_after_s);
/* Number of clients in the table. */
size_t rate_limiter_clients(struct rate_limiter *limiter);

/* Sets up the process-wide limiter used by rate_limit_check. */
void rate_limit_start(const struct rate_limit_settings *settings);
void rate_limit_stop(void);
/* Takes a token for the request's client and class. Replies 429 rate_limited with
 * Retry-After and returns false when the bucket is empty. Exempt routes, and every
 * route when rate limits are off, pass. */
bool rate_limit_check(struct http_call *call);

#endif
