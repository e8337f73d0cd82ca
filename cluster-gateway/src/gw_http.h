#ifndef STEMEDB_GW_HTTP_H
#define STEMEDB_GW_HTTP_H

/* The HTTP side of stemedb-gateway: one event loop with one evhttp listener. Handlers
 * run on the loop thread. A handler that needs stemedb-api hands the blocking IPC call
 * to a job thread (gw_job.h) and replies when the job comes back, so a slow or dead
 * stemedb-api never stalls the loop. */

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_config.h"

struct event_base;
struct evhttp_request;
struct gw_http_server;

/* WAL archiving progress as the gateway saw it in earlier Stats replies. Only the
 * loop thread reads or writes it. */
struct gw_archive_watch {
	uint64_t watermark;    /* archived offset of the latest reply */
	uint64_t lag_since_ns; /* CLOCK_MONOTONIC when the current lag was first seen, or
	                        * when the watermark last moved; 0 while there is no lag */
};

/* State shared by the handlers and the job threads. */
struct gateway {
	const struct gw_config *config;
	struct event_base *base;
	uint64_t started_ns;      /* CLOCK_MONOTONIC at start-up */
	atomic_uint jobs_running; /* job threads that have not come back yet */
	struct gw_archive_watch archive_watch;
};

enum gw_route {
	GW_ROUTE_HEALTH = 0,
	GW_ROUTE_METRICS,
	GW_ROUTE_CLUSTER_STATUS,
	GW_ROUTE_ADMIN_CLUSTER,
	GW_ROUTE_ADMIN_COMPACT,
	GW_ROUTE_ADMIN_REBUILD,
	GW_ROUTE_ADMIN_BACKUP,
	GW_ROUTE_ADMIN_TRUST_OUTCOME,
	GW_ROUTE_ADMIN_API_KEYS_LIST,
	GW_ROUTE_ADMIN_API_KEYS_CREATE,
	GW_ROUTE_ADMIN_API_KEY_REVOKE,
	GW_ROUTE_ADMIN_BREAKERS,
	GW_ROUTE_ADMIN_BREAKER_BAN,
	GW_ROUTE_ADMIN_BREAKER_RESET,
	GW_ROUTE_ADMIN_QUARANTINE,
	GW_ROUTE_ADMIN_QUARANTINE_DECISION, /* /v1/admin/quarantine/{hash}/approve|reject */
	GW_ROUTE_UNMATCHED,
	GW_ROUTE_COUNT
};

/* One request from dispatch to reply. */
struct gw_request {
	struct evhttp_request *req;
	struct gateway *gw;
	enum gw_route route;
	const char *method_name; /* "GET", "POST" or "OTHER", for metrics */
	uint64_t started_ns;
	const char *path; /* request path, owned by req */
};

/* Binds the listener on cfg->listen and registers the dispatcher on gw->base. Returns
 * NULL with a message in err. */
struct gw_http_server *gw_http_start(struct gateway *gw, char *err, size_t err_size);

/* Closes the listening socket; open connections keep being served. */
void gw_http_stop_accepting(struct gw_http_server *server);

void gw_http_free(struct gw_http_server *server);

/* Checks the route, method and query string of r and runs its handler. Called once the
 * admin credentials of r, if it needs any, are accepted. */
void gw_dispatch(struct gw_request *r);

/* Sends body (a JSON value, consumed) with the given status and frees the request. */
void gw_reply_json(struct gw_request *r, int status, json_t *body);

/* Sends data as-is with the given content type and frees the request. */
void gw_reply_bytes(struct gw_request *r, int status, const char *content_type, const void *data,
                    size_t len);

/* Sends {"error": {"code", "message", "field"}} (field omitted when NULL) and frees
 * the request. Client errors are logged at debug level, server errors at warn. */
void gw_reply_error(struct gw_request *r, int status, const char *code, const char *field,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Reads the request body as a JSON object. An empty body returns an empty object.
 * Checks the Content-Type (absent or application/json). On failure replies (415 or
 * 400) and returns NULL. The caller releases the result with json_decref. */
json_t *gw_read_json_object(struct gw_request *r);

/* Replies 400 unknown_field and returns false when body has a key outside known (a
 * NULL-terminated list). */
bool gw_reject_unknown_fields(struct gw_request *r, json_t *body, const char *const *known);

/* Monotonic clock in nanoseconds. */
uint64_t gw_now_ns(void);

/* Formats Unix milliseconds as RFC 3339 UTC with milliseconds into out (32 bytes). */
void gw_format_unix_ms(uint64_t unix_ms, char out[32]);

#endif
