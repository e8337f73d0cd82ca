#ifndef STEMEDB_HTTP_UTIL_H
#define STEMEDB_HTTP_UTIL_H

/* Helpers shared by the HTTP handlers: JSON replies, the error body, request bodies,
 * query strings and the metrics every handler updates. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_server.h"
#include "stemedb/buf.h"
#include "stemedb/json_writer.h"
#include "stemedb/metrics.h"

#define HTTP_QUERY_PARAMS_MAX 16

/* Metrics of the HTTP layer, registered once by http_metrics_register. */
struct http_metrics {
	struct metric_family *requests;     /* stemedb_http_requests_total{method,path,status} */
	struct histogram *request_duration; /* stemedb_http_request_duration_seconds */
	struct metric_family *rejected;     /* stemedb_requests_rejected_total{reason} */
	struct metric *queries_query;
	struct metric *queries_skeptic;
	struct histogram *latency_query;
	struct histogram *latency_skeptic;
	struct metric *assertions;  /* stemedb_assertions_total, refreshed at render */
	struct metric *connections; /* stemedb_http_connections */
};

extern struct http_metrics http_metrics;

void http_metrics_register(void);

/* Sends body (a JSON value, consumed) with the given status, then finishes the call. */
void http_reply_json(struct http_call *call, int status, json_t *body);

/* Starts a reply body in out, which http_reply_text sends and frees. */
void http_reply_begin(struct buf *out, struct json_writer *w);

/* Sends the JSON text in body (written through a json_writer, taken over and freed)
 * with the given status, then finishes the call. */
void http_reply_text(struct http_call *call, int status, struct buf *body);

/* Writes {"code", "message", "field"} (field omitted when NULL or empty). */
void http_write_error_object(struct json_writer *w, const char *code, const char *field,
                             const char *message);

/* Sends data as-is with the given content type, then finishes the call. */
void http_reply_bytes(struct http_call *call, int status, const char *content_type,
                      const void *data, size_t len);

/* Sends the error body, counts the rejection under its code and logs it, then
 * finishes the call. */
void http_reply_error(struct http_call *call, int status, const char *code, const char *field,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Counts one rejection in stemedb_requests_rejected_total{reason=code}. */
void http_count_rejection(const char *code);

/* Replies 503 and returns NULL until WAL replay has finished; else the pipeline. */
struct commit_pipeline *http_require_ready(struct http_call *call);

/* Checks the Content-Type (absent or application/json) and the body size, then
 * parses the body. On failure replies (415, 413 or 400) and returns NULL. The caller
 * releases the result with json_decref. */
json_t *http_read_json_body(struct http_call *call, uint64_t max_bytes);

struct http_param {
	const char *name;
	const char *value; /* percent-decoded, NUL-terminated, valid UTF-8 */
	size_t value_len;
	bool used;
};

struct http_query {
	struct http_param params[HTTP_QUERY_PARAMS_MAX];
	size_t count;
	char *storage;
};

/* Parses call->query into q. Rejects malformed escapes, NUL bytes, invalid UTF-8,
 * repeated names and names outside known (a NULL-terminated list), replying 400.
 * Returns false after replying. Free q with http_query_free in every case. */
bool http_query_parse(struct http_call *call, const char *const *known, struct http_query *q);
void http_query_free(struct http_query *q);

/* Replies 400 and returns false when the request has any query parameter. */
bool http_query_reject_any(struct http_call *call);

/* Returns the parameter's value, or NULL when it was not given. */
const struct http_param *http_query_get(const struct http_query *q, const char *name);

/* Decodes %XX escapes of len bytes from in into out (len + 1 bytes), and '+' to a
 * space when plus_is_space. Returns false on a malformed escape. */
bool http_percent_decode(const char *in, size_t len, bool plus_is_space, char *out,
                         size_t *out_len);

/* Parses a decimal unsigned integer in [min, max]; false otherwise. */
bool http_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out);

#endif
