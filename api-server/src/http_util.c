#include "http_util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "stemedb/assertion.h"
#include "stemedb/log.h"

struct http_metrics http_metrics;

/* Client errors are logged at most this many times per second, so that hostile
 * traffic cannot flood the journal. The next logged error notes that some were
 * left out. */
#define HTTP_ERROR_LOGS_PER_SECOND 20

static atomic_uint_fast64_t error_log_second;
static atomic_uint_fast64_t error_log_count;
static atomic_uint_fast64_t error_log_suppressed;

/* Every error code the API sends. */
static const char *const rejection_codes[] = {
        "invalid_json",          "invalid_field",      "missing_field",
        "unknown_field",         "invalid_parameter",  "missing_parameter",
        "unknown_parameter",     "not_found",          "method_not_allowed",
        "payload_too_large",     "batch_too_large",    "unsupported_media_type",
        "out_of_range",          "invalid_signature",  "duplicate_signer",
        "unavailable",           "internal_error",     "missing_api_key",
        "invalid_api_key",       "insufficient_scope", "rate_limited",
        "agent_not_allowed",     "invalid_header",     "agent_mismatch",
        "circuit_open",          "circuit_banned",     "proof_of_work_required",
        "invalid_proof_of_work", "quota_exceeded",     "connection_limit",
        "read_timeout",          "origin_not_allowed", "forwarding_token"};

static void http_count_rejection_by(const char *code, double delta)
{
	const char *values[] = {code};

	metric_add(metrics_family_child(http_metrics.rejected, values), delta);
}

void http_metrics_register(void)
{
	static const char *const request_labels[] = {"method", "path", "status", NULL};
	static const char *const reason_labels[] = {"reason", NULL};
	static const char *const endpoint_labels[] = {"endpoint", NULL};
	static const char *const query_value[] = {"query"};
	static const char *const skeptic_value[] = {"skeptic"};
	struct metric_family *queries, *latency;

	http_metrics.requests =
	        metrics_counter_family("stemedb_http_requests_total",
	                               "HTTP requests by method, route and status", request_labels);
	http_metrics.request_duration =
	        metrics_histogram("stemedb_http_request_duration_seconds",
	                          "Time from dispatch to reply of HTTP requests, in seconds",
	                          METRICS_LATENCY_BUCKETS, METRICS_LATENCY_BUCKET_COUNT);
	http_metrics.rejected =
	        metrics_counter_family("stemedb_requests_rejected_total",
	                               "Requests rejected, by error code", reason_labels);

	/* Children for every code, so that each series exists from start-up at zero
	 * and rate() works from the first scrape. */
	for (size_t i = 0; i < sizeof(rejection_codes) / sizeof(rejection_codes[0]); i++)
		http_count_rejection_by(rejection_codes[i], 0);

	queries = metrics_counter_family("stemedb_queries_total", "Read queries by endpoint",
	                                 endpoint_labels);
	latency = metrics_histogram_family(
	        "stemedb_query_latency_seconds", "Read query latency by endpoint, in seconds",
	        endpoint_labels, METRICS_LATENCY_BUCKETS, METRICS_LATENCY_BUCKET_COUNT);
	http_metrics.queries_query = metrics_family_child(queries, query_value);
	http_metrics.queries_skeptic = metrics_family_child(queries, skeptic_value);
	http_metrics.latency_query = metrics_family_histogram(latency, query_value);
	http_metrics.latency_skeptic = metrics_family_histogram(latency, skeptic_value);

	http_metrics.assertions = metrics_counter(
	        "stemedb_assertions_total",
	        "Assertions stored on this node. Stored assertions are never deleted, so "
	        "the count only grows");
	http_metrics.connections =
	        metrics_gauge("stemedb_http_connections", "Open HTTP client connections");
}

static const char encode_failure_body[] =
        "{\"error\":{\"code\":\"internal_error\",\"message\":\"The response "
        "could not be encoded; see the server log.\"}}";

static int dump_to_buf(const char *data, size_t size, void *arg)
{
	buf_append(arg, data, size);
	return 0;
}

static void free_dumped(const void *data, size_t len, void *arg)
{
	(void)len;
	(void)arg;
	free((void *)data);
}

/* Hands body to libevent without a copy, adds the final newline and sends it. */
static void http_send_body(struct http_call *call, int status, struct buf *body)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(call->req);
	struct evkeyvalq *headers = evhttp_request_get_output_headers(call->req);

	buf_append(body, "\n", 1);
	if (evbuffer_add_reference(out, body->data, body->len, free_dumped, NULL) != 0)
		buf_free(body);
	buf_init(body);

	evhttp_add_header(headers, "Content-Type", "application/json");
	evhttp_send_reply(call->req, status, NULL, NULL);
	http_call_finish(call, status);
}

void http_reply_json(struct http_call *call, int status, json_t *body)
{
	struct buf text;

	/* jansson emits one small piece per token, so the text is collected in one
	 * buffer and handed to libevent whole instead of one evbuffer_add per token.
	 * Fifteen significant digits print 0.9 as 0.9 and still carry every millionth
	 * of a confidence exactly. */
	buf_init(&text);
	buf_reserve(&text, 4096);
	if (json_dump_callback(body, dump_to_buf, &text, JSON_COMPACT | JSON_REAL_PRECISION(15)) !=
	    0) {
		log_error("json_dump_callback failed for a %d reply to %s", status, call->path);
		buf_reset(&text);
		status = 500;
		buf_append(&text, encode_failure_body, sizeof(encode_failure_body) - 1);
	}
	json_decref(body);
	http_send_body(call, status, &text);
}

void http_reply_begin(struct buf *out, struct json_writer *w)
{
	/* One allocation covers a query reply with ten candidates (about 4 KiB). */
	buf_init(out);
	buf_reserve(out, 8192);
	json_writer_init(w, out);
}

void http_reply_text(struct http_call *call, int status, struct buf *body)
{
	http_send_body(call, status, body);
}

void http_reply_bytes(struct http_call *call, int status, const char *content_type,
                      const void *data, size_t len)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(call->req);

	evbuffer_add(out, data, len);
	evhttp_add_header(evhttp_request_get_output_headers(call->req), "Content-Type",
	                  content_type);
	evhttp_send_reply(call->req, status, NULL, NULL);
	http_call_finish(call, status);
}

void http_write_error_object(struct json_writer *w, const char *code, const char *field,
                             const char *message)
{
	json_writer_object_begin(w);
	json_writer_key(w, "code");
	json_writer_cstring(w, code);
	json_writer_key(w, "message");
	json_writer_cstring(w, message);
	if (field != NULL && field[0] != '\0') {
		json_writer_key(w, "field");
		json_writer_cstring(w, field);
	}
	json_writer_object_end(w);
}

void http_count_rejection(const char *code)
{
	http_count_rejection_by(code, 1);
}

/* Logs a rejected request unless this second's quota of client-error logs is used;
 * server errors are always logged. */
static void http_log_error(const struct http_call *call, int status, const char *code,
                           const char *field, const char *message)
{
	uint64_t now = (uint64_t)time(NULL);
	uint64_t window = atomic_load_explicit(&error_log_second, memory_order_relaxed);
	uint64_t suppressed = 0;

	if (window != now && atomic_compare_exchange_strong(&error_log_second, &window, now)) {
		atomic_store(&error_log_count, 0);
		suppressed = atomic_exchange(&error_log_suppressed, 0);
	}
	if (status < 500 && atomic_fetch_add(&error_log_count, 1) >= HTTP_ERROR_LOGS_PER_SECOND) {
		atomic_fetch_add(&error_log_suppressed, 1);
		return;
	}

	log_message(status >= 500 ? LOG_LEVEL_ERROR : LOG_LEVEL_INFO, "%s %s -> %d %s%s%s: %s%s",
	            call->method_name, call->path, status, code,
	            field != NULL && field[0] ? " at " : "", field != NULL ? field : "", message,
	            suppressed > 0 ? " (earlier client errors not logged)" : "");
}

/* Replaces every byte outside printable ASCII when text is not valid UTF-8, because
 * messages quote client input and JSON strings must be UTF-8. Truncation by a
 * precision such as %.64s can also cut a character in half. */
static void make_printable(char *text)
{
	if (utf8_valid(text, strlen(text)))
		return;
	for (char *p = text; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	}
}

void http_reply_error(struct http_call *call, int status, const char *code, const char *field,
                      const char *fmt, ...)
{
	char message[512];
	char field_text[128];
	struct json_writer w;
	struct buf body;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	make_printable(message);
	snprintf(field_text, sizeof(field_text), "%s", field != NULL ? field : "");
	make_printable(field_text);
	field = field_text;

	snprintf(call->error_code, sizeof(call->error_code), "%s", code);
	http_count_rejection(code);
	http_log_error(call, status, code, field, message);
	http_reply_begin(&body, &w);
	json_writer_object_begin(&w);
	json_writer_key(&w, "error");
	http_write_error_object(&w, code, field, message);
	json_writer_object_end(&w);
	http_reply_text(call, status, &body);
}

struct commit_pipeline *http_require_ready(struct http_call *call)
{
	struct commit_pipeline *p =
	        atomic_load_explicit(&call->state->pipeline, memory_order_acquire);

	if (p != NULL && call->shutting_down) {
		http_reply_error(call, 503, "unavailable", NULL,
		                 "The node is shutting down; retry on another node or after it "
		                 "restarts.");
		return NULL;
	}
	if (p == NULL)
		http_reply_error(call, 503, "unavailable", NULL,
		                 "The node is replaying its WAL and is not ready yet; retry when "
		                 "GET /v1/ready returns 200.");
	return p;
}

/* True when the Content-Type is application/json, with or without parameters. */
static bool content_type_is_json(const char *value)
{
	size_t len = strlen("application/json");

	while (*value == ' ')
		value++;
	if (strncasecmp(value, "application/json", len) != 0)
		return false;
	value += len;
	while (*value == ' ')
		value++;
	return *value == '\0' || *value == ';';
}

json_t *http_read_json_body(struct http_call *call, uint64_t max_bytes)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(call->req);
	const char *type =
	        evhttp_find_header(evhttp_request_get_input_headers(call->req), "Content-Type");
	size_t len = evbuffer_get_length(in);
	json_error_t error;
	json_t *body;

	if (type != NULL && !content_type_is_json(type)) {
		http_reply_error(call, 415, "unsupported_media_type", NULL,
		                 "Content-Type '%.100s' is not supported; send "
		                 "'application/json'.",
		                 type);
		return NULL;
	}
	if (len > max_bytes) {
		http_reply_error(call, 413, "payload_too_large", NULL,
		                 "The body has %zu bytes, more than the limit of %llu; send "
		                 "fewer bytes or raise the server's limit.",
		                 len, (unsigned long long)max_bytes);
		return NULL;
	}
	if (len == 0) {
		http_reply_error(call, 400, "invalid_json", NULL,
		                 "The request body is empty; send a JSON object.");
		return NULL;
	}

	body = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES,
	                  &error);
	if (body == NULL) {
		http_reply_error(call, 400, "invalid_json", NULL,
		                 "The body is not valid JSON: %s at line %d, column %d; send "
		                 "one well-formed JSON object.",
		                 error.text, error.line, error.column);
		return NULL;
	}
	if (!json_is_object(body)) {
		json_decref(body);
		http_reply_error(call, 400, "invalid_json", NULL,
		                 "The body is valid JSON but not an object; send a JSON object.");
		return NULL;
	}
	return body;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool http_percent_decode(const char *in, size_t len, bool plus_is_space, char *out, size_t *out_len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] != '%') {
			out[n++] = plus_is_space && in[i] == '+' ? ' ' : in[i];
			continue;
		}

		/* An escape needs two hex digits after the '%'. */
		if (len - i < 3 || hex_value(in[i + 1]) < 0 || hex_value(in[i + 2]) < 0)
			return false;
		out[n++] = (char)(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2]));
		i += 2;
	}
	out[n] = '\0';
	*out_len = n;
	return true;
}

bool http_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long value;

	if (text[0] < '0' || text[0] > '9')
		return false;
	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || value < min || value > max)
		return false;
	*out = value;
	return true;
}

const struct http_param *http_query_get(const struct http_query *q, const char *name)
{
	for (size_t i = 0; i < q->count; i++) {
		if (strcmp(q->params[i].name, name) == 0)
			return &q->params[i];
	}
	return NULL;
}

static bool name_is_known(const char *name, const char *const *known)
{
	for (size_t i = 0; known[i] != NULL; i++) {
		if (strcmp(known[i], name) == 0)
			return true;
	}
	return false;
}

/* Decodes one "name=value" pair in place into q. Replies and returns false when it
 * is malformed, unknown, repeated or over the parameter limit. */
static bool http_query_add(struct http_call *call, const char *const *known, struct http_query *q,
                           char *pair, size_t len)
{
	char *equals = memchr(pair, '=', len);
	size_t name_len = equals != NULL ? (size_t)(equals - pair) : len;
	char *value = equals != NULL ? equals + 1 : pair + len;
	size_t value_len = equals != NULL ? len - name_len - 1 : 0;
	size_t decoded_len;
	struct http_param *param;

	pair[name_len] = '\0';
	if (!http_percent_decode(pair, name_len, true, pair, &decoded_len) ||
	    strlen(pair) != decoded_len || !name_is_known(pair, known)) {
		http_reply_error(call, 400, "unknown_parameter", NULL,
		                 "Query parameter '%.64s' is not known here; remove it or "
		                 "check its spelling.",
		                 pair);
		return false;
	}
	if (http_query_get(q, pair) != NULL || q->count == HTTP_QUERY_PARAMS_MAX) {
		http_reply_error(call, 400, "invalid_parameter", pair,
		                 "Query parameter '%s' is given more than once; give it once.",
		                 pair);
		return false;
	}

	param = &q->params[q->count];
	param->name = pair;
	if (!http_percent_decode(value, value_len, true, value, &param->value_len) ||
	    !utf8_valid(value, param->value_len)) {
		http_reply_error(call, 400, "invalid_parameter", pair,
		                 "Query parameter '%s' has a malformed percent escape, a NUL "
		                 "byte or invalid UTF-8; encode the value as UTF-8 with %%XX "
		                 "escapes.",
		                 pair);
		return false;
	}
	param->value = value;
	param->used = false;
	q->count++;
	return true;
}

bool http_query_parse(struct http_call *call, const char *const *known, struct http_query *q)
{
	const char *raw = call->query != NULL ? call->query : "";
	size_t len = strlen(raw);
	char *cursor;

	memset(q, 0, sizeof(*q));
	q->storage = malloc(len + 1);
	if (q->storage == NULL)
		abort();
	memcpy(q->storage, raw, len + 1);

	cursor = q->storage;
	while (*cursor != '\0') {
		char *amp = strchr(cursor, '&');
		size_t pair_len = amp != NULL ? (size_t)(amp - cursor) : strlen(cursor);
		char *next = amp != NULL ? amp + 1 : cursor + pair_len;

		if (pair_len > 0 && !http_query_add(call, known, q, cursor, pair_len))
			return false;
		cursor = next;
	}
	return true;
}

void http_query_free(struct http_query *q)
{
	free(q->storage);
	q->storage = NULL;
	q->count = 0;
}

bool http_query_reject_any(struct http_call *call)
{
	static const char *const none[] = {NULL};
	struct http_query q;
	bool ok = http_query_parse(call, none, &q);

	http_query_free(&q);
	return ok;
}
