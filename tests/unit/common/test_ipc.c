/* Unit tests for the IPC frame codec, and for the client, server and event stream over
 * real Unix sockets in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stemedb/ipc.h"
#include "stemedb/metrics.h"

#define BODY(name) STEMEDB__IPC__V1__ENVELOPE__BODY_##name

/* ---- Frame codec ----------------------------------------------------------------- */

static void make_stats_frame(uint64_t request_id, uint64_t count, struct buf *out)
{
	ipc_envelope env = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__StatsResponse body = STEMEDB__IPC__V1__STATS_RESPONSE__INIT;

	body.assertion_count = count;
	body.node_id = "0123456789abcdef0123456789abcdef";
	env.request_id = request_id;
	env.body_case = BODY(STATS_RESPONSE);
	env.stats_response = &body;
	assert_true(ipc_frame_encode(&env, 0, out));
}

static void frame_round_trip(void **state)
{
	(void)state;
	struct buf frame;
	ipc_envelope *env;
	size_t consumed, needed;

	buf_init(&frame);
	make_stats_frame(7, 12345, &frame);
	assert_int_equal(ipc_frame_decode(frame.data, frame.len, 0, &env, &consumed, &needed),
	                 IPC_FRAME_OK);
	assert_int_equal(consumed, frame.len);
	assert_int_equal(env->request_id, 7);
	assert_int_equal(env->body_case, BODY(STATS_RESPONSE));
	assert_int_equal(env->stats_response->assertion_count, 12345);
	assert_string_equal(env->stats_response->node_id, "0123456789abcdef0123456789abcdef");
	ipc_envelope_free(env);
	buf_free(&frame);
}

static void frame_every_prefix_incomplete(void **state)
{
	(void)state;
	struct buf frame;
	ipc_envelope *env;
	size_t consumed, needed;

	buf_init(&frame);
	make_stats_frame(1, 2, &frame);
	for (size_t len = 0; len < frame.len; len++) {
		enum ipc_frame_status st =
		        ipc_frame_decode(frame.data, len, 0, &env, &consumed, &needed);
		if (st != IPC_FRAME_INCOMPLETE)
			fail_msg("prefix of %zu bytes decoded as %s", len,
			         ipc_frame_status_reason(st));
		assert_null(env);
		assert_int_equal(needed, len < 4 ? 0 : frame.len);
	}
	buf_free(&frame);
}

static void frame_two_in_one_buffer(void **state)
{
	(void)state;
	struct buf frames;
	ipc_envelope *env;
	size_t consumed, needed;

	buf_init(&frames);
	make_stats_frame(1, 10, &frames);
	make_stats_frame(2, 20, &frames);
	assert_int_equal(ipc_frame_decode(frames.data, frames.len, 0, &env, &consumed, &needed),
	                 IPC_FRAME_OK);
	assert_int_equal(env->request_id, 1);
	ipc_envelope_free(env);
	assert_int_equal(ipc_frame_decode(frames.data + consumed, frames.len - consumed, 0, &env,
	                                  &consumed, &needed),
	                 IPC_FRAME_OK);
	assert_int_equal(env->request_id, 2);
	assert_int_equal(env->stats_response->assertion_count, 20);
	ipc_envelope_free(env);
	buf_free(&frames);
}

static void frame_zero_length_rejected(void **state)
{
	(void)state;
	const uint8_t data[] = {0, 0, 0, 0, 1, 2};
	ipc_envelope *env;
	size_t consumed, needed;

	assert_int_equal(ipc_frame_decode(data, sizeof(data), 0, &env, &consumed, &needed),
	                 IPC_FRAME_ZERO_LENGTH);
	assert_null(env);
	assert_string_equal(ipc_frame_status_reason(IPC_FRAME_ZERO_LENGTH), "zero_length");
}

static void frame_oversize_rejected(void **state)
{
	(void)state;
	const uint8_t over_default[] = {0x01, 0x00, 0x00, 0x01}; /* 16 MiB + 1 */
	const uint8_t over_small[] = {0x00, 0x00, 0x01, 0x01};   /* 257 */
	ipc_envelope *env;
	size_t consumed, needed;

	assert_int_equal(ipc_frame_decode(over_default, 4, 0, &env, &consumed, &needed),
	                 IPC_FRAME_TOO_LARGE);
	assert_int_equal(ipc_frame_decode(over_small, 4, 256, &env, &consumed, &needed),
	                 IPC_FRAME_TOO_LARGE);
	assert_int_equal(ipc_frame_decode(over_small, 4, 257, &env, &consumed, &needed),
	                 IPC_FRAME_INCOMPLETE);
}

static void frame_garbage_envelope_rejected(void **state)
{
	(void)state;
	/* Field 2 (error) with wire type 2 and a length running past the payload. */
	const uint8_t data[] = {0, 0, 0, 3, 0x12, 0x7f, 0x00};
	ipc_envelope *env;
	size_t consumed, needed;

	assert_int_equal(ipc_frame_decode(data, sizeof(data), 0, &env, &consumed, &needed),
	                 IPC_FRAME_BAD_ENVELOPE);
	assert_null(env);
}

static void frame_encode_respects_limit(void **state)
{
	(void)state;
	ipc_envelope empty = STEMEDB__IPC__V1__ENVELOPE__INIT;
	struct buf out;

	buf_init(&out);
	assert_false(ipc_frame_encode(&empty, 0, &out));
	make_stats_frame(1, 1, &out);
	size_t size = out.len - 4;
	buf_reset(&out);

	ipc_envelope env = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__StatsResponse body = STEMEDB__IPC__V1__STATS_RESPONSE__INIT;
	body.assertion_count = 1;
	body.node_id = "0123456789abcdef0123456789abcdef";
	env.request_id = 1;
	env.body_case = BODY(STATS_RESPONSE);
	env.stats_response = &body;
	assert_false(ipc_frame_encode(&env, (uint32_t)size - 1, &out));
	assert_int_equal(out.len, 0);
	assert_true(ipc_frame_encode(&env, (uint32_t)size, &out));
	buf_free(&out);
}

/* ---- Server fixture -------------------------------------------------------------- */

/* A server on its own thread. It replies to StatsRequest with assertion_count set to
 * the number of requests it has seen, never replies to ReadyRequest (to test
 * deadlines), and subscribes on SubscribeRequest. */
struct fixture {
	char dir[64];
	char path[96];
	struct event_base *base;
	struct ipc_server *server;
	pthread_t thread;
	atomic_int requests;
	atomic_bool stop;
	uint32_t queue_limit;
	struct metric_family *rejected;
};

static struct metric_family *rejected_family;

static void fixture_handler(void *ctx, struct ipc_conn *conn, const ipc_envelope *request)
{
	struct fixture *f = ctx;
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__StatsResponse stats = STEMEDB__IPC__V1__STATS_RESPONSE__INIT;
	Stemedb__Ipc__V1__SubscribeResponse sub = STEMEDB__IPC__V1__SUBSCRIBE_RESPONSE__INIT;

	atomic_fetch_add(&f->requests, 1);
	reply.request_id = request->request_id;
	switch (request->body_case) {
	case BODY(STATS_REQUEST):
		stats.assertion_count = (uint64_t)atomic_load(&f->requests);
		reply.body_case = BODY(STATS_RESPONSE);
		reply.stats_response = &stats;
		ipc_conn_reply(conn, &reply);
		break;
	case BODY(READY_REQUEST):
		break;
	case BODY(SUBSCRIBE_REQUEST):
		ipc_conn_subscribe(conn);
		sub.wal_end_offset = 99;
		reply.body_case = BODY(SUBSCRIBE_RESPONSE);
		reply.subscribe_response = &sub;
		ipc_conn_reply(conn, &reply);
		break;
	default:
		ipc_conn_reply_error(conn, request->request_id,
		                     STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED,
		                     "request type %d is not served here", (int)request->body_case);
	}
}

/* Checks the stop flag every 10 ms, because an event_base_loopbreak issued before
 * the loop has started would be forgotten. */
static void fixture_tick(evutil_socket_t fd, short what, void *arg)
{
	struct fixture *f = arg;

	(void)fd, (void)what;
	if (atomic_load(&f->stop))
		event_base_loopbreak(f->base);
}

static void *fixture_loop(void *arg)
{
	struct fixture *f = arg;
	struct timeval period = {.tv_usec = 10000};
	struct event *tick = event_new(f->base, -1, EV_PERSIST, fixture_tick, f);

	event_add(tick, &period);
	event_base_loop(f->base, EVLOOP_NO_EXIT_ON_EMPTY);
	event_free(tick);
	return NULL;
}

static void fixture_start_server(struct fixture *f)
{
	struct ipc_server_options o = {
	        .socket_path = f->path,
	        .subscriber_queue_limit = f->queue_limit,
	        .handler = fixture_handler,
	        .handler_ctx = f,
	        .frames_rejected = rejected_family,
	};
	char err[256];

	atomic_store(&f->stop, false);
	f->base = event_base_new();
	f->server = ipc_server_start(f->base, &o, err, sizeof(err));
	if (f->server == NULL)
		fail_msg("ipc_server_start: %s", err);
	assert_int_equal(pthread_create(&f->thread, NULL, fixture_loop, f), 0);
}

static void fixture_stop_server(struct fixture *f)
{
	atomic_store(&f->stop, true);
	pthread_join(f->thread, NULL);
	ipc_server_stop(f->server);
	event_base_free(f->base);
	f->server = NULL;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/stemedb-ipc-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/test.sock", f->dir);
	fixture_start_server(f);
	*state = f;
	return 0;
}

static int setup_small_queue(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->queue_limit = 4;
	snprintf(f->dir, sizeof(f->dir), "/tmp/stemedb-ipc-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/test.sock", f->dir);
	fixture_start_server(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->server != NULL)
		fixture_stop_server(f);
	rmdir(f->dir);
	free(f);
	return 0;
}

static struct ipc_client *new_client(const struct fixture *f)
{
	struct ipc_client_options o = {
	        .socket_path = f->path, .backoff_initial_ms = 20, .backoff_max_ms = 100};

	return ipc_client_new(&o);
}

static uint64_t elapsed_ms(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)((now.tv_sec - start->tv_sec) * 1000 +
	                  (now.tv_nsec - start->tv_nsec) / 1000000);
}

static int raw_connect(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	return fd;
}

static double rejected_count(const char *reason)
{
	const char *labels[1] = {reason};

	return metric_value(metrics_family_child(rejected_family, labels));
}

/* Waits up to two seconds for the server to close fd; true when it did. */
static bool server_closes(int fd)
{
	struct timeval tv = {.tv_sec = 2};
	char byte;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return recv(fd, &byte, 1, 0) == 0;
}

/* ---- Client and server ----------------------------------------------------------- */

static void call_stats_succeeds(void **state)
{
	struct fixture *f = *state;
	struct ipc_client *c = new_client(f);
	ipc_envelope *reply;
	char err[256];

	for (int i = 1; i <= 3; i++) {
		enum ipc_result r = ipc_call_stats(c, 2000, &reply, err, sizeof(err));
		if (r != IPC_OK)
			fail_msg("call %d: %s: %s", i, ipc_result_name(r), err);
		assert_int_equal(reply->stats_response->assertion_count, (uint64_t)i);
		ipc_envelope_free(reply);
	}
	assert_int_equal(ipc_server_connection_count(f->server), 1);
	ipc_client_free(c);
}

static void call_error_reply_is_remote(void **state)
{
	struct fixture *f = *state;
	struct ipc_client *c = new_client(f);
	ipc_envelope *reply;
	char err[256];

	assert_int_equal(ipc_call_compact(c, 2000, &reply, err, sizeof(err)), IPC_ERR_REMOTE);
	assert_null(reply);
	assert_non_null(strstr(err, "is not served here"));
	/* The connection stays usable after an error reply. */
	assert_int_equal(ipc_call_stats(c, 2000, &reply, err, sizeof(err)), IPC_OK);
	ipc_envelope_free(reply);
	ipc_client_free(c);
}

static void call_deadline_expires(void **state)
{
	struct fixture *f = *state;
	struct ipc_client *c = new_client(f);
	ipc_envelope *reply;
	struct timespec start;
	char err[256];
	uint64_t ms;

	clock_gettime(CLOCK_MONOTONIC, &start);
	assert_int_equal(ipc_call_ready(c, 200, &reply, err, sizeof(err)), IPC_ERR_TIMEOUT);
	ms = elapsed_ms(&start);
	if (ms < 190 || ms > 1000)
		fail_msg("a 200 ms deadline returned after %llu ms", (unsigned long long)ms);
	assert_int_equal(ipc_call_stats(c, 2000, &reply, err, sizeof(err)), IPC_OK);
	ipc_envelope_free(reply);
	ipc_client_free(c);
}

static void call_without_server_unavailable(void **state)
{
	struct fixture *f = *state;
	struct ipc_client *c;
	ipc_envelope *reply;
	struct timespec start;
	char err[256];
	uint64_t ms;

	fixture_stop_server(f);
	c = new_client(f);
	clock_gettime(CLOCK_MONOTONIC, &start);
	assert_int_equal(ipc_call_stats(c, 300, &reply, err, sizeof(err)), IPC_ERR_UNAVAILABLE);
	ms = elapsed_ms(&start);
	if (ms > 1000)
		fail_msg("a 300 ms deadline returned after %llu ms", (unsigned long long)ms);
	ipc_client_free(c);
}

static void call_reconnects_after_restart(void **state)
{
	struct fixture *f = *state;
	struct ipc_client *c = new_client(f);
	ipc_envelope *reply;
	char err[256];
	enum ipc_result r;

	assert_int_equal(ipc_call_stats(c, 2000, &reply, err, sizeof(err)), IPC_OK);
	ipc_envelope_free(reply);

	fixture_stop_server(f);
	assert_int_equal(ipc_call_stats(c, 100, &reply, err, sizeof(err)), IPC_ERR_UNAVAILABLE);
	atomic_store(&f->requests, 0);
	fixture_start_server(f);

	r = ipc_call_stats(c, 2000, &reply, err, sizeof(err));
	if (r != IPC_OK)
		fail_msg("call after restart: %s: %s", ipc_result_name(r), err);
	assert_int_equal(reply->stats_response->assertion_count, 1);
	ipc_envelope_free(reply);
	ipc_client_free(c);
}

static void live_socket_kept_stale_removed(void **state)
{
	struct fixture *f = *state;
	struct ipc_server_options o = {.socket_path = f->path, .handler = fixture_handler};
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct event_base *base = event_base_new();
	struct ipc_server *second;
	char err[256];
	int fd;

	/* A second server on a live socket is rejected. */
	assert_null(ipc_server_start(base, &o, err, sizeof(err)));
	assert_non_null(strstr(err, "another process serves"));

	/* A socket file whose server is gone is replaced. */
	fixture_stop_server(f);
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", f->path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(fd);
	second = ipc_server_start(base, &o, err, sizeof(err));
	if (second == NULL)
		fail_msg("a stale socket file was not replaced: %s", err);
	ipc_server_stop(second);
	event_base_free(base);
}

static void send_raw(int fd, const void *data, size_t len)
{
	assert_int_equal(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void server_rejects_bad_frames(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *reason;
		uint8_t bytes[8];
		size_t len;
	} cases[] = {
	        {"zero_length", {0, 0, 0, 0}, 4},
	        {"too_large", {0x01, 0x00, 0x00, 0x01}, 4},
	        {"bad_envelope", {0, 0, 0, 3, 0x12, 0x7f, 0x00}, 7},
	        {"truncated", {0, 0, 0, 9, 0x08}, 5},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double before = rejected_count(cases[i].reason);
		int fd = raw_connect(f->path);

		send_raw(fd, cases[i].bytes, cases[i].len);
		if (strcmp(cases[i].reason, "truncated") == 0)
			shutdown(fd, SHUT_WR);
		if (!server_closes(fd))
			fail_msg("the server kept the connection open after a %s frame",
			         cases[i].reason);
		close(fd);
		if (rejected_count(cases[i].reason) != before + 1)
			fail_msg("rejected{reason=%s} is %.0f, expected %.0f", cases[i].reason,
			         rejected_count(cases[i].reason), before + 1);
	}
}

static void bad_client_spares_others(void **state)
{
	struct fixture *f = *state;
	struct ipc_client *good = new_client(f);
	const uint8_t garbage[] = {0, 0, 0, 2, 0xff, 0xff};
	ipc_envelope *reply;
	char err[256];

	assert_int_equal(ipc_call_stats(good, 2000, &reply, err, sizeof(err)), IPC_OK);
	ipc_envelope_free(reply);
	for (int i = 0; i < 20; i++) {
		int bad = raw_connect(f->path);

		send_raw(bad, garbage, sizeof(garbage));
		enum ipc_result r = ipc_call_stats(good, 2000, &reply, err, sizeof(err));
		if (r != IPC_OK)
			fail_msg("round %d: the good client got %s: %s", i, ipc_result_name(r),
			         err);
		ipc_envelope_free(reply);
		assert_true(server_closes(bad));
		close(bad);
	}
	ipc_client_free(good);
}

static void frame_byte_by_byte_served(void **state)
{
	struct fixture *f = *state;
	ipc_envelope req = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__StatsRequest body = STEMEDB__IPC__V1__STATS_REQUEST__INIT;
	uint8_t reply_bytes[256];
	ipc_envelope *reply;
	size_t consumed, needed, got = 0;
	struct buf frame;
	int fd = raw_connect(f->path);

	req.request_id = 5;
	req.body_case = BODY(STATS_REQUEST);
	req.stats_request = &body;
	buf_init(&frame);
	assert_true(ipc_frame_encode(&req, 0, &frame));
	/* Two requests back to back, each sent one byte at a time with a pause. */
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < frame.len; i++) {
			send_raw(fd, frame.data + i, 1);
			usleep(2000);
		}
	}

	/* Read until the second reply is complete; the first must decode as well. */
	for (;;) {
		ssize_t n = recv(fd, reply_bytes + got, sizeof(reply_bytes) - got, 0);
		size_t first;

		assert_true(n > 0);
		got += (size_t)n;
		if (ipc_frame_decode(reply_bytes, got, 0, &reply, &first, &needed) != IPC_FRAME_OK)
			continue;
		assert_int_equal(reply->request_id, 5);
		ipc_envelope_free(reply);
		if (ipc_frame_decode(reply_bytes + first, got - first, 0, &reply, &consumed,
		                     &needed) == IPC_FRAME_OK)
			break;
	}
	assert_non_null(reply);
	assert_int_equal(reply->request_id, 5);
	assert_int_equal(reply->stats_response->assertion_count, 2);
	ipc_envelope_free(reply);
	buf_free(&frame);
	close(fd);
}

/* ---- Event stream ---------------------------------------------------------------- */

static void publish_event(struct ipc_server *server, uint64_t offset, size_t payload)
{
	static uint8_t hash[1024];
	ipc_envelope env = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__IngestedEvent ev = STEMEDB__IPC__V1__INGESTED_EVENT__INIT;

	ev.hash.data = hash;
	ev.hash.len = payload;
	ev.wal_offset = offset;
	env.body_case = BODY(INGESTED_EVENT);
	env.ingested_event = &ev;
	ipc_server_publish(server, &env);
}

static struct ipc_subscription *subscribe(const struct fixture *f)
{
	struct ipc_client_options o = {.socket_path = f->path};
	struct ipc_subscription *s;
	enum ipc_result r;
	char err[256];

	s = ipc_subscribe(&o, 2000, &r, err, sizeof(err));
	if (s == NULL)
		fail_msg("ipc_subscribe: %s: %s", ipc_result_name(r), err);
	return s;
}

static void subscription_receives_events(void **state)
{
	struct fixture *f = *state;
	struct ipc_subscription *s = subscribe(f);
	ipc_envelope *event;
	char err[256];

	assert_int_equal(ipc_subscription_start_offset(s), 99);
	assert_int_equal(ipc_server_subscriber_count(f->server), 1);
	for (uint64_t i = 1; i <= 100; i++)
		publish_event(f->server, i, 32);

	for (uint64_t i = 1; i <= 100; i++) {
		enum ipc_result r = ipc_subscription_next(s, 2000, &event, err, sizeof(err));
		if (r != IPC_OK)
			fail_msg("event %llu: %s: %s", (unsigned long long)i, ipc_result_name(r),
			         err);
		assert_int_equal(event->body_case, BODY(INGESTED_EVENT));
		assert_int_equal(event->ingested_event->wal_offset, i);
		ipc_envelope_free(event);
	}
	assert_int_equal(ipc_subscription_next(s, 50, &event, err, sizeof(err)), IPC_ERR_TIMEOUT);
	ipc_subscription_free(s);
}

static void slow_subscriber_disconnected(void **state)
{
	struct fixture *f = *state;
	struct ipc_subscription *s = subscribe(f);
	double before = rejected_count("subscriber_overflow");
	ipc_envelope *event;
	enum ipc_result r;
	char err[256];
	int received = 0;

	/* Far more than the socket buffer plus a 4-event queue can hold unread. */
	for (uint64_t i = 1; i <= 4000; i++) {
		publish_event(f->server, i, 1000);
		if (i % 100 == 0)
			usleep(1000);
	}
	usleep(200000);

	while ((r = ipc_subscription_next(s, 2000, &event, err, sizeof(err))) == IPC_OK) {
		received++;
		ipc_envelope_free(event);
	}
	if (r != IPC_ERR_CLOSED)
		fail_msg("the slow subscriber ended with %s after %d events: %s",
		         ipc_result_name(r), received, err);
	if (received >= 4000)
		fail_msg("the slow subscriber received all %d events", received);
	assert_true(rejected_count("subscriber_overflow") >= before + 1);
	ipc_subscription_free(s);
}

/* ---- Peer credentials ------------------------------------------------------------ */

static void other_uid_rejected(void **state)
{
	struct fixture *f = *state;
	double before = rejected_count("unauthorized_peer");
	int status;
	pid_t pid;

	if (geteuid() != 0) {
		skip();
		return;
	}
	/* Let uid 65534 reach the socket, so that only SO_PEERCRED can reject it. */
	assert_int_equal(chmod(f->dir, 0777), 0);
	assert_int_equal(chmod(f->path, 0666), 0);

	pid = fork();
	if (pid == 0) {
		struct ipc_client *c;
		ipc_envelope *reply;
		char err[256];

		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(3);
		c = new_client(f);
		_exit(ipc_call_stats(c, 1000, &reply, err, sizeof(err)) == IPC_OK ? 0 : 1);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 1)
		fail_msg("the uid 65534 client exited with %d; 1 means it was rejected",
		         WEXITSTATUS(status));
	if (rejected_count("unauthorized_peer") < before + 1)
		fail_msg("rejected{reason=unauthorized_peer} stayed at %.0f", before);
}

int main(void)
{
	static const char *const labels[] = {"reason", NULL};
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(frame_round_trip),
	        cmocka_unit_test(frame_every_prefix_incomplete),
	        cmocka_unit_test(frame_two_in_one_buffer),
	        cmocka_unit_test(frame_zero_length_rejected),
	        cmocka_unit_test(frame_oversize_rejected),
	        cmocka_unit_test(frame_garbage_envelope_rejected),
	        cmocka_unit_test(frame_encode_respects_limit),
	        cmocka_unit_test_setup_teardown(call_stats_succeeds, setup, teardown),
	        cmocka_unit_test_setup_teardown(call_error_reply_is_remote, setup, teardown),
	        cmocka_unit_test_setup_teardown(call_deadline_expires, setup, teardown),
	        cmocka_unit_test_setup_teardown(call_without_server_unavailable, setup, teardown),
	        cmocka_unit_test_setup_teardown(call_reconnects_after_restart, setup, teardown),
	        cmocka_unit_test_setup_teardown(live_socket_kept_stale_removed, setup, teardown),
	        cmocka_unit_test_setup_teardown(server_rejects_bad_frames, setup, teardown),
	        cmocka_unit_test_setup_teardown(bad_client_spares_others, setup, teardown),
	        cmocka_unit_test_setup_teardown(frame_byte_by_byte_served, setup, teardown),
	        cmocka_unit_test_setup_teardown(subscription_receives_events, setup, teardown),
	        cmocka_unit_test_setup_teardown(slow_subscriber_disconnected, setup_small_queue,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(other_uid_rejected, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads();
	rejected_family = metrics_counter_family("test_ipc_frames_rejected_total",
	                                         "Frames rejected in this test", labels);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
