#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <event2/util.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "http_front.h"
#include "http_h2.h"
#include "http_handlers.h"
#include "http_openapi.h"
#include "http_util.h"
#include "protect.h"
#include "rate_limit.h"
#include "stemedb/config.h"
#include "stemedb/log.h"

#define HTTP_LISTEN_BACKLOG 1024

enum route_id {
	ROUTE_ASSERT = 0,
	ROUTE_BATCH,
	ROUTE_ASSERTION_VOTES,
	ROUTE_ASSERTION_SIGNATURES,
	ROUTE_ASSERTION,
	ROUTE_QUERY,
	ROUTE_SKEPTIC,
	ROUTE_SUBJECT,
	ROUTE_LAYERED,
	ROUTE_TRACE,
	ROUTE_AUDIT_QUERIES,
	ROUTE_AUDIT_QUERY,
	ROUTE_FEED,
	ROUTE_AGENT,
	ROUTE_HEALTH,
	ROUTE_READY,
	ROUTE_VOTE,
	ROUTE_EPOCH,
	ROUTE_EPOCHS,
	ROUTE_SOURCES_LIST,
	ROUTE_SOURCES_CREATE,
	ROUTE_SOURCE,
	ROUTE_ALIASES,
	ROUTE_METRICS,
	ROUTE_OPENAPI,
	ROUTE_ADMISSION_STATUS,
	ROUTE_UNMATCHED,
	ROUTE_COUNT
};

struct route {
	const char *path;  /* exact path, or the prefix before the parameter */
	const char *label; /* route template used as the metrics label */
	bool has_param;
	enum http_method method;
	void (*handler)(struct http_call *call);
	/* Text that must end the path after a non-empty parameter without '/', or NULL. */
	const char *suffix;
};

static const struct route routes[ROUTE_COUNT] = {
        [ROUTE_ASSERT] = {"/v1/assert", "/v1/assert", false, HTTP_METHOD_POST, http_handle_assert},
        [ROUTE_BATCH] = {"/v1/assert/batch", "/v1/assert/batch", false, HTTP_METHOD_POST,
                         http_handle_batch},
        [ROUTE_ASSERTION_VOTES] = {"/v1/assertions/", "/v1/assertions/{hash}/votes", true,
                                   HTTP_METHOD_GET, http_handle_assertion_votes, "/votes"},
        [ROUTE_ASSERTION_SIGNATURES] = {"/v1/assertions/", "/v1/assertions/{hash}/signatures", true,
                                        HTTP_METHOD_POST, http_handle_cosign, "/signatures"},
        [ROUTE_ASSERTION] = {"/v1/assertions/", "/v1/assertions/{hash}", true, HTTP_METHOD_GET,
                             http_handle_assertion},
        [ROUTE_QUERY] = {"/v1/query", "/v1/query", false, HTTP_METHOD_GET, http_handle_query_route},
        [ROUTE_SKEPTIC] = {"/v1/skeptic", "/v1/skeptic", false, HTTP_METHOD_GET,
                           http_handle_skeptic},
        [ROUTE_SUBJECT] = {"/v1/subjects/", "/v1/subjects/{subject}", true, HTTP_METHOD_GET,
                           http_handle_subject},
        [ROUTE_LAYERED] = {"/v1/layered", "/v1/layered", false, HTTP_METHOD_GET,
                           http_handle_layered},
        [ROUTE_TRACE] = {"/v1/trace/", "/v1/trace/{hash}", true, HTTP_METHOD_GET,
                         http_handle_trace},
        [ROUTE_AUDIT_QUERIES] = {"/v1/audit/queries", "/v1/audit/queries", false, HTTP_METHOD_GET,
                                 http_handle_audit_queries},
        [ROUTE_AUDIT_QUERY] = {"/v1/audit/query/", "/v1/audit/query/{id}", true, HTTP_METHOD_GET,
                               http_handle_audit_query},
        [ROUTE_FEED] = {"/v1/feed", "/v1/feed", false, HTTP_METHOD_GET, http_handle_feed},
        [ROUTE_AGENT] = {"/v1/agents/", "/v1/agents/{agent_id}", true, HTTP_METHOD_GET,
                         http_handle_agent},
        [ROUTE_HEALTH] = {"/v1/health", "/v1/health", false, HTTP_METHOD_GET, http_handle_health},
        [ROUTE_READY] = {"/v1/ready", "/v1/ready", false, HTTP_METHOD_GET, http_handle_ready},
        [ROUTE_VOTE] = {"/v1/vote", "/v1/vote", false, HTTP_METHOD_POST, http_handle_vote},
        [ROUTE_EPOCH] = {"/v1/epoch", "/v1/epoch", false, HTTP_METHOD_POST, http_handle_epoch},
        [ROUTE_EPOCHS] = {"/v1/epochs/", "/v1/epochs/{id}", true, HTTP_METHOD_GET,
                          http_handle_epoch_get},
        [ROUTE_SOURCES_LIST] = {"/v1/sources", "/v1/sources", false, HTTP_METHOD_GET,
                                http_handle_sources_list},
        [ROUTE_SOURCES_CREATE] = {"/v1/sources", "/v1/sources", false, HTTP_METHOD_POST,
                                  http_handle_source_create},
        [ROUTE_SOURCE] = {"/v1/sources/", "/v1/sources/{hash}", true, HTTP_METHOD_GET,
                          http_handle_source_get},
        [ROUTE_ALIASES] = {"/v1/aliases", "/v1/aliases", false, HTTP_METHOD_POST,
                           http_handle_alias},
        [ROUTE_METRICS] = {"/metrics", "/metrics", false, HTTP_METHOD_GET, http_handle_metrics},
        [ROUTE_OPENAPI] = {"/api-doc/openapi.json", "/api-doc/openapi.json", false, HTTP_METHOD_GET,
                           http_handle_openapi},
        [ROUTE_ADMISSION_STATUS] = {"/v1/admission/status", "/v1/admission/status", false,
                                    HTTP_METHOD_GET, http_handle_admission_status},
        [ROUTE_UNMATCHED] = {NULL, "unmatched", false, HTTP_METHOD_OTHER, NULL},
};

/* Number of lenses that /v1/skeptic evaluates: recency, confidence, consensus,
 * authority and vote. */
#define SKEPTIC_LENSES 5

/* How the protection layers treat each route (see protect.h). Routes left out have no
 * agent scope. */
static const struct protect_route route_protection[ROUTE_COUNT] = {
        [ROUTE_ASSERT] = {PROTECT_WRITE, 0},
        [ROUTE_BATCH] = {PROTECT_WRITE, 0},
        [ROUTE_ASSERTION_VOTES] = {PROTECT_READ, 0},
        [ROUTE_ASSERTION_SIGNATURES] = {PROTECT_WRITE_VOTE, 0},
        [ROUTE_ASSERTION] = {PROTECT_READ, 0},
        [ROUTE_QUERY] = {PROTECT_QUERY, 1},
        [ROUTE_SKEPTIC] = {PROTECT_QUERY, SKEPTIC_LENSES},
        [ROUTE_SUBJECT] = {PROTECT_READ, 0},
        [ROUTE_LAYERED] = {PROTECT_QUERY, 1},
        [ROUTE_TRACE] = {PROTECT_READ, 0},
        [ROUTE_AUDIT_QUERIES] = {PROTECT_READ, 0},
        [ROUTE_AUDIT_QUERY] = {PROTECT_READ, 0},
        [ROUTE_FEED] = {PROTECT_READ, 0},
        [ROUTE_AGENT] = {PROTECT_READ, 0},
        [ROUTE_VOTE] = {PROTECT_WRITE_VOTE, 0},
        [ROUTE_EPOCH] = {PROTECT_WRITE, 0},
        [ROUTE_EPOCHS] = {PROTECT_READ, 0},
        [ROUTE_SOURCES_LIST] = {PROTECT_READ, 0},
        [ROUTE_SOURCES_CREATE] = {PROTECT_WRITE, 0},
        [ROUTE_SOURCE] = {PROTECT_READ, 0},
        [ROUTE_ALIASES] = {PROTECT_WRITE, 0},
};

static const char *const method_names[] = {"GET", "POST", "HEAD", "OTHER"};

/* Statuses that get a cached counter per worker; others take the family's lock. */
static const int cached_statuses[] = {200, 201, 400, 404, 405, 413, 415, 422, 500, 503};
#define STATUS_SLOTS (sizeof(cached_statuses) / sizeof(cached_statuses[0]))
#define METHOD_SLOTS 4

/* Open-addressing set of the connections a worker has seen a request on. */
struct connection_set {
	struct evhttp_connection **slots;
	size_t capacity; /* a power of two */
	size_t count;
};

struct http_worker {
	struct http_server *server;
	size_t index;
	pthread_t thread;
	bool thread_started;
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	struct evhttp *internal_http; /* the internal listener of forwarded HTTP/2 streams */
	struct http_front_worker *front;
	struct event *resume_event;
	struct event *stop_event;
	pthread_mutex_t resume_lock;
	struct http_call *resume_head;
	struct http_call *resume_tail;
	bool stopping;           /* worker thread only */
	bool paused;             /* listener disabled at the connection limit */
	size_t connection_limit; /* this worker's share of STEMEDB_MAX_CONNECTIONS */
	struct connection_set connections;
	struct timeval idle_timeout;
	struct metric *request_counters[ROUTE_COUNT][METHOD_SLOTS][STATUS_SLOTS];
};

struct http_server {
	struct api_state *state;
	struct http_worker *workers;
	size_t worker_count;
	atomic_uint_fast64_t in_flight;
	atomic_size_t stopped_workers;
	struct http_h2_front *h2; /* NULL unless STEMEDB_HTTP2_LISTEN is set */
	struct http_front *front;
	uint16_t internal_port; /* internal listener on 127.0.0.1 */
	char token[HTTP_H2_TOKEN_HEX + 1];
	char **origins; /* STEMEDB_ALLOWED_ORIGINS split at commas */
	size_t origin_count;
	bool any_origin; /* STEMEDB_ALLOWED_ORIGINS is * */
};

uint64_t http_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t pointer_slot(const void *p, size_t capacity)
{
	return (size_t)((((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull) >> 20) & (capacity - 1);
}

static void connection_set_grow(struct connection_set *set)
{
	struct connection_set bigger = {0};

	bigger.capacity = set->capacity == 0 ? 64 : set->capacity * 2;
	bigger.slots = calloc(bigger.capacity, sizeof(*bigger.slots));
	if (bigger.slots == NULL)
		abort();

	for (size_t i = 0; i < set->capacity; i++) {
		size_t slot;

		if (set->slots[i] == NULL)
			continue;
		slot = pointer_slot(set->slots[i], bigger.capacity);
		while (bigger.slots[slot] != NULL)
			slot = (slot + 1) & (bigger.capacity - 1);
		bigger.slots[slot] = set->slots[i];
		bigger.count++;
	}
	free(set->slots);
	*set = bigger;
}

/* Adds conn; returns false when it was present already. */
static bool connection_set_add(struct connection_set *set, struct evhttp_connection *conn)
{
	size_t slot;

	if ((set->count + 1) * 2 > set->capacity)
		connection_set_grow(set);

	slot = pointer_slot(conn, set->capacity);
	while (set->slots[slot] != NULL) {
		if (set->slots[slot] == conn)
			return false;
		slot = (slot + 1) & (set->capacity - 1);
	}
	set->slots[slot] = conn;
	set->count++;
	return true;
}

/* Removes conn with backward-shift deletion, so linear probing needs no tombstones. */
static void connection_set_remove(struct connection_set *set, struct evhttp_connection *conn)
{
	size_t mask = set->capacity - 1;
	size_t hole;

	if (set->capacity == 0)
		return;
	hole = pointer_slot(conn, set->capacity);
	while (set->slots[hole] != conn) {
		if (set->slots[hole] == NULL)
			return;
		hole = (hole + 1) & mask;
	}
	set->slots[hole] = NULL;
	set->count--;

	for (size_t next = (hole + 1) & mask; set->slots[next] != NULL; next = (next + 1) & mask) {
		size_t home = pointer_slot(set->slots[next], set->capacity);

		/* Move the entry back when its home slot is not inside (hole, next]. */
		if (((next - home) & mask) >= ((next - hole) & mask)) {
			set->slots[hole] = set->slots[next];
			set->slots[next] = NULL;
			hole = next;
		}
	}
}

static void http_worker_set_paused(struct http_worker *w, bool paused)
{
	struct evconnlistener *listener = evhttp_bound_socket_get_listener(w->bound);

	/* A stopping worker keeps its listener disabled, and during evhttp_free the
	 * listener is gone before the connections close. */
	if (paused == w->paused || w->stopping)
		return;
	w->paused = paused;
	if (paused) {
		evconnlistener_disable(listener);
		log_warn("HTTP worker %zu reached its share of %zu connections; new connections "
		         "wait in the listen backlog until one closes",
		         w->index, w->connection_limit);
	} else if (!w->stopping) {
		evconnlistener_enable(listener);
	}
}

static void on_connection_close(struct evhttp_connection *conn, void *arg)
{
	struct http_worker *w = arg;

	connection_set_remove(&w->connections, conn);
	metric_add(http_metrics.connections, -1);
	if (w->connections.count < w->connection_limit)
		http_worker_set_paused(w, false);
}

/* Counts a connection on its first request, sets its keep-alive idle timeout, and
 * stops accepting once this worker has reached its share of the connection limit. */
static void http_worker_track(struct http_worker *w, struct evhttp_connection *conn)
{
	if (conn == NULL || !connection_set_add(&w->connections, conn))
		return;

	metric_add(http_metrics.connections, 1);
	evhttp_connection_set_closecb(conn, on_connection_close, w);
	evhttp_connection_set_timeout_tv(conn, &w->idle_timeout);
	if (w->connections.count >= w->connection_limit)
		http_worker_set_paused(w, true);
}

static enum http_method method_of(struct evhttp_request *req);

/* Names every method that evhttp lets through, for messages. */
static const char *method_text(struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	default:
		return method_names[method_of(req)];
	}
}

static enum http_method method_of(struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
		return HTTP_METHOD_GET;
	case EVHTTP_REQ_POST:
		return HTTP_METHOD_POST;
	case EVHTTP_REQ_HEAD:
		return HTTP_METHOD_HEAD;
	default:
		return HTTP_METHOD_OTHER;
	}
}

static bool route_path_matches(const struct route *route, const char *path)
{
	size_t len = strlen(route->path);
	size_t path_len = strlen(path);
	size_t suffix_len;

	if (!route->has_param)
		return strcmp(path, route->path) == 0;
	if (strncmp(path, route->path, len) != 0 || path[len] == '\0')
		return false;
	if (route->suffix == NULL)
		return true;

	suffix_len = strlen(route->suffix);
	return path_len > len + suffix_len &&
	       strcmp(path + path_len - suffix_len, route->suffix) == 0 &&
	       memchr(path + len, '/', path_len - len - suffix_len) == NULL;
}

/* Returns the first route whose path and method match, else the first whose path
 * matches (so that the dispatch replies 405), else ROUTE_UNMATCHED. A route with a
 * suffix claims its paths, so GET /v1/assertions/{hash}/signatures is a 405 and not a
 * lookup of the hash "{hash}/signatures". */
static enum route_id route_match(const char *path, int method)
{
	enum http_method wanted =
	        method == HTTP_METHOD_HEAD ? HTTP_METHOD_GET : (enum http_method)method;
	enum route_id first = ROUTE_UNMATCHED;
	bool suffix_matched = false;

	for (int i = 0; i < ROUTE_UNMATCHED; i++) {
		if (!route_path_matches(&routes[i], path) ||
		    (suffix_matched && routes[i].suffix == NULL))
			continue;
		if (routes[i].method == wanted)
			return (enum route_id)i;
		if (first == ROUTE_UNMATCHED)
			first = (enum route_id)i;
		suffix_matched = suffix_matched || routes[i].suffix != NULL;
	}
	return first;
}

/* Returns the Allow header value of a route: the methods of every route with the same
 * path template (/v1/sources takes GET and POST). */
static const char *route_allowed_methods(const struct route *route)
{
	bool get = false;
	bool post = false;

	for (int i = 0; i < ROUTE_UNMATCHED; i++) {
		if (strcmp(routes[i].label, route->label) != 0)
			continue;
		get = get || routes[i].method == HTTP_METHOD_GET;
		post = post || routes[i].method == HTTP_METHOD_POST;
	}
	if (get && post)
		return "GET, HEAD, POST";
	return get ? "GET, HEAD" : "POST";
}

/* Returns the class that picks a route's API key scope and rate limit. */
static enum http_route_class route_class_of(enum route_id route)
{
	switch (route) {
	case ROUTE_HEALTH:
	case ROUTE_READY:
	case ROUTE_METRICS:
	case ROUTE_UNMATCHED:
		return HTTP_ROUTE_CLASS_EXEMPT;
	case ROUTE_AUDIT_QUERIES:
	case ROUTE_AUDIT_QUERY:
	case ROUTE_OPENAPI:
		return HTTP_ROUTE_CLASS_OTHER;
	default:
		return routes[route].method == HTTP_METHOD_POST ? HTTP_ROUTE_CLASS_WRITE
		                                                : HTTP_ROUTE_CLASS_READ;
	}
}

static void http_dispatch(struct http_call *call)
{
	const struct route *route = &routes[call->route];
	enum http_method method =
	        call->method == HTTP_METHOD_HEAD ? HTTP_METHOD_GET : (enum http_method)call->method;

	if (call->route == ROUTE_UNMATCHED) {
		http_reply_error(call, 404, "not_found", NULL,
		                 "No endpoint matches the path '%.200s'; see docs/api.md for "
		                 "the list of endpoints.",
		                 call->path);
		return;
	}
	if (method != route->method) {
		const char *allow = route_allowed_methods(route);

		evhttp_add_header(evhttp_request_get_output_headers(call->req), "Allow", allow);
		http_reply_error(call, 405, "method_not_allowed", NULL,
		                 "%s is not allowed on %s; use %s.", call->method_name,
		                 route->label, allow);
		return;
	}

	/* Protection layers, outermost first. The per-agent layers run here for requests
	 * that send X-Agent-Id, and from the write handlers (after the body names the
	 * signer) for those that do not. */
	if (!protect_http_identify(call, route_protection[call->route]) ||
	    !protect_http_breaker(call))
		return;
	if (!auth_check(call))
		return;
	if (!rate_limit_check(call))
		return;
	if (!protect_http_admit(call, route_protection[call->route]))
		return;
	route->handler(call);
}

#define CORS_ALLOWED_HEADERS "Content-Type, X-API-Key, X-Agent-Id, X-PoW-Nonce, X-PoW-Timestamp"
#define CORS_EXPOSED_HEADERS "Retry-After, X-Quota-Limit, X-Quota-Remaining, X-Quota-Reset"
#define CORS_MAX_AGE_SECONDS "600"

static bool cors_origin_allowed(const struct http_server *server, const char *origin)
{
	if (server->any_origin)
		return true;
	for (size_t i = 0; i < server->origin_count; i++) {
		if (strcmp(server->origins[i], origin) == 0)
			return true;
	}
	return false;
}

/* Adds the CORS headers of the reply. Returns true when it has sent the reply to a
 * preflight request (OPTIONS with Origin and Access-Control-Request-Method) itself. */
static bool http_cors(struct http_call *call)
{
	const struct http_server *server = call->worker->server;
	struct evkeyvalq *in = evhttp_request_get_input_headers(call->req);
	struct evkeyvalq *out = evhttp_request_get_output_headers(call->req);
	const char *origin = evhttp_find_header(in, "Origin");
	bool preflight = evhttp_request_get_command(call->req) == EVHTTP_REQ_OPTIONS &&
	                 origin != NULL &&
	                 evhttp_find_header(in, "Access-Control-Request-Method") != NULL;

	if (!server->any_origin && server->origin_count == 0)
		return false;
	evhttp_add_header(out, "Vary", "Origin");
	if (origin == NULL)
		return false;
	if (!cors_origin_allowed(server, origin)) {
		if (!preflight)
			return false;
		http_reply_error(call, 403, "origin_not_allowed", "Origin",
		                 "The origin '%.200s' is not in STEMEDB_ALLOWED_ORIGINS; add it "
		                 "there to allow browser requests from it.",
		                 origin);
		return true;
	}

	evhttp_add_header(out, "Access-Control-Allow-Origin", server->any_origin ? "*" : origin);
	evhttp_add_header(out, "Access-Control-Expose-Headers", CORS_EXPOSED_HEADERS);
	if (!preflight)
		return false;
	if (call->route == ROUTE_UNMATCHED) {
		http_reply_error(call, 404, "not_found", NULL,
		                 "No endpoint matches the path '%.200s'; see docs/api.md for "
		                 "the list of endpoints.",
		                 call->path);
		return true;
	}
	evhttp_add_header(out, "Access-Control-Allow-Methods",
	                  route_allowed_methods(&routes[call->route]));
	evhttp_add_header(out, "Access-Control-Allow-Headers", CORS_ALLOWED_HEADERS);
	evhttp_add_header(out, "Access-Control-Max-Age", CORS_MAX_AGE_SECONDS);
	evhttp_send_reply(call->req, 204, "No Content", NULL);
	http_call_finish(call, 204);
	return true;
}

/* Sets up a call for req from client and dispatches it. */
static void http_start_call(struct http_worker *w, struct evhttp_request *req, const char *client,
                            bool via_http2)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	struct http_call *call = calloc(1, sizeof(*call));

	if (call == NULL)
		abort();
	atomic_fetch_add_explicit(&w->server->in_flight, 1, memory_order_relaxed);
	snprintf(call->client, sizeof(call->client), "%s", client);
	call->via_http2 = via_http2;

	call->req = req;
	call->worker = w;
	call->state = w->server->state;
	call->started_ns = http_now_ns();
	call->method = method_of(req);
	call->method_name = method_text(req);
	call->shutting_down = w->stopping;
	call->path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	call->query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	if (call->path == NULL || call->path[0] == '\0')
		call->path = "/";
	call->route = route_match(call->path, call->method);
	call->route_class = route_class_of((enum route_id)call->route);

	if (http_cors(call))
		return;
	http_dispatch(call);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct http_worker *w = arg;
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	char *peer = NULL;
	ev_uint16_t port = 0;

	http_worker_track(w, conn);
	http_front_request_started(w->front, conn);
	if (conn != NULL)
		evhttp_connection_get_peer(conn, &peer, &port);
	http_start_call(w, req, peer != NULL ? peer : "unknown", false);
}

/* Compares the forwarding token in constant time. */
static bool http_token_matches(const char *expected, const char *given)
{
	unsigned char diff = 0;

	if (given == NULL || strlen(given) != HTTP_H2_TOKEN_HEX)
		return false;
	for (size_t i = 0; i < HTTP_H2_TOKEN_HEX; i++)
		diff |= (unsigned char)(expected[i] ^ given[i]);
	return diff == 0;
}

/* Serves a stream forwarded by the HTTP/2 side. The client address comes from the
 * forwarded-for header, which is trusted only next to the process's own token. */
static void on_internal_request(struct evhttp_request *req, void *arg)
{
	struct http_worker *w = arg;
	struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
	const char *token = evhttp_find_header(headers, HTTP_H2_FORWARD_TOKEN);
	const char *client = evhttp_find_header(headers, HTTP_H2_FORWARDED_FOR);
	char address[64];
	unsigned char ip[sizeof(struct in6_addr)];

	if (!http_token_matches(w->server->token, token) || client == NULL ||
	    strlen(client) >= sizeof(address) ||
	    (inet_pton(AF_INET, client, ip) != 1 && inet_pton(AF_INET6, client, ip) != 1)) {
		log_warn("rejected a request on the internal HTTP/2 forwarding listener: the "
		         "forwarding token or client address is missing or invalid");
		http_count_rejection("forwarding_token");
		evhttp_send_error(req, 403, "Forbidden");
		return;
	}
	snprintf(address, sizeof(address), "%s", client);
	evhttp_remove_header(headers, HTTP_H2_FORWARD_TOKEN);
	evhttp_remove_header(headers, HTTP_H2_FORWARDED_FOR);
	http_start_call(w, req, address, true);
}

static int status_slot(int status)
{
	for (size_t i = 0; i < STATUS_SLOTS; i++) {
		if (cached_statuses[i] == status)
			return (int)i;
	}
	return -1;
}

static void http_count_request(struct http_call *call, int status)
{
	struct http_worker *w = call->worker;
	int slot = status_slot(status);
	char status_text[8];
	const char *labels[3] = {method_names[call->method], routes[call->route].label,
	                         status_text};
	struct metric **cached;

	snprintf(status_text, sizeof(status_text), "%d", status);
	if (slot < 0) {
		metric_inc(metrics_family_child(http_metrics.requests, labels));
		return;
	}

	cached = &w->request_counters[call->route][call->method][slot];
	if (*cached == NULL)
		*cached = metrics_family_child(http_metrics.requests, labels);
	metric_inc(*cached);
}

void http_call_finish(struct http_call *call, int status)
{
	struct http_server *server = call->worker->server;

	histogram_observe(http_metrics.request_duration,
	                  (double)(http_now_ns() - call->started_ns) / 1e9);
	http_count_request(call, status);
	protect_http_finish(call, status);
	atomic_fetch_sub_explicit(&server->in_flight, 1, memory_order_release);
	free(call);
}

void http_call_resume(struct http_call *call)
{
	struct http_worker *w = call->worker;

	call->next_resume = NULL;
	pthread_mutex_lock(&w->resume_lock);
	if (w->resume_tail != NULL)
		w->resume_tail->next_resume = call;
	else
		w->resume_head = call;
	w->resume_tail = call;
	pthread_mutex_unlock(&w->resume_lock);

	event_active(w->resume_event, EV_READ, 0);
}

static void on_resume_ready(evutil_socket_t fd, short events, void *arg)
{
	struct http_worker *w = arg;
	struct http_call *call;

	(void)fd;
	(void)events;
	pthread_mutex_lock(&w->resume_lock);
	call = w->resume_head;
	w->resume_head = NULL;
	w->resume_tail = NULL;
	pthread_mutex_unlock(&w->resume_lock);

	while (call != NULL) {
		struct http_call *next = call->next_resume;

		call->on_resume(call);
		call = next;
	}
}

static void on_stop_accepting(evutil_socket_t fd, short events, void *arg)
{
	struct http_worker *w = arg;

	(void)fd;
	(void)events;
	w->stopping = true;
	evconnlistener_disable(evhttp_bound_socket_get_listener(w->bound));
	atomic_fetch_add(&w->server->stopped_workers, 1);
}

/* Returns a listening socket: the one systemd passed (socket activation), or a new
 * one bound to endpoint. Returns -1 with a message in err. */
static int http_listen_socket(const char *endpoint, char *err, size_t err_size)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *addresses = NULL;
	char host[256], port_text[8];
	uint16_t port;
	int fd = -1, one = 1, rc;

	if (sd_listen_fds(0) >= 1) {
		fd = SD_LISTEN_FDS_START;
		if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
			snprintf(err, err_size,
			         "systemd passed fd %d, which is not a listening TCP socket; "
			         "fix the socket unit",
			         fd);
			return -1;
		}
		evutil_make_socket_nonblocking(fd);
		return fd;
	}

	if (!config_split_endpoint(endpoint, host, sizeof(host), &port)) {
		snprintf(err, err_size, "STEMEDB_API_LISTEN '%s' is not host:port", endpoint);
		return -1;
	}
	snprintf(port_text, sizeof(port_text), "%u", port);
	rc = getaddrinfo(host, port_text, &hints, &addresses);
	if (rc != 0) {
		snprintf(err, err_size, "getaddrinfo(\"%s\") failed for STEMEDB_API_LISTEN: %s",
		         host, gai_strerror(rc));
		return -1;
	}

	fd = socket(addresses->ai_family, addresses->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, addresses->ai_addr, addresses->ai_addrlen) != 0 ||
	    listen(fd, HTTP_LISTEN_BACKLOG) != 0) {
		snprintf(err, err_size,
		         "listening on %s failed: %s; choose a free address in "
		         "STEMEDB_API_LISTEN",
		         endpoint, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(addresses);
	return fd;
}

static void timeval_from_ms(struct timeval *tv, uint64_t ms)
{
	tv->tv_sec = (time_t)(ms / 1000);
	tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
}

/* Sets up one worker's event_base and evhttp on its own duplicate of the listening
 * socket. Each evhttp closes its descriptor when freed, so sharing one number would
 * close it twice. */
static void http_configure_evhttp(struct evhttp *http, const struct api_config *cfg,
                                  const struct timeval *read_timeout)
{
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	                                         EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_max_body_size(http, (ev_ssize_t)cfg->max_batch_body_bytes);
	evhttp_set_max_headers_size(http, (ev_ssize_t)cfg->max_header_bytes);
	evhttp_set_timeout_tv(http, read_timeout);
}

/* Sets up the worker's evhttp for the internal listener, on its own duplicate of
 * internal_fd. */
static bool http_worker_init_internal(struct http_worker *w, int internal_fd,
                                      const struct timeval *read_timeout, char *err,
                                      size_t err_size)
{
	const struct api_config *cfg = w->server->state->config;
	struct http_h2_limits limits = {.max_body_bytes = cfg->max_batch_body_bytes,
	                                .max_header_bytes = cfg->max_header_bytes,
	                                .max_streams = 100,
	                                .idle_timeout_ms = cfg->idle_timeout_ms};
	int fd;

	w->internal_http = evhttp_new(w->base);
	if (w->internal_http == NULL) {
		snprintf(err, err_size, "evhttp_new failed for the internal listener of worker %zu",
		         w->index);
		return false;
	}
	http_configure_evhttp(w->internal_http, cfg, read_timeout);
	evhttp_set_gencb(w->internal_http, on_internal_request, w);
	fd = fcntl(internal_fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0 || evhttp_accept_socket_with_handle(w->internal_http, fd) == NULL) {
		snprintf(err, err_size,
		         "accepting on the internal listener failed for worker %zu: %s", w->index,
		         strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	w->front = http_front_worker_new(w->server->front, w->base, w->http, &limits,
	                                 w->server->internal_port, w->server->token);
	return true;
}

static bool http_worker_init(struct http_worker *w, int listen_fd, int internal_fd, char *err,
                             size_t err_size)
{
	const struct api_config *cfg = w->server->state->config;
	struct timeval read_timeout;
	int fd;

	pthread_mutex_init(&w->resume_lock, NULL);
	timeval_from_ms(&read_timeout, cfg->read_timeout_ms);
	timeval_from_ms(&w->idle_timeout, cfg->idle_timeout_ms);
	w->connection_limit =
	        (cfg->max_connections + w->server->worker_count - 1) / w->server->worker_count;

	w->base = event_base_new();
	w->http = w->base != NULL ? evhttp_new(w->base) : NULL;
	if (w->http == NULL) {
		snprintf(err, err_size, "event_base_new or evhttp_new failed for worker %zu",
		         w->index);
		return false;
	}
	http_configure_evhttp(w->http, cfg, &read_timeout);
	evhttp_set_gencb(w->http, on_request, w);
	if (!http_worker_init_internal(w, internal_fd, &read_timeout, err, err_size))
		return false;

	fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 0);
	w->bound = fd >= 0 ? evhttp_accept_socket_with_handle(w->http, fd) : NULL;
	if (w->bound == NULL) {
		snprintf(err, err_size,
		         "accepting on the listening socket failed for worker %zu: %s", w->index,
		         strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}

	w->resume_event = event_new(w->base, -1, EV_PERSIST, on_resume_ready, w);
	w->stop_event = event_new(w->base, -1, 0, on_stop_accepting, w);
	return w->resume_event != NULL && w->stop_event != NULL;
}

static void *http_worker_main(void *arg)
{
	struct http_worker *w = arg;

	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

/* Starts the extra HTTP/2 listener when STEMEDB_HTTP2_LISTEN is set. Its sessions
 * forward to the internal listener like those on the API port. */
static bool http_server_start_h2(struct http_server *server, char *err, size_t err_size)
{
	const struct api_config *cfg = server->state->config;
	struct http_h2_limits limits = {.max_body_bytes = cfg->max_batch_body_bytes,
	                                .max_header_bytes = cfg->max_header_bytes,
	                                .max_streams = 100,
	                                .idle_timeout_ms = cfg->idle_timeout_ms};

	if (cfg->http2_listen[0] == '\0')
		return true;
	server->h2 = http_h2_front_start(cfg->http2_listen, server->internal_port, server->token,
	                                 &limits, err, err_size);
	return server->h2 != NULL;
}

/* Creates the internal listener on 127.0.0.1 with an ephemeral port, which only the
 * HTTP/2 side connects to. Returns -1 with a message in err. */
static int http_internal_socket(uint16_t *port, char *err, size_t err_size)
{
	struct sockaddr_in address = {.sin_family = AF_INET,
	                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(address);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof(address)) != 0 ||
	    listen(fd, HTTP_LISTEN_BACKLOG) != 0 ||
	    getsockname(fd, (struct sockaddr *)&address, &len) != 0) {
		snprintf(err, err_size,
		         "creating the internal HTTP/2 forwarding listener on "
		         "127.0.0.1 failed: %s",
		         strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(address.sin_port);
	return fd;
}

/* Fills server->token with 32 random bytes in hex. */
static bool http_make_token(struct http_server *server, char *err, size_t err_size)
{
	unsigned char bytes[HTTP_H2_TOKEN_HEX / 2];

	if (getrandom(bytes, sizeof(bytes), 0) != (ssize_t)sizeof(bytes)) {
		snprintf(err, err_size, "getrandom() failed for the forwarding token: %s",
		         strerror(errno));
		return false;
	}
	for (size_t i = 0; i < sizeof(bytes); i++)
		snprintf(server->token + 2 * i, 3, "%02x", bytes[i]);
	return true;
}

/* Splits STEMEDB_ALLOWED_ORIGINS. Each origin is scheme://host[:port] without a
 * trailing slash, or the whole value is *. */
static bool http_parse_origins(struct http_server *server, const char *text, char *err,
                               size_t err_size)
{
	char *copy, *item, *save = NULL;

	if (strcmp(text, "*") == 0) {
		server->any_origin = true;
		return true;
	}
	copy = strdup(text);
	if (copy == NULL)
		abort();
	for (item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
		char *end;

		while (*item == ' ')
			item++;
		end = item + strlen(item);
		while (end > item && end[-1] == ' ')
			*--end = '\0';
		if (*item == '\0')
			continue;
		if ((strncmp(item, "http://", 7) != 0 && strncmp(item, "https://", 8) != 0) ||
		    end[-1] == '/' || strchr(item, '*') != NULL) {
			snprintf(err, err_size,
			         "STEMEDB_ALLOWED_ORIGINS entry '%.200s' is not an origin; write "
			         "scheme://host[:port] without a path, or the single value *",
			         item);
			free(copy);
			return false;
		}
		server->origins = realloc(server->origins,
		                          (server->origin_count + 1) * sizeof(*server->origins));
		if (server->origins == NULL)
			abort();
		server->origins[server->origin_count] = strdup(item);
		if (server->origins[server->origin_count] == NULL)
			abort();
		server->origin_count++;
	}
	free(copy);
	return true;
}

struct http_server *http_server_start(struct api_state *state, char *err, size_t err_size)
{
	struct http_server *server = calloc(1, sizeof(*server));
	int listen_fd, internal_fd;

	if (server == NULL)
		abort();
	server->state = state;
	server->worker_count = state->config->http_threads;
	server->workers = calloc(server->worker_count, sizeof(*server->workers));
	if (server->workers == NULL)
		abort();

	if (!http_make_token(server, err, err_size) ||
	    !http_parse_origins(server, state->config->allowed_origins, err, err_size) ||
	    (server->front = http_front_new(state->config, err, err_size)) == NULL) {
		http_server_free(server, 0);
		return NULL;
	}
	internal_fd = http_internal_socket(&server->internal_port, err, err_size);
	if (internal_fd < 0) {
		http_server_free(server, 0);
		return NULL;
	}
	listen_fd = http_listen_socket(state->config->listen, err, err_size);
	if (listen_fd < 0) {
		close(internal_fd);
		http_server_free(server, 0);
		return NULL;
	}

	for (size_t i = 0; i < server->worker_count; i++) {
		struct http_worker *w = &server->workers[i];

		w->server = server;
		w->index = i;
		if (!http_worker_init(w, listen_fd, internal_fd, err, err_size) ||
		    pthread_create(&w->thread, NULL, http_worker_main, w) != 0) {
			close(listen_fd);
			close(internal_fd);
			http_server_free(server, 0);
			return NULL;
		}
		w->thread_started = true;
	}
	close(listen_fd);
	close(internal_fd);
	log_info("HTTP/1.1 and HTTP/2 (h2c, unless TLS is on) share %s; HTTP/2 streams are "
	         "served through the internal listener 127.0.0.1:%u",
	         state->config->listen, server->internal_port);

	if (!http_server_start_h2(server, err, err_size)) {
		http_server_free(server, 0);
		return NULL;
	}
	return server;
}

void http_server_stop_accepting(struct http_server *server)
{
	uint64_t deadline = http_now_ns() + 5000000000ull;

	for (size_t i = 0; i < server->worker_count; i++)
		event_active(server->workers[i].stop_event, EV_READ, 0);

	/* Wait until every worker has seen the stop, so that none submits a write
	 * after the caller goes on to stop the commit pipeline. */
	while (atomic_load(&server->stopped_workers) < server->worker_count &&
	       http_now_ns() < deadline)
		usleep(1000);
}

uint64_t http_server_in_flight(struct http_server *server)
{
	return atomic_load_explicit(&server->in_flight, memory_order_acquire);
}

void http_server_free(struct http_server *server, uint64_t grace_ms)
{
	struct timeval grace;

	timeval_from_ms(&grace, grace_ms);
	if (server->h2 != NULL)
		http_h2_front_stop(server->h2);
	for (size_t i = 0; i < server->worker_count; i++) {
		struct http_worker *w = &server->workers[i];

		if (w->thread_started) {
			event_base_loopexit(w->base, &grace);
			pthread_join(w->thread, NULL);
		}
	}

	for (size_t i = 0; i < server->worker_count; i++) {
		struct http_worker *w = &server->workers[i];

		w->stopping = true;
		if (w->http != NULL)
			evhttp_free(w->http);
		if (w->internal_http != NULL)
			evhttp_free(w->internal_http);
		if (w->resume_event != NULL)
			event_free(w->resume_event);
		if (w->stop_event != NULL)
			event_free(w->stop_event);
		if (w->base != NULL)
			event_base_free(w->base);
		/* Freed after the base, whose finalizers free the filters that use it. */
		if (w->front != NULL)
			http_front_worker_free(w->front);
		free(w->connections.slots);
		pthread_mutex_destroy(&w->resume_lock);
	}
	if (server->front != NULL)
		http_front_free(server->front);
	for (size_t i = 0; i < server->origin_count; i++)
		free(server->origins[i]);
	free(server->origins);
	free(server->workers);
	free(server);
}
