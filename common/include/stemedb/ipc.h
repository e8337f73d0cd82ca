#ifndef STEMEDB_IPC_H
#define STEMEDB_IPC_H

/* IPC between the daemons of one node: protobuf-c Envelopes (proto/stemedb_ipc.proto)
 * over Unix domain sockets, each preceded by its length as a 4-byte big-endian integer.
 *
 * Server side: ipc_server_start listens on a socket file with a libevent loop that the
 * caller owns and runs, and it hands every request to one callback on that loop. Client side:
 * blocking calls with a per-call deadline and reconnection with bounded exponential
 * backoff, plus a subscription to a server's event stream. Clients and the publishing
 * side of a server are safe to use from other threads as documented per function.
 * docs/ipc.md describes the protocol, every call and the credential rules. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "stemedb/buf.h"
#include "stemedb_ipc.pb-c.h"

struct event_base;
struct metric;
struct metric_family;

typedef Stemedb__Ipc__V1__Envelope ipc_envelope;
typedef Stemedb__Ipc__V1__Envelope__BodyCase ipc_body_case;

/* Frame limit of every endpoint unless its options set another. */
#define IPC_DEFAULT_MAX_FRAME_BYTES (16u * 1024u * 1024u)
#define IPC_FRAME_HEADER_BYTES      4u
/* Socket file names inside the run directory (daemon_resolve_run_dir). */
#define IPC_API_SOCKET_NAME        "api.sock"
#define IPC_GATEWAY_SOCKET_NAME    "gateway.sock"
#define IPC_REPLICATOR_SOCKET_NAME "replicator.sock"
#define IPC_GOSSIP_SOCKET_NAME     "gossip.sock"
/* Suggested deadlines in milliseconds: quick reads, and calls that write or flush. */
#define IPC_DEADLINE_QUICK_MS 2000u
#define IPC_DEADLINE_SLOW_MS  600000u

enum ipc_result {
	IPC_OK = 0,
	IPC_ERR_TIMEOUT,     /* the deadline passed; the connection was closed */
	IPC_ERR_UNAVAILABLE, /* cannot connect (no server, or still in backoff) */
	IPC_ERR_CLOSED,      /* the peer closed the connection */
	IPC_ERR_PROTOCOL,    /* malformed frame, or a reply of an unexpected type */
	IPC_ERR_REMOTE,      /* the server replied with an Error; err contains its message */
	IPC_ERR_IO,          /* a system call failed; err names it */
};

const char *ipc_result_name(enum ipc_result r);

/* ---- Frames ---------------------------------------------------------------------- */

enum ipc_frame_status {
	IPC_FRAME_OK = 0,
	IPC_FRAME_INCOMPLETE,   /* more bytes are needed: not an error until EOF */
	IPC_FRAME_ZERO_LENGTH,  /* the length prefix is 0 */
	IPC_FRAME_TOO_LARGE,    /* the length prefix exceeds the limit */
	IPC_FRAME_BAD_ENVELOPE, /* the payload is not a valid Envelope */
	IPC_FRAME_TRUNCATED,    /* EOF inside a frame (reported by readers, not decode) */
};

/* Stable snake_case reason ("zero_length", "too_large", "bad_envelope", "truncated",
 * ...), used as the reason label of stemedb_ipc_frames_rejected_total. */
const char *ipc_frame_status_reason(enum ipc_frame_status s);

/* Decodes the frame at the start of data[0..len). On IPC_FRAME_OK stores the unpacked
 * Envelope in *out (free it with ipc_envelope_free) and the frame's total size in
 * *consumed. Any other status leaves *out NULL; IPC_FRAME_INCOMPLETE also sets *needed
 * to the total bytes the frame needs when the header is complete (else 0). */
enum ipc_frame_status ipc_frame_decode(const uint8_t *data, size_t len, uint32_t max_frame,
                                       ipc_envelope **out, size_t *consumed, size_t *needed);

/* Appends one frame holding env to out. Returns false, appending nothing, when the
 * packed Envelope is empty or larger than max_frame. */
bool ipc_frame_encode(const ipc_envelope *env, uint32_t max_frame, struct buf *out);

/* Frees an Envelope returned by ipc_frame_decode or by a client call. NULL is allowed. */
void ipc_envelope_free(ipc_envelope *env);

/* ---- Server ---------------------------------------------------------------------- */

struct ipc_server;
struct ipc_conn; /* a connection; valid only during the handler call that received it */

struct ipc_peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
};

/* Handles one request on the server's event loop. The handler replies with
 * ipc_conn_reply or ipc_conn_reply_error before it returns, or remembers
 * ipc_conn_id(conn) and replies later, from any thread, with ipc_server_send. It must
 * not block the loop for long: slow work belongs on another thread. */
typedef void (*ipc_request_handler)(void *ctx, struct ipc_conn *conn, const ipc_envelope *request);

struct ipc_server_options {
	const char *socket_path;         /* created with mode 0660; a stale file is removed */
	uint32_t max_frame_bytes;        /* 0: IPC_DEFAULT_MAX_FRAME_BYTES */
	uint32_t subscriber_queue_limit; /* events queued per subscriber; 0: 4096 */
	ipc_request_handler handler;
	void *handler_ctx;
	/* Optional metrics, updated by the server: connections open (gauge) and rejected
	 * frames (counter family with the single label "reason"). */
	struct metric *connections_gauge;
	struct metric_family *frames_rejected;
};

/* Creates the socket and starts accepting on base, which the caller runs. Rejects
 * peers whose SO_PEERCRED uid is neither the server's uid nor 0 and who are not in the
 * "stemedb" group (when that group exists). Returns NULL with a message in err when the
 * socket cannot be created; the message names the path and the failing call. */
struct ipc_server *ipc_server_start(struct event_base *base,
                                    const struct ipc_server_options *options, char *err,
                                    size_t err_size);

/* Closes every connection and the listener and removes the socket file. Call it on the
 * loop's thread, or after the loop has stopped. */
void ipc_server_stop(struct ipc_server *server);

/* Sends reply on conn. The caller sets reply->request_id to the request's. */
void ipc_conn_reply(struct ipc_conn *conn, ipc_envelope *reply);

/* Sends an Error reply with the given code and a printf-style message. */
void ipc_conn_reply_error(struct ipc_conn *conn, uint64_t request_id,
                          Stemedb__Ipc__V1__ErrorCode code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Process-unique id of conn, for ipc_server_send after the handler returned. */
uint64_t ipc_conn_id(const struct ipc_conn *conn);
const struct ipc_peer *ipc_conn_peer(const struct ipc_conn *conn);

/* Marks conn as a subscriber: from now on it receives every ipc_server_publish event. */
void ipc_conn_subscribe(struct ipc_conn *conn);

/* Sends env to the connection with conn_id from any thread. The frame is dropped when
 * the connection has closed meanwhile. Returns false when env cannot be framed. */
bool ipc_server_send(struct ipc_server *server, uint64_t conn_id, const ipc_envelope *env);

/* Queues env (request_id 0) for every subscriber, from any thread, without blocking on
 * I/O. A subscriber whose queue is over subscriber_queue_limit is disconnected with a
 * log line and has to subscribe again. */
void ipc_server_publish(struct ipc_server *server, const ipc_envelope *env);

/* Number of open connections and of subscribers (approximate outside the loop). */
size_t ipc_server_connection_count(const struct ipc_server *server);
size_t ipc_server_subscriber_count(const struct ipc_server *server);

/* ---- Client ---------------------------------------------------------------------- */

struct ipc_client;

struct ipc_client_options {
	const char *socket_path;
	uint32_t max_frame_bytes;    /* 0: IPC_DEFAULT_MAX_FRAME_BYTES */
	uint32_t backoff_initial_ms; /* first wait after a failed connect; 0: 100 */
	uint32_t backoff_max_ms;     /* cap of the doubling wait; 0: 5000 */
};

/* Creates a client; it connects lazily on the first call. Never returns NULL. */
struct ipc_client *ipc_client_new(const struct ipc_client_options *options);
void ipc_client_free(struct ipc_client *client);

/* Sends request and waits for the reply with the same request id (the client assigns
 * it), for at most timeout_ms in total, connecting first when needed. While the server
 * is unreachable the client retries with exponential backoff inside the deadline and
 * remembers the backoff across calls, so a loop of calls does not hammer the socket.
 * On IPC_OK *reply contains an Envelope whose body is expected_body (free it with
 * ipc_envelope_free). An Error reply returns IPC_ERR_REMOTE with its message in err and
 * its code in *remote_code when that is not NULL. A timeout or protocol error closes
 * the connection, so a late reply is never taken for the next call's. One thread at a
 * time may use a client. */
enum ipc_result ipc_client_call(struct ipc_client *client, ipc_envelope *request,
                                ipc_body_case expected_body, uint32_t timeout_ms,
                                ipc_envelope **reply, Stemedb__Ipc__V1__ErrorCode *remote_code,
                                char *err, size_t err_size);

/* Closes the connection; the next call reconnects. */
void ipc_client_disconnect(struct ipc_client *client);

/* Typed calls to stemedb-api. Each builds the request, calls ipc_client_call with the
 * given deadline and returns the reply Envelope; the response is reply->stats_response,
 * reply->ready_response and so on. hash is 32 bytes. */
enum ipc_result ipc_call_stats(struct ipc_client *c, uint32_t timeout_ms, ipc_envelope **reply,
                               char *err, size_t err_size);
enum ipc_result ipc_call_ready(struct ipc_client *c, uint32_t timeout_ms, ipc_envelope **reply,
                               char *err, size_t err_size);
enum ipc_result ipc_call_get_assertion(struct ipc_client *c, const uint8_t hash[32],
                                       uint32_t timeout_ms, ipc_envelope **reply, char *err,
                                       size_t err_size);
enum ipc_result ipc_call_create_checkpoint(struct ipc_client *c, const char *target_dir,
                                           uint32_t timeout_ms, ipc_envelope **reply, char *err,
                                           size_t err_size);
enum ipc_result ipc_call_set_archived_watermark(struct ipc_client *c, uint64_t watermark,
                                                uint32_t timeout_ms, ipc_envelope **reply,
                                                char *err, size_t err_size);
enum ipc_result ipc_call_get_archived_watermark(struct ipc_client *c, uint32_t timeout_ms,
                                                ipc_envelope **reply, char *err, size_t err_size);
enum ipc_result ipc_call_compact(struct ipc_client *c, uint32_t timeout_ms, ipc_envelope **reply,
                                 char *err, size_t err_size);
/* Circuit breaker admin calls; the reply is a ListCircuitBreakersResponse or a
 * CircuitBreakerResponse. */
enum ipc_result ipc_call_list_circuit_breakers(struct ipc_client *c, uint32_t timeout_ms,
                                               ipc_envelope **reply, char *err, size_t err_size);
enum ipc_result ipc_call_ban_circuit_breaker(struct ipc_client *c, const uint8_t agent[32],
                                             uint64_t duration_seconds, const char *reason,
                                             uint32_t timeout_ms, ipc_envelope **reply, char *err,
                                             size_t err_size);
enum ipc_result ipc_call_reset_circuit_breaker(struct ipc_client *c, const uint8_t agent[32],
                                               uint32_t timeout_ms, ipc_envelope **reply, char *err,
                                               size_t err_size);
enum ipc_result ipc_call_rebuild_indexes(struct ipc_client *c, uint32_t timeout_ms,
                                         ipc_envelope **reply, char *err, size_t err_size);

/* ---- Event stream ---------------------------------------------------------------- */

struct ipc_subscription;

/* Connects (one attempt, no backoff), sends a SubscribeRequest and waits up to
 * timeout_ms for the SubscribeResponse. Returns NULL with a message in err on failure;
 * *result, when not NULL, receives the cause. The caller retries with its own backoff. */
struct ipc_subscription *ipc_subscribe(const struct ipc_client_options *options,
                                       uint32_t timeout_ms, enum ipc_result *result, char *err,
                                       size_t err_size);

/* WAL end offset the server reported when the subscription started. */
uint64_t ipc_subscription_start_offset(const struct ipc_subscription *s);

/* Waits up to timeout_ms for the next event Envelope (body ingested_event or another
 * event type) and stores it in *event. IPC_ERR_TIMEOUT means no event arrived and the
 * subscription is still usable; IPC_ERR_CLOSED or IPC_ERR_PROTOCOL mean it ended (for
 * instance the server dropped a slow subscriber) and must be freed and renewed. */
enum ipc_result ipc_subscription_next(struct ipc_subscription *s, uint32_t timeout_ms,
                                      ipc_envelope **event, char *err, size_t err_size);

/* Socket descriptor for poll or an event loop. When it is readable, call
 * ipc_subscription_next with timeout 0 until it returns IPC_ERR_TIMEOUT, because
 * several events may arrive in one read and wait in the subscription's buffer. */
int ipc_subscription_fd(const struct ipc_subscription *s);
void ipc_subscription_free(struct ipc_subscription *s);

#endif
