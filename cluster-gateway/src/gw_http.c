#include "gw_http.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gw_auth.h"
#include "gw_handlers.h"
#include "gw_metrics.h"
#include "stemedb/config.h"
#include "stemedb/log.h"

/* Admin and status requests are small: the largest body is a backup path. */
#define GW_MAX_BODY_BYTES   65536
#define GW_MAX_HEADER_BYTES 16384
/* Inactivity limit of a connection, in seconds. It does not bound the wait for a
 * reply, because evhttp does not time out a request that is being handled. */
#define GW_CONNECTION_TIMEOUT_S 30
/* Logged client errors and credential failures per second; the rest are counted only. */
#define GW_LOGS_PER_SECOND 10

struct gw_http_server {
	struct gateway *gw;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
};

/* The revoke route takes the key id between this prefix and API_KEY_REVOKE_SUFFIX. */
#define API_KEY_REVOKE_PREFIX "/v1/admin/api-keys/"
#define API_KEY_REVOKE_SUFFIX "/revoke"

struct route {
	const char *path; /* the whole path, or the prefix before a parameter with a suffix */
	enum evhttp_cmd_type method;
	const char *method_name;
	void (*handler)(struct gw_request *r);
	const char *suffix; /* text after a path parameter without '/', or NULL */
};

static const struct route routes[GW_ROUTE_UNMATCHED] = {
        [GW_ROUTE_HEALTH] = {"/v1/health", EVHTTP_REQ_GET, "GET", gw_handle_health},
        [GW_ROUTE_METRICS] = {"/metrics", EVHTTP_REQ_GET, "GET", gw_handle_metrics},
        [GW_ROUTE_CLUSTER_STATUS] = {"/v1/cluster/status", EVHTTP_REQ_GET, "GET",
                                     gw_handle_cluster_status},
        [GW_ROUTE_ADMIN_CLUSTER] = {"/v1/admin/cluster", EVHTTP_REQ_GET, "GET",
                                    gw_handle_cluster_status},
        [GW_ROUTE_ADMIN_COMPACT] = {"/v1/admin/compact", EVHTTP_REQ_POST, "POST",
                                    gw_handle_admin_compact},
        [GW_ROUTE_ADMIN_REBUILD] = {"/v1/admin/indexes/rebuild", EVHTTP_REQ_POST, "POST",
                                    gw_handle_admin_rebuild},
        [GW_ROUTE_ADMIN_BACKUP] = {"/v1/admin/backup", EVHTTP_REQ_POST, "POST",
                                   gw_handle_admin_backup},
        [GW_ROUTE_ADMIN_TRUST_OUTCOME] = {"/v1/admin/trust/outcome", EVHTTP_REQ_POST, "POST",
                                          gw_handle_admin_trust_outcome},
        [GW_ROUTE_ADMIN_API_KEYS_LIST] = {"/v1/admin/api-keys", EVHTTP_REQ_GET, "GET",
                                          gw_handle_admin_api_keys_list},
        [GW_ROUTE_ADMIN_API_KEYS_CREATE] = {"/v1/admin/api-keys", EVHTTP_REQ_POST, "POST",
                                            gw_handle_admin_api_keys_create},
        [GW_ROUTE_ADMIN_API_KEY_REVOKE] = {API_KEY_REVOKE_PREFIX, EVHTTP_REQ_POST, "POST",
                                           gw_handle_admin_api_key_revoke, API_KEY_REVOKE_SUFFIX},
        [GW_ROUTE_ADMIN_BREAKERS] = {"/v1/admin/circuit_breakers", EVHTTP_REQ_GET, "GET",
                                     gw_handle_admin_breakers},
        [GW_ROUTE_ADMIN_BREAKER_BAN] = {"/v1/admin/circuit_breakers/", EVHTTP_REQ_POST, "POST",
                                        gw_handle_admin_breaker_ban, "/ban"},
        [GW_ROUTE_ADMIN_BREAKER_RESET] = {"/v1/admin/circuit_breakers/", EVHTTP_REQ_POST, "POST",
                                          gw_handle_admin_breaker_reset, "/reset"},
        [GW_ROUTE_ADMIN_QUARANTINE] = {"/v1/admin/quarantine", EVHTTP_REQ_GET, "GET",
                                       gw_handle_admin_quarantine_list},
        [GW_ROUTE_ADMIN_QUARANTINE_DECISION] = {"/v1/admin/quarantine/{hash}/{decision}",
                                                EVHTTP_REQ_POST, "POST",
                                                gw_handle_admin_quarantine_decision},
};

static const char *const route_labels[GW_ROUTE_COUNT] = {
        [GW_ROUTE_HEALTH] = "/v1/health",
        [GW_ROUTE_METRICS] = "/metrics",
        [GW_ROUTE_CLUSTER_STATUS] = "/v1/cluster/status",
        [GW_ROUTE_ADMIN_CLUSTER] = "/v1/admin/cluster",
        [GW_ROUTE_ADMIN_COMPACT] = "/v1/admin/compact",
        [GW_ROUTE_ADMIN_REBUILD] = "/v1/admin/indexes/rebuild",
        [GW_ROUTE_ADMIN_BACKUP] = "/v1/admin/backup",
        [GW_ROUTE_ADMIN_TRUST_OUTCOME] = "/v1/admin/trust/outcome",
        [GW_ROUTE_ADMIN_API_KEYS_LIST] = "/v1/admin/api-keys",
        [GW_ROUTE_ADMIN_API_KEYS_CREATE] = "/v1/admin/api-keys",
        [GW_ROUTE_ADMIN_API_KEY_REVOKE] = "/v1/admin/api-keys/{id}/revoke",
        [GW_ROUTE_ADMIN_BREAKERS] = "/v1/admin/circuit_breakers",
        [GW_ROUTE_ADMIN_BREAKER_BAN] = "/v1/admin/circuit_breakers/{agent_id}/ban",
        [GW_ROUTE_ADMIN_BREAKER_RESET] = "/v1/admin/circuit_breakers/{agent_id}/reset",
        [GW_ROUTE_ADMIN_QUARANTINE] = "/v1/admin/quarantine",
        [GW_ROUTE_ADMIN_QUARANTINE_DECISION] = "/v1/admin/quarantine/{hash}/{decision}",
        [GW_ROUTE_UNMATCHED] = "unmatched",
};

uint64_t gw_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void gw_format_unix_ms(uint64_t unix_ms, char out[32])
{
	time_t seconds = (time_t)(unix_ms / 1000u);
	struct tm tm;
	size_t len;

	gmtime_r(&seconds, &tm);
	len = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + len, 32 - len, ".%03uZ", (unsigned)(unix_ms % 1000u));
}

/* Returns true while fewer than GW_LOGS_PER_SECOND messages were allowed this second.
 * Only the loop thread calls it. */
static bool log_allowed(void)
{
	static time_t second;
	static unsigned count;
	time_t now = time(NULL);

	if (now != second) {
		second = now;
		count = 0;
	}
	return ++count <= GW_LOGS_PER_SECOND;
}

static void finish(struct gw_request *r, int status)
{
	char status_text[8];
	const char *values[3];

	snprintf(status_text, sizeof(status_text), "%d", status);
	values[0] = r->method_name;
	values[1] = route_labels[r->route];
	values[2] = status_text;
	metric_inc(metrics_family_child(gw_metrics.requests, values));
	histogram_observe(gw_metrics.request_duration, (double)(gw_now_ns() - r->started_ns) / 1e9);
	free(r);
}

static void free_dumped(const void *data, size_t len, void *arg)
{
	(void)len;
	(void)arg;
	free((void *)data);
}

void gw_reply_json(struct gw_request *r, int status, json_t *body)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(r->req);
	struct evbuffer *out = evhttp_request_get_output_buffer(r->req);
	char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15));

	json_decref(body);
	if (text == NULL) {
		log_error("json_dumps failed for a %d reply to %s", status, route_labels[r->route]);
		status = 500;
		evbuffer_add_printf(out, "{\"error\":{\"code\":\"internal_error\",\"message\":"
		                         "\"The response could not be encoded.\"}}\n");
	} else if (evbuffer_add_reference(out, text, strlen(text), free_dumped, NULL) != 0) {
		free(text);
	} else {
		evbuffer_add(out, "\n", 1);
	}

	evhttp_add_header(headers, "Content-Type", "application/json");
	evhttp_add_header(headers, "Cache-Control", "no-store");
	evhttp_send_reply(r->req, status, NULL, NULL);
	finish(r, status);
}

void gw_reply_bytes(struct gw_request *r, int status, const char *content_type, const void *data,
                    size_t len)
{
	evbuffer_add(evhttp_request_get_output_buffer(r->req), data, len);
	evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Type", content_type);
	evhttp_send_reply(r->req, status, NULL, NULL);
	finish(r, status);
}

void gw_reply_error(struct gw_request *r, int status, const char *code, const char *field,
                    const char *fmt, ...)
{
	char message[1024];
	va_list args;
	json_t *error;

	va_start(args, fmt);
	vsnprintf(message, sizeof(message), fmt, args);
	va_end(args);

	if (status >= 500)
		log_warn("%s %s: %d %s: %s", r->method_name, route_labels[r->route], status, code,
		         message);
	else
		log_debug("%s %s: %d %s: %s", r->method_name, route_labels[r->route], status, code,
		          message);

	error = json_pack("{s:s, s:s}", "code", code, "message", message);
	if (field != NULL && field[0] != '\0')
		json_object_set_new(error, "field", json_string(field));
	gw_reply_json(r, status, json_pack("{s:o}", "error", error));
}

static bool is_media_type(const char *value, const char *type)
{
	size_t len = strlen(type);

	if (strncasecmp(value, type, len) != 0)
		return false;
	return value[len] == '\0' || value[len] == ';' || value[len] == ' ';
}

/* True for application/json, with parameters such as charset. The form type is
 * accepted too, because `curl -d` sends it unless -H sets another type, and the body is
 * parsed as JSON either way. */
static bool is_json_content_type(const char *value)
{
	return is_media_type(value, "application/json") ||
	       is_media_type(value, "application/x-www-form-urlencoded");
}

json_t *gw_read_json_object(struct gw_request *r)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
	const char *type =
	        evhttp_find_header(evhttp_request_get_input_headers(r->req), "Content-Type");
	size_t len = evbuffer_get_length(in);
	json_error_t error;
	json_t *body;

	if (type != NULL && !is_json_content_type(type)) {
		gw_reply_error(r, 415, "unsupported_media_type", NULL,
		               "Content-Type %.100s is not supported; send application/json", type);
		return NULL;
	}
	if (len == 0)
		return json_object();

	body = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES,
	                  &error);
	if (body == NULL) {
		gw_reply_error(r, 400, "invalid_json", NULL,
		               "the body is not valid JSON: %s at line %d, column %d; send a JSON "
		               "object",
		               error.text, error.line, error.column);
		return NULL;
	}
	if (!json_is_object(body)) {
		json_decref(body);
		gw_reply_error(r, 400, "invalid_json", NULL, "the body is not a JSON object");
		return NULL;
	}
	return body;
}

bool gw_reject_unknown_fields(struct gw_request *r, json_t *body, const char *const *known)
{
	const char *key;
	json_t *value;

	json_object_foreach(body, key, value)
	{
		bool found = false;

		for (size_t i = 0; known[i] != NULL && !found; i++)
			found = strcmp(known[i], key) == 0;
		if (!found) {
			gw_reply_error(r, 400, "unknown_field", key,
			               "field \"%.100s\" is not defined for this endpoint", key);
			return false;
		}
	}
	return true;
}

/* True for /v1/admin/quarantine/{64 hex}/approve or /reject. */
static bool is_quarantine_decision_path(const char *path)
{
	static const char prefix[] = "/v1/admin/quarantine/";
	const char *rest;
	size_t hex_len;

	if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
		return false;
	rest = path + sizeof(prefix) - 1;
	hex_len = strspn(rest, "0123456789abcdefABCDEF");
	return hex_len == 64 &&
	       (strcmp(rest + hex_len, "/approve") == 0 || strcmp(rest + hex_len, "/reject") == 0);
}

/* Matches prefix, a non-empty parameter without '/', then suffix. */
static bool path_with_parameter(const struct route *route, const char *path)
{
	size_t prefix_len = strlen(route->path);
	size_t suffix_len = strlen(route->suffix);
	size_t path_len = strlen(path);

	return path_len > prefix_len + suffix_len && strncmp(path, route->path, prefix_len) == 0 &&
	       strcmp(path + path_len - suffix_len, route->suffix) == 0 &&
	       memchr(path + prefix_len, '/', path_len - prefix_len - suffix_len) == NULL;
}

/* Returns the route of path whose method matches, else the first route of path (so
 * that the dispatcher replies 405), else GW_ROUTE_UNMATCHED. */
static enum gw_route find_route(const char *path, enum evhttp_cmd_type method)
{
	enum gw_route first = GW_ROUTE_UNMATCHED;

	if (is_quarantine_decision_path(path))
		return GW_ROUTE_ADMIN_QUARANTINE_DECISION;
	for (int i = 0; i < GW_ROUTE_UNMATCHED; i++) {
		if (routes[i].suffix != NULL ? !path_with_parameter(&routes[i], path)
		                             : strcmp(routes[i].path, path) != 0)
			continue;
		if (routes[i].method == method)
			return (enum gw_route)i;
		if (first == GW_ROUTE_UNMATCHED)
			first = (enum gw_route)i;
	}
	return first;
}

/* Returns the Allow header value of a path: "GET, POST" for /v1/admin/api-keys. */
static const char *allowed_methods(enum gw_route route)
{
	if (route == GW_ROUTE_ADMIN_API_KEYS_LIST || route == GW_ROUTE_ADMIN_API_KEYS_CREATE)
		return "GET, POST";
	return routes[route].method_name;
}

static bool is_admin_path(const char *path)
{
	return strncmp(path, "/v1/admin/", 10) == 0 || strcmp(path, "/v1/admin") == 0;
}

static const char *method_name(enum evhttp_cmd_type method)
{
	switch (method) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	default:
		return "OTHER";
	}
}

/* Checks the bearer token of an admin request. Replies 401 or 403 and returns false
 * when it does not match. */
static bool check_admin_credentials(struct gw_request *r)
{
	enum gw_auth_result result = gw_auth_check(evhttp_request_get_input_headers(r->req));
	const char *values[1];
	char *peer = NULL;
	uint16_t port = 0;

	if (result == GW_AUTH_OK)
		return true;

	values[0] = gw_auth_result_name(result);
	metric_inc(metrics_family_child(gw_metrics.auth_failures, values));
	evhttp_connection_get_peer(evhttp_request_get_connection(r->req), &peer, &port);
	if (log_allowed())
		log_warn("rejected an admin request from %s:%u: credentials %s", peer ? peer : "?",
		         port, values[0]);

	if (result == GW_AUTH_WRONG) {
		gw_reply_error(r, 403, "forbidden", NULL,
		               "the bearer token does not match STEMEDB_ADMIN_TOKEN");
		return false;
	}
	evhttp_add_header(evhttp_request_get_output_headers(r->req), "WWW-Authenticate",
	                  "Bearer realm=\"stemedb-admin\"");
	gw_reply_error(r, 401, "unauthorized", NULL,
	               result == GW_AUTH_MISSING
	                       ? "this endpoint requires the header Authorization: Bearer "
	                         "<STEMEDB_ADMIN_TOKEN>"
	                       : "the Authorization header is malformed; send exactly one "
	                         "header of the form Authorization: Bearer <token>");
	return false;
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct gateway *gw = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	struct gw_request *r = calloc(1, sizeof(*r));

	if (r == NULL)
		abort();
	r->req = req;
	r->gw = gw;
	r->started_ns = gw_now_ns();
	r->method_name = method_name(evhttp_request_get_command(req));
	if (path == NULL || path[0] == '\0')
		path = "/";
	r->path = path;
	r->route = find_route(path, evhttp_request_get_command(req));

	if (is_admin_path(path)) {
		const char *api_key =
		        evhttp_find_header(evhttp_request_get_input_headers(req), "X-API-Key");

		/* With API keys on, an admin-scope key is checked by stemedb-api, and the
		 * dispatch continues once it replies. */
		if (gw->config->auth_enabled && api_key != NULL) {
			gw_check_admin_api_key(r, api_key);
			return;
		}
		if (gw->config->auth_enabled && gw->config->admin_token[0] == '\0') {
			const char *values[] = {"missing_api_key"};

			metric_inc(metrics_family_child(gw_metrics.auth_failures, values));
			gw_reply_error(r, 401, "missing_api_key", "X-API-Key",
			               "STEMEDB_AUTH_ENABLED is true, so this endpoint requires an "
			               "admin-scope key in the X-API-Key header");
			return;
		}
		if (!check_admin_credentials(r))
			return;
	}
	gw_dispatch(r);
}

void gw_dispatch(struct gw_request *r)
{
	struct evhttp_request *req = r->req;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = r->path;

	if (r->route == GW_ROUTE_UNMATCHED) {
		gw_reply_error(r, 404, "not_found", NULL,
		               "no endpoint %.200s on the gateway; see docs/gateway.md", path);
		return;
	}
	if (evhttp_request_get_command(req) != routes[r->route].method) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
		                  allowed_methods(r->route));
		gw_reply_error(r, 405, "method_not_allowed", NULL, "%s accepts only %s", path,
		               allowed_methods(r->route));
		return;
	}
	if (evhttp_uri_get_query(uri) != NULL && r->route != GW_ROUTE_ADMIN_QUARANTINE) {
		gw_reply_error(r, 400, "unknown_parameter", NULL,
		               "%s takes no query parameters; remove the query string", path);
		return;
	}
	routes[r->route].handler(r);
}

struct gw_http_server *gw_http_start(struct gateway *gw, char *err, size_t err_size)
{
	struct gw_http_server *server = calloc(1, sizeof(*server));
	char host[256];
	uint16_t port;

	if (server == NULL)
		abort();
	server->gw = gw;
	if (!config_split_endpoint(gw->config->listen, host, sizeof(host), &port)) {
		snprintf(err, err_size, "STEMEDB_GATEWAY_LISTEN=%.200s is not host:port",
		         gw->config->listen);
		goto failed;
	}

	server->http = evhttp_new(gw->base);
	if (server->http == NULL) {
		snprintf(err, err_size, "evhttp_new failed");
		goto failed;
	}
	evhttp_set_max_body_size(server->http, GW_MAX_BODY_BYTES);
	evhttp_set_max_headers_size(server->http, GW_MAX_HEADER_BYTES);
	evhttp_set_timeout(server->http, GW_CONNECTION_TIMEOUT_S);
	/* Every method reaches the dispatcher, which replies to a wrong one with a JSON 405. */
	evhttp_set_allowed_methods(
	        server->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
	                              EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(server->http, on_request, gw);

	server->bound = evhttp_bind_socket_with_handle(server->http, host, port);
	if (server->bound == NULL) {
		snprintf(err, err_size,
		         "binding the gateway listener to %.200s failed: %s; set "
		         "STEMEDB_GATEWAY_LISTEN to a free local address",
		         gw->config->listen, strerror(errno));
		goto failed;
	}
	return server;

failed:
	gw_http_free(server);
	return NULL;
}

void gw_http_stop_accepting(struct gw_http_server *server)
{
	if (server->bound != NULL)
		evhttp_del_accept_socket(server->http, server->bound);
	server->bound = NULL;
}

void gw_http_free(struct gw_http_server *server)
{
	if (server == NULL)
		return;
	if (server->http != NULL)
		evhttp_free(server->http);
	free(server);
}
