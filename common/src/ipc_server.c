/* IPC server: an evconnlistener on a Unix socket and one bufferevent per connection,
 * all on the caller's event loop. Other threads hand frames to the loop through an
 * outbox guarded by a mutex and an eventfd that wakes the loop, so publishing needs no
 * libevent locking and never blocks on a socket. */

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "stemedb/ipc.h"
#include "stemedb/log.h"
#include "stemedb/metrics.h"

#define DEFAULT_SUBSCRIBER_QUEUE 4096u
#define LISTEN_BACKLOG           64
#define STEMEDB_GROUP            "stemedb"

/* A frame waiting in the outbox: for one connection, or for every subscriber when
 * conn_id is 0. */
struct outbox_item {
	uint64_t conn_id;
	struct buf frame;
	struct outbox_item *next;
};

struct ipc_conn {
	struct ipc_server *server;
	struct bufferevent *bev;
	uint64_t id;
	struct ipc_peer peer;
	struct ipc_conn *prev, *next;

	/* Subscribers only: the output byte position where each queued event ends, in a
	 * ring of subscriber_queue_limit entries, counting every byte ever added. */
	bool subscriber;
	uint64_t *event_ends;
	size_t event_head, event_count;
	uint64_t bytes_added;
};

struct ipc_server {
	struct event_base *base;
	struct evconnlistener *listener;
	char *socket_path;
	const char *name; /* socket file name, for log lines */
	uint32_t max_frame;
	uint32_t queue_limit;
	ipc_request_handler handler;
	void *handler_ctx;
	struct metric *connections_gauge;
	struct metric_family *frames_rejected;
	uid_t uid;
	bool has_group;
	gid_t group_gid;

	struct ipc_conn *conns;
	atomic_size_t conn_count;
	atomic_size_t subscriber_count;
	atomic_uint_fast64_t next_conn_id;

	pthread_mutex_t outbox_lock;
	struct outbox_item *outbox_head, *outbox_tail;
	size_t outbox_broadcasts;
	bool outbox_overflowed; /* broadcasts were dropped: every subscriber missed events */
	int wake_fd;
	struct event *wake_event;
};

static void count_rejected(struct ipc_server *s, const char *reason)
{
	const char *labels[1] = {reason};

	if (s->frames_rejected != NULL)
		metric_inc(metrics_family_child(s->frames_rejected, labels));
}

static void update_connections_gauge(struct ipc_server *s)
{
	if (s->connections_gauge != NULL)
		metric_set(s->connections_gauge, (double)atomic_load(&s->conn_count));
}

static void conn_free(struct ipc_conn *c)
{
	struct ipc_server *s = c->server;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (c->subscriber)
		atomic_fetch_sub(&s->subscriber_count, 1);
	atomic_fetch_sub(&s->conn_count, 1);
	update_connections_gauge(s);

	bufferevent_free(c->bev);
	free(c->event_ends);
	free(c);
}

/* Closes c after a protocol violation, with one log line naming the peer and reason. */
static void conn_reject(struct ipc_conn *c, enum ipc_frame_status status, const char *detail)
{
	log_warn("%s: closing connection %llu from pid %d uid %d: %s frame (%s)", c->server->name,
	         (unsigned long long)c->id, (int)c->peer.pid, (int)c->peer.uid,
	         ipc_frame_status_reason(status), detail);
	count_rejected(c->server, ipc_frame_status_reason(status));
	conn_free(c);
}

static void conn_add_output(struct ipc_conn *c, const struct buf *frame)
{
	evbuffer_add(bufferevent_get_output(c->bev), frame->data, frame->len);
	c->bytes_added += frame->len;
}

/* Decodes and dispatches every complete frame in the input. Returns false when c was
 * closed. Stops early while the peer does not read its replies, so the output stays
 * bounded; the write callback resumes once the output has drained. */
static bool conn_process_input(struct ipc_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	uint8_t header[IPC_FRAME_HEADER_BYTES];
	size_t available, consumed, needed;
	enum ipc_frame_status status;
	ipc_envelope *env;
	uint8_t *frame;

	while ((available = evbuffer_get_length(in)) >= IPC_FRAME_HEADER_BYTES) {
		if (evbuffer_get_length(out) > c->server->max_frame)
			return true;

		evbuffer_copyout(in, header, sizeof(header));
		status = ipc_frame_decode(header, sizeof(header), c->server->max_frame, &env,
		                          &consumed, &needed);
		if (status == IPC_FRAME_INCOMPLETE && needed > available)
			return true;
		if (status != IPC_FRAME_INCOMPLETE) {
			conn_reject(c, status, "invalid length prefix");
			return false;
		}

		frame = evbuffer_pullup(in, (ev_ssize_t)needed);
		status = ipc_frame_decode(frame, needed, c->server->max_frame, &env, &consumed,
		                          &needed);
		if (status != IPC_FRAME_OK) {
			conn_reject(c, status, "payload is not a packed Envelope");
			return false;
		}
		evbuffer_drain(in, consumed);
		c->server->handler(c->server->handler_ctx, c, env);
		ipc_envelope_free(env);
	}
	return true;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_process_input(arg);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_process_input(arg);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ipc_conn *c = arg;
	size_t pending = evbuffer_get_length(bufferevent_get_input(bev));

	if ((what & BEV_EVENT_EOF) && pending > 0) {
		conn_reject(c, IPC_FRAME_TRUNCATED, "end of stream inside a frame");
		return;
	}
	if (what & BEV_EVENT_ERROR)
		log_info("%s: connection %llu from pid %d closed: %s", c->server->name,
		         (unsigned long long)c->id, (int)c->peer.pid,
		         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	else
		log_debug("%s: connection %llu from pid %d closed", c->server->name,
		          (unsigned long long)c->id, (int)c->peer.pid);
	conn_free(c);
}

/* True when uid belongs to the stemedb group, as primary or supplementary group. */
static bool user_in_group(uid_t uid, gid_t primary_gid, gid_t group)
{
	struct passwd pw, *found = NULL;
	char text[4096];
	gid_t groups[256];
	int count = 256;

	if (primary_gid == group)
		return true;
	if (getpwuid_r(uid, &pw, text, sizeof(text), &found) != 0 || found == NULL)
		return false;
	if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &count) < 0)
		return false;

	for (int i = 0; i < count; i++) {
		if (groups[i] == group)
			return true;
	}
	return false;
}

static bool peer_allowed(const struct ipc_server *s, const struct ipc_peer *peer)
{
	if (peer->uid == s->uid || peer->uid == 0)
		return true;
	return s->has_group && user_in_group(peer->uid, peer->gid, s->group_gid);
}

static bool read_peer(struct ipc_server *s, evutil_socket_t fd, struct ipc_peer *peer)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
		log_error("%s: getsockopt(SO_PEERCRED) failed on a new connection: %s", s->name,
		          strerror(errno));
		return false;
	}
	peer->pid = cred.pid;
	peer->uid = cred.uid;
	peer->gid = cred.gid;
	return true;
}

static void accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *addr,
                      int addr_len, void *arg)
{
	struct ipc_server *s = arg;
	struct ipc_peer peer;
	struct ipc_conn *c;

	(void)listener, (void)addr, (void)addr_len;
	if (!read_peer(s, fd, &peer)) {
		evutil_closesocket(fd);
		return;
	}
	if (!peer_allowed(s, &peer)) {
		log_warn("%s: rejected connection from pid %d uid %d gid %d: not uid %d, not root "
		         "and not in group %s",
		         s->name, (int)peer.pid, (int)peer.uid, (int)peer.gid, (int)s->uid,
		         STEMEDB_GROUP);
		count_rejected(s, "unauthorized_peer");
		evutil_closesocket(fd);
		return;
	}

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		abort();
	c->server = s;
	c->peer = peer;
	c->id = atomic_fetch_add(&s->next_conn_id, 1);
	c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	/* Reading pauses once a whole maximum-size frame is buffered and resumes as frames
	 * are consumed, so one peer cannot make the server buffer without limit. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, (size_t)s->max_frame + IPC_FRAME_HEADER_BYTES);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);

	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	atomic_fetch_add(&s->conn_count, 1);
	update_connections_gauge(s);
	log_debug("%s: connection %llu from pid %d uid %d", s->name, (unsigned long long)c->id,
	          (int)peer.pid, (int)peer.uid);
}

static void accept_error_cb(struct evconnlistener *listener, void *arg)
{
	struct ipc_server *s = arg;

	(void)listener;
	log_error("%s: accept failed: %s", s->name,
	          evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

void ipc_conn_reply(struct ipc_conn *conn, ipc_envelope *reply)
{
	struct buf frame;

	buf_init(&frame);
	if (!ipc_frame_encode(reply, conn->server->max_frame, &frame)) {
		log_error("%s: reply %llu to pid %d does not fit the %u-byte frame limit",
		          conn->server->name, (unsigned long long)reply->request_id,
		          (int)conn->peer.pid, conn->server->max_frame);
		ipc_conn_reply_error(
		        conn, reply->request_id, STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
		        "the reply exceeds the %u-byte frame limit", conn->server->max_frame);
		goto done;
	}
	conn_add_output(conn, &frame);
done:
	buf_free(&frame);
}

void ipc_conn_reply_error(struct ipc_conn *conn, uint64_t request_id,
                          Stemedb__Ipc__V1__ErrorCode code, const char *fmt, ...)
{
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__Error error = STEMEDB__IPC__V1__ERROR__INIT;
	char message[1024];
	struct buf frame;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);

	error.code = code;
	error.message = message;
	reply.request_id = request_id;
	reply.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_ERROR;
	reply.error = &error;
	buf_init(&frame);
	if (ipc_frame_encode(&reply, conn->server->max_frame, &frame))
		conn_add_output(conn, &frame);
	buf_free(&frame);
}

uint64_t ipc_conn_id(const struct ipc_conn *conn)
{
	return conn->id;
}

const struct ipc_peer *ipc_conn_peer(const struct ipc_conn *conn)
{
	return &conn->peer;
}

void ipc_conn_subscribe(struct ipc_conn *conn)
{
	if (conn->subscriber)
		return;
	conn->event_ends = calloc(conn->server->queue_limit, sizeof(uint64_t));
	if (conn->event_ends == NULL)
		abort();
	conn->subscriber = true;
	atomic_fetch_add(&conn->server->subscriber_count, 1);
	log_info("%s: connection %llu from pid %d subscribed", conn->server->name,
	         (unsigned long long)conn->id, (int)conn->peer.pid);
}

/* Queues one event for subscriber c. Returns false, after closing c, when c already
 * has queue_limit events that have not left its output buffer. */
static bool subscriber_push(struct ipc_conn *c, const struct buf *frame)
{
	uint32_t limit = c->server->queue_limit;
	uint64_t sent = c->bytes_added - evbuffer_get_length(bufferevent_get_output(c->bev));

	while (c->event_count > 0 && c->event_ends[c->event_head] <= sent) {
		c->event_head = (c->event_head + 1) % limit;
		c->event_count--;
	}
	if (c->event_count == limit) {
		log_warn("%s: disconnecting subscriber %llu (pid %d): %u events queued and not "
		         "read; "
		         "it must subscribe again",
		         c->server->name, (unsigned long long)c->id, (int)c->peer.pid, limit);
		count_rejected(c->server, "subscriber_overflow");
		conn_free(c);
		return false;
	}

	conn_add_output(c, frame);
	c->event_ends[(c->event_head + c->event_count) % limit] = c->bytes_added;
	c->event_count++;
	return true;
}

static void deliver_broadcast(struct ipc_server *s, const struct buf *frame)
{
	struct ipc_conn *c = s->conns, *next;

	for (; c != NULL; c = next) {
		next = c->next;
		if (c->subscriber)
			subscriber_push(c, frame);
	}
}

static void deliver_to_conn(struct ipc_server *s, uint64_t conn_id, const struct buf *frame)
{
	for (struct ipc_conn *c = s->conns; c != NULL; c = c->next) {
		if (c->id == conn_id) {
			conn_add_output(c, frame);
			return;
		}
	}
	log_debug("%s: dropped a reply to closed connection %llu", s->name,
	          (unsigned long long)conn_id);
}

static void disconnect_all_subscribers(struct ipc_server *s)
{
	struct ipc_conn *c = s->conns, *next;

	for (; c != NULL; c = next) {
		next = c->next;
		if (!c->subscriber)
			continue;
		log_warn("%s: disconnecting subscriber %llu (pid %d): the event outbox overflowed; "
		         "it must subscribe again",
		         s->name, (unsigned long long)c->id, (int)c->peer.pid);
		count_rejected(s, "subscriber_overflow");
		conn_free(c);
	}
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_server *s = arg;
	struct outbox_item *item, *next;
	uint64_t counter;
	bool overflowed;

	(void)what;
	if (read(fd, &counter, sizeof(counter)) < 0 && errno != EAGAIN)
		log_error("%s: read from the wake-up eventfd failed: %s", s->name, strerror(errno));

	pthread_mutex_lock(&s->outbox_lock);
	item = s->outbox_head;
	overflowed = s->outbox_overflowed;
	s->outbox_head = s->outbox_tail = NULL;
	s->outbox_broadcasts = 0;
	s->outbox_overflowed = false;
	pthread_mutex_unlock(&s->outbox_lock);

	if (overflowed)
		disconnect_all_subscribers(s);
	for (; item != NULL; item = next) {
		next = item->next;
		if (item->conn_id == 0)
			deliver_broadcast(s, &item->frame);
		else
			deliver_to_conn(s, item->conn_id, &item->frame);
		buf_free(&item->frame);
		free(item);
	}
}

/* Appends item to the outbox and wakes the loop when the outbox was empty. Broadcasts
 * beyond queue_limit are dropped and flag an overflow instead, because a stalled loop
 * would otherwise let the outbox grow without bound. */
static void outbox_push(struct ipc_server *s, struct outbox_item *item)
{
	uint64_t one = 1;
	bool was_empty;

	pthread_mutex_lock(&s->outbox_lock);
	if (item->conn_id == 0 && s->outbox_broadcasts >= s->queue_limit) {
		s->outbox_overflowed = true;
		pthread_mutex_unlock(&s->outbox_lock);
		buf_free(&item->frame);
		free(item);
		return;
	}
	was_empty = s->outbox_head == NULL && !s->outbox_overflowed;
	if (s->outbox_tail != NULL)
		s->outbox_tail->next = item;
	else
		s->outbox_head = item;
	s->outbox_tail = item;
	if (item->conn_id == 0)
		s->outbox_broadcasts++;
	pthread_mutex_unlock(&s->outbox_lock);

	if (was_empty && write(s->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_error("%s: write to the wake-up eventfd failed: %s", s->name, strerror(errno));
}

static bool outbox_queue(struct ipc_server *s, uint64_t conn_id, const ipc_envelope *env)
{
	struct outbox_item *item = calloc(1, sizeof(*item));

	if (item == NULL)
		abort();
	item->conn_id = conn_id;
	buf_init(&item->frame);
	if (!ipc_frame_encode(env, s->max_frame, &item->frame)) {
		log_error("%s: a message for connection %llu does not fit the %u-byte frame limit",
		          s->name, (unsigned long long)conn_id, s->max_frame);
		buf_free(&item->frame);
		free(item);
		return false;
	}
	outbox_push(s, item);
	return true;
}

bool ipc_server_send(struct ipc_server *server, uint64_t conn_id, const ipc_envelope *env)
{
	return outbox_queue(server, conn_id, env);
}

void ipc_server_publish(struct ipc_server *server, const ipc_envelope *env)
{
	if (atomic_load_explicit(&server->subscriber_count, memory_order_relaxed) == 0)
		return;
	outbox_queue(server, 0, env);
}

size_t ipc_server_connection_count(const struct ipc_server *server)
{
	return atomic_load(&server->conn_count);
}

size_t ipc_server_subscriber_count(const struct ipc_server *server)
{
	return atomic_load(&server->subscriber_count);
}

/* Removes a socket file left by a previous run. Fails when a server still accepts on
 * it, or when the path exists and is not a socket, so no live server or unrelated file
 * is ever removed. */
static bool remove_stale_socket(const struct sockaddr_un *addr, char *err, size_t err_size)
{
	struct stat st;
	int fd;
	bool live;

	if (lstat(addr->sun_path, &st) != 0)
		return true;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, err_size,
		         "%s exists and is not a socket; remove it or set another run "
		         "directory",
		         addr->sun_path);
		return false;
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	live = fd >= 0 && connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0;
	if (fd >= 0)
		close(fd);
	if (live) {
		snprintf(err, err_size,
		         "another process serves %s; stop it before starting this one",
		         addr->sun_path);
		return false;
	}
	if (unlink(addr->sun_path) != 0 && errno != ENOENT) {
		snprintf(err, err_size, "unlink(\"%s\") of a stale socket failed: %s",
		         addr->sun_path, strerror(errno));
		return false;
	}
	return true;
}

static int listen_unix(const char *path, char *err, size_t err_size)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, err_size,
		         "socket path %s is longer than %zu bytes; use a shorter run "
		         "directory",
		         path, sizeof(addr.sun_path) - 1);
		return -1;
	}
	memcpy(addr.sun_path, path, strlen(path) + 1);
	if (!remove_stale_socket(&addr, err, err_size))
		return -1;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, err_size, "socket(AF_UNIX) for %s failed: %s", path, strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || chmod(path, 0660) != 0 ||
	    listen(fd, LISTEN_BACKLOG) != 0) {
		snprintf(err, err_size, "binding or listening on %s failed: %s", path,
		         strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void resolve_group(struct ipc_server *s)
{
	struct group gr, *found = NULL;
	char text[4096];

	if (getgrnam_r(STEMEDB_GROUP, &gr, text, sizeof(text), &found) == 0 && found != NULL) {
		s->has_group = true;
		s->group_gid = gr.gr_gid;
	}
}

static struct ipc_server *server_new(struct event_base *base, const struct ipc_server_options *o)
{
	struct ipc_server *s = calloc(1, sizeof(*s));
	const char *slash;

	if (s == NULL)
		abort();
	s->base = base;
	s->socket_path = strdup(o->socket_path);
	if (s->socket_path == NULL)
		abort();
	slash = strrchr(s->socket_path, '/');
	s->name = slash != NULL ? slash + 1 : s->socket_path;
	s->max_frame = o->max_frame_bytes != 0 ? o->max_frame_bytes : IPC_DEFAULT_MAX_FRAME_BYTES;
	s->queue_limit = o->subscriber_queue_limit != 0 ? o->subscriber_queue_limit
	                                                : DEFAULT_SUBSCRIBER_QUEUE;
	s->handler = o->handler;
	s->handler_ctx = o->handler_ctx;
	s->connections_gauge = o->connections_gauge;
	s->frames_rejected = o->frames_rejected;
	s->uid = geteuid();
	s->wake_fd = -1;
	atomic_init(&s->next_conn_id, 1);
	pthread_mutex_init(&s->outbox_lock, NULL);
	resolve_group(s);
	return s;
}

struct ipc_server *ipc_server_start(struct event_base *base,
                                    const struct ipc_server_options *options, char *err,
                                    size_t err_size)
{
	struct ipc_server *s = server_new(base, options);
	int fd = -1;

	s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->wake_fd < 0) {
		snprintf(err, err_size, "eventfd for %s failed: %s", s->socket_path,
		         strerror(errno));
		goto fail;
	}
	s->wake_event = event_new(base, s->wake_fd, EV_READ | EV_PERSIST, wake_cb, s);
	event_add(s->wake_event, NULL);

	fd = listen_unix(s->socket_path, err, err_size);
	if (fd < 0)
		goto fail;
	s->listener = evconnlistener_new(base, accept_cb, s,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (s->listener == NULL) {
		snprintf(err, err_size, "evconnlistener_new for %s failed", s->socket_path);
		close(fd);
		unlink(s->socket_path);
		goto fail;
	}
	evconnlistener_set_error_cb(s->listener, accept_error_cb);
	log_info("%s: serving IPC on %s (frame limit %u bytes)", s->name, s->socket_path,
	         s->max_frame);
	return s;

fail:
	ipc_server_stop(s);
	return NULL;
}

void ipc_server_stop(struct ipc_server *server)
{
	struct outbox_item *item, *next;

	if (server == NULL)
		return;
	while (server->conns != NULL)
		conn_free(server->conns);
	if (server->listener != NULL) {
		evconnlistener_free(server->listener);
		unlink(server->socket_path);
	}
	if (server->wake_event != NULL)
		event_free(server->wake_event);
	if (server->wake_fd >= 0)
		close(server->wake_fd);

	for (item = server->outbox_head; item != NULL; item = next) {
		next = item->next;
		buf_free(&item->frame);
		free(item);
	}
	pthread_mutex_destroy(&server->outbox_lock);
	free(server->socket_path);
	free(server);
}
