#ifndef STEMEDB_HTTP_SERVER_H
#define STEMEDB_HTTP_SERVER_H

/* The HTTP side of stemedb-api: worker threads, each with its own event_base and
 * evhttp, all accepting from one shared listening socket. Handlers run on the worker
 * that received the request. Writes are handed to the commit pipeline, whose writer
 * thread returns each finished call to its worker through that worker's completion
 * list, so every reply is sent from the thread that owns the connection. */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api_config.h"
#include "commit.h"
#include "store.h"

struct audit_log;
struct protect;
struct evhttp_request;
struct http_worker;

/* State shared by every worker. The pipeline pointer stays NULL until WAL replay
 * has finished; handlers that need it reply 503 before that. */
struct api_state {
	const struct api_config *config;
	struct store *store;
	struct audit_log *audit; /* NULL when auditing is off */
	struct protect *protect; /* circuit breaker, admission and quota */
	_Atomic(struct commit_pipeline *) pipeline;
	atomic_bool recovery_failed;
	uint64_t started_ns; /* CLOCK_MONOTONIC at start-up */
	char node_id[37];    /* UUID text */
};

/* Endpoint classes of the protection layers: API key scopes and rate limits. */
enum http_route_class {
	HTTP_ROUTE_CLASS_EXEMPT = 0, /* health, ready, metrics: no key, no rate limit */
	HTTP_ROUTE_CLASS_WRITE,      /* POST routes: write scope */
	HTTP_ROUTE_CLASS_READ,       /* GET routes that read stored data: read scope */
	HTTP_ROUTE_CLASS_OTHER,      /* the OpenAPI document and the audit log: read scope */
	HTTP_ROUTE_CLASS_COUNT
};

/* One request being handled. It lives from the dispatch until the reply is sent,
 * possibly across threads while a write is in the commit pipeline. */
struct http_call {
	struct evhttp_request *req;
	struct http_worker *worker;
	struct api_state *state;
	int route;               /* index into the route table, for metrics */
	int method;              /* enum http_method */
	const char *method_name; /* as sent, for messages: "PUT" where method is OTHER */
	uint64_t started_ns;     /* CLOCK_MONOTONIC when dispatched */
	const char *path;        /* raw request path, percent-encoded */
	const char *query;       /* raw query string or NULL */
	bool shutting_down;      /* the worker takes no new writes: stop has begun */
	enum http_route_class route_class;
	/* Set by auth_check from a valid X-API-Key and the X-Agent-Id header. */
	bool key_known;
	uint8_t key_id[8];
	bool key_agent_bound;
	uint8_t key_agent[32];

	/* Requesting agent and protection state, set by protect.c. */
	bool agent_known;       /* agent is the X-Agent-Id header or the body's signer */
	bool agent_from_header; /* agent came from X-Agent-Id */
	bool admitted;          /* admission and quota have run for this call */
	int protect_class;      /* enum protect_class of the route */
	uint8_t protect_lenses;
	uint8_t agent[32];
	char error_code[40]; /* code of the error reply, empty on success */
	/* Numeric IP address of the client: the TCP peer, or for a stream forwarded by
	 * the HTTP/2 side the peer of the HTTP/2 connection. Per-client limits key on it. */
	char client[64];
	bool via_http2; /* forwarded by the HTTP/2 side over the internal listener */

	/* Set by a handler that waits for the commit pipeline: called on the worker
	 * thread once the writer has completed every request of this call. */
	void (*on_resume)(struct http_call *call);
	void *work;
	struct http_call *next_resume;
};

enum http_method { HTTP_METHOD_GET = 0, HTTP_METHOD_POST, HTTP_METHOD_HEAD, HTTP_METHOD_OTHER };

struct http_server;

/* Creates the listening socket (or takes the one systemd passed), one worker per
 * configured thread, and starts them. Returns NULL with a message in err. */
struct http_server *http_server_start(struct api_state *state, char *err, size_t err_size);

/* Stops accepting connections on every worker; open connections keep being served. */
void http_server_stop_accepting(struct http_server *server);

/* Number of calls dispatched whose reply has not been sent yet. */
uint64_t http_server_in_flight(struct http_server *server);

/* Stops the workers after letting queued output drain for grace_ms, then frees them. */
void http_server_free(struct http_server *server, uint64_t grace_ms);

/* Hands a call back to its worker. Safe from any thread; the worker then runs
 * call->on_resume on its own thread. */
void http_call_resume(struct http_call *call);

/* Records the call's metrics and frees it. The reply helpers of http_util.h call it
 * right after evhttp_send_reply. */
void http_call_finish(struct http_call *call, int status);

/* Monotonic clock in nanoseconds. */
uint64_t http_now_ns(void);

#endif
