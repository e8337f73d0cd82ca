/* Blocking IPC client and event-stream subscription. Sockets are non-blocking and
 * every wait goes through poll with the time left before the call's deadline, so a
 * call never takes longer than its timeout. */

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "stemedb/ipc.h"
#include "stemedb/log.h"

#define DEFAULT_BACKOFF_INITIAL_MS 100u
#define DEFAULT_BACKOFF_MAX_MS     5000u
#define READ_CHUNK                 65536u

/* A connected socket with the bytes read but not yet decoded. */
struct ipc_stream {
	int fd;
	uint32_t max_frame;
	struct buf in;
};

struct ipc_client {
	char *socket_path;
	struct ipc_stream stream;
	uint64_t next_request_id;
	uint32_t backoff_initial_ms, backoff_max_ms;
	uint32_t backoff_ms;      /* wait after the next failed connect */
	uint64_t next_attempt_ms; /* monotonic time before which no connect is tried */
	unsigned failed_attempts; /* consecutive failed connects, for the log */
	bool reused;              /* the connection has carried a call before */
};

struct ipc_subscription {
	struct ipc_stream stream;
	uint64_t start_offset;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int ms_left(uint64_t deadline)
{
	uint64_t now = now_ms();

	return now >= deadline ? 0 : (int)(deadline - now);
}

static void stream_close(struct ipc_stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	buf_reset(&s->in);
}

/* Waits until fd is ready for events or the deadline passes. */
static enum ipc_result wait_fd(int fd, short events, uint64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	int rc;

	do {
		rc = poll(&p, 1, ms_left(deadline));
	} while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return IPC_ERR_IO;
	return rc == 0 ? IPC_ERR_TIMEOUT : IPC_OK;
}

/* Connects with a non-blocking connect, because a full listen backlog would block a
 * plain connect past the deadline. */
static enum ipc_result stream_connect(struct ipc_stream *s, const char *path, uint64_t deadline,
                                      char *err, size_t err_size)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	socklen_t len = sizeof(int);
	int so_error = 0;
	enum ipc_result r;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, err_size, "socket path %s is too long", path);
		return IPC_ERR_UNAVAILABLE;
	}
	memcpy(addr.sun_path, path, strlen(path) + 1);
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		snprintf(err, err_size, "socket(AF_UNIX) failed: %s", strerror(errno));
		return IPC_ERR_IO;
	}
	if (connect(s->fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
		return IPC_OK;
	if (errno != EAGAIN && errno != EINPROGRESS) {
		snprintf(err, err_size, "connect to %s failed: %s", path, strerror(errno));
		stream_close(s);
		return IPC_ERR_UNAVAILABLE;
	}

	r = wait_fd(s->fd, POLLOUT, deadline);
	if (r == IPC_OK && getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &so_error, &len) == 0 &&
	    so_error == 0)
		return IPC_OK;
	snprintf(err, err_size, "connect to %s failed: %s", path,
	         r == IPC_ERR_TIMEOUT ? "timed out" : strerror(so_error != 0 ? so_error : errno));
	stream_close(s);
	return r == IPC_ERR_TIMEOUT ? IPC_ERR_TIMEOUT : IPC_ERR_UNAVAILABLE;
}

static enum ipc_result stream_write(struct ipc_stream *s, const struct buf *frame,
                                    uint64_t deadline, char *err, size_t err_size)
{
	size_t off = 0;
	ssize_t n;

	while (off < frame->len) {
		n = send(s->fd, frame->data + off, frame->len - off, MSG_NOSIGNAL);
		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EPIPE || errno == ECONNRESET) {
			snprintf(err, err_size, "the server closed the connection");
			return IPC_ERR_CLOSED;
		}
		if (errno != EAGAIN || wait_fd(s->fd, POLLOUT, deadline) != IPC_OK) {
			snprintf(err, err_size, "sending a request failed: %s",
			         errno == EAGAIN ? "timed out" : strerror(errno));
			return errno == EAGAIN ? IPC_ERR_TIMEOUT : IPC_ERR_IO;
		}
	}
	return IPC_OK;
}

/* Takes the first complete frame out of the buffer. IPC_ERR_TIMEOUT means that no
 * complete frame is buffered yet. */
static enum ipc_result stream_take_frame(struct ipc_stream *s, ipc_envelope **env, char *err,
                                         size_t err_size)
{
	size_t consumed, needed;
	enum ipc_frame_status st;

	st = ipc_frame_decode(s->in.data, s->in.len, s->max_frame, env, &consumed, &needed);
	if (st == IPC_FRAME_INCOMPLETE)
		return IPC_ERR_TIMEOUT;
	if (st != IPC_FRAME_OK) {
		snprintf(err, err_size, "invalid frame from the server: %s",
		         ipc_frame_status_reason(st));
		return IPC_ERR_PROTOCOL;
	}
	memmove(s->in.data, s->in.data + consumed, s->in.len - consumed);
	s->in.len -= consumed;
	return IPC_OK;
}

/* Reads until one whole frame is buffered and returns its Envelope. */
static enum ipc_result stream_read(struct ipc_stream *s, uint64_t deadline, ipc_envelope **env,
                                   char *err, size_t err_size)
{
	enum ipc_result r;
	ssize_t n;

	for (;;) {
		r = stream_take_frame(s, env, err, err_size);
		if (r != IPC_ERR_TIMEOUT)
			return r;

		buf_reserve(&s->in, READ_CHUNK);
		n = recv(s->fd, s->in.data + s->in.len, READ_CHUNK, 0);
		if (n > 0) {
			s->in.len += (size_t)n;
			continue;
		}
		if (n == 0) {
			snprintf(err, err_size, "the server closed the connection%s",
			         s->in.len > 0 ? " inside a frame" : "");
			return IPC_ERR_CLOSED;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			snprintf(err, err_size, "recv failed: %s", strerror(errno));
			return IPC_ERR_IO;
		}
		r = wait_fd(s->fd, POLLIN, deadline);
		if (r != IPC_OK) {
			snprintf(err, err_size, "%s",
			         r == IPC_ERR_TIMEOUT ? "timed out waiting for the "
			                                "server"
			                              : "poll failed");
			return r;
		}
	}
}

struct ipc_client *ipc_client_new(const struct ipc_client_options *options)
{
	struct ipc_client *c = calloc(1, sizeof(*c));

	if (c == NULL || (c->socket_path = strdup(options->socket_path)) == NULL)
		abort();
	c->stream.fd = -1;
	c->stream.max_frame = options->max_frame_bytes != 0 ? options->max_frame_bytes
	                                                    : IPC_DEFAULT_MAX_FRAME_BYTES;
	buf_init(&c->stream.in);
	c->backoff_initial_ms = options->backoff_initial_ms != 0 ? options->backoff_initial_ms
	                                                         : DEFAULT_BACKOFF_INITIAL_MS;
	c->backoff_max_ms =
	        options->backoff_max_ms != 0 ? options->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
	if (c->backoff_max_ms < c->backoff_initial_ms)
		c->backoff_max_ms = c->backoff_initial_ms;
	c->backoff_ms = c->backoff_initial_ms;
	c->next_request_id = 1;
	return c;
}

void ipc_client_free(struct ipc_client *client)
{
	if (client == NULL)
		return;
	stream_close(&client->stream);
	buf_free(&client->stream.in);
	free(client->socket_path);
	free(client);
}

void ipc_client_disconnect(struct ipc_client *client)
{
	stream_close(&client->stream);
}

static void note_connect_failure(struct ipc_client *c, const char *reason)
{
	c->failed_attempts++;
	if (c->failed_attempts == 1)
		log_warn("IPC connect to %s failed: %s; retrying with backoff up to %u ms",
		         c->socket_path, reason, c->backoff_max_ms);
	else
		log_debug("IPC connect to %s failed again (attempt %u): %s", c->socket_path,
		          c->failed_attempts, reason);
	c->next_attempt_ms = now_ms() + c->backoff_ms;
	c->backoff_ms =
	        c->backoff_ms * 2 > c->backoff_max_ms ? c->backoff_max_ms : c->backoff_ms * 2;
}

/* A connection whose socket is readable between calls has been closed by the server
 * (or carries bytes no call requested), so it cannot be reused. */
static bool connection_still_usable(struct ipc_client *c)
{
	struct pollfd p = {.fd = c->stream.fd, .events = POLLIN};

	return poll(&p, 1, 0) == 0;
}

/* Connects unless connected, retrying with backoff until the deadline. */
static enum ipc_result client_connect(struct ipc_client *c, uint64_t deadline, char *err,
                                      size_t err_size)
{
	enum ipc_result r;

	if (c->stream.fd >= 0 && connection_still_usable(c))
		return IPC_OK;
	stream_close(&c->stream);

	for (;;) {
		uint64_t now = now_ms();

		if (c->next_attempt_ms > now) {
			if (c->next_attempt_ms >= deadline) {
				snprintf(err, err_size,
				         "%s is unavailable; next connect attempt in %llu ms",
				         c->socket_path,
				         (unsigned long long)(c->next_attempt_ms - now));
				return IPC_ERR_UNAVAILABLE;
			}
			usleep((useconds_t)(c->next_attempt_ms - now) * 1000u);
		}

		r = stream_connect(&c->stream, c->socket_path, deadline, err, err_size);
		if (r == IPC_OK)
			break;
		if (r == IPC_ERR_IO)
			return r;
		note_connect_failure(c, err);
		if (now_ms() >= deadline)
			return r;
	}

	if (c->failed_attempts > 0)
		log_info("IPC connected to %s after %u failed attempts", c->socket_path,
		         c->failed_attempts);
	c->failed_attempts = 0;
	c->backoff_ms = c->backoff_initial_ms;
	c->next_attempt_ms = 0;
	c->reused = false;
	return IPC_OK;
}

/* Sends the request, reconnecting once when a reused connection turns out to be
 * closed: the server never saw the request then, so resending cannot run it twice. */
static enum ipc_result client_send(struct ipc_client *c, const struct buf *frame, uint64_t deadline,
                                   char *err, size_t err_size)
{
	enum ipc_result r;

	for (int attempt = 0; attempt < 2; attempt++) {
		r = client_connect(c, deadline, err, err_size);
		if (r != IPC_OK)
			return r;
		r = stream_write(&c->stream, frame, deadline, err, err_size);
		if (r != IPC_ERR_CLOSED || !c->reused)
			return r;
		log_info("IPC connection to %s was closed by the server; reconnecting",
		         c->socket_path);
		stream_close(&c->stream);
	}
	return r;
}

/* Reads replies until the one for request_id arrives, and checks its body type. */
static enum ipc_result client_receive(struct ipc_client *c, uint64_t request_id,
                                      ipc_body_case expected, uint64_t deadline,
                                      ipc_envelope **reply,
                                      Stemedb__Ipc__V1__ErrorCode *remote_code, char *err,
                                      size_t err_size)
{
	ipc_envelope *env = NULL;
	enum ipc_result r;

	for (;;) {
		r = stream_read(&c->stream, deadline, &env, err, err_size);
		if (r != IPC_OK)
			return r;
		if (env->request_id == request_id)
			break;
		log_debug("IPC %s: ignored a message for request %llu while waiting for %llu",
		          c->socket_path, (unsigned long long)env->request_id,
		          (unsigned long long)request_id);
		ipc_envelope_free(env);
	}

	if (env->body_case == STEMEDB__IPC__V1__ENVELOPE__BODY_ERROR) {
		snprintf(err, err_size, "%s", env->error->message);
		if (remote_code != NULL)
			*remote_code = env->error->code;
		ipc_envelope_free(env);
		return IPC_ERR_REMOTE;
	}
	if (env->body_case != expected) {
		snprintf(err, err_size, "unexpected reply type %d, expected %d",
		         (int)env->body_case, (int)expected);
		ipc_envelope_free(env);
		return IPC_ERR_PROTOCOL;
	}
	*reply = env;
	return IPC_OK;
}

enum ipc_result ipc_client_call(struct ipc_client *client, ipc_envelope *request,
                                ipc_body_case expected_body, uint32_t timeout_ms,
                                ipc_envelope **reply, Stemedb__Ipc__V1__ErrorCode *remote_code,
                                char *err, size_t err_size)
{
	uint64_t deadline = now_ms() + timeout_ms;
	struct buf frame;
	enum ipc_result r;

	*reply = NULL;
	err[0] = '\0';
	request->request_id = client->next_request_id++;
	buf_init(&frame);
	if (!ipc_frame_encode(request, client->stream.max_frame, &frame)) {
		snprintf(err, err_size, "the request is empty or exceeds the %u-byte frame limit",
		         client->stream.max_frame);
		r = IPC_ERR_PROTOCOL;
		goto done;
	}

	r = client_send(client, &frame, deadline, err, err_size);
	if (r == IPC_OK)
		r = client_receive(client, request->request_id, expected_body, deadline, reply,
		                   remote_code, err, err_size);
	/* After a timeout or a broken stream a late reply could still arrive, so the
	 * connection is dropped rather than reused. An error reply leaves it in sync. */
	if (r != IPC_OK && r != IPC_ERR_REMOTE)
		stream_close(&client->stream);
	else
		client->reused = true;

done:
	buf_free(&frame);
	return r;
}

struct ipc_subscription *ipc_subscribe(const struct ipc_client_options *options,
                                       uint32_t timeout_ms, enum ipc_result *result, char *err,
                                       size_t err_size)
{
	ipc_envelope request = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__SubscribeRequest body = STEMEDB__IPC__V1__SUBSCRIBE_REQUEST__INIT;
	uint64_t deadline = now_ms() + timeout_ms;
	struct ipc_subscription *s = calloc(1, sizeof(*s));
	ipc_envelope *reply = NULL;
	struct buf frame;
	enum ipc_result r;

	if (s == NULL)
		abort();
	s->stream.fd = -1;
	s->stream.max_frame = options->max_frame_bytes != 0 ? options->max_frame_bytes
	                                                    : IPC_DEFAULT_MAX_FRAME_BYTES;
	buf_init(&s->stream.in);
	buf_init(&frame);
	request.request_id = 1;
	request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_SUBSCRIBE_REQUEST;
	request.subscribe_request = &body;
	ipc_frame_encode(&request, s->stream.max_frame, &frame);

	r = stream_connect(&s->stream, options->socket_path, deadline, err, err_size);
	if (r == IPC_OK)
		r = stream_write(&s->stream, &frame, deadline, err, err_size);
	if (r == IPC_OK)
		r = stream_read(&s->stream, deadline, &reply, err, err_size);
	if (r == IPC_OK && reply->body_case == STEMEDB__IPC__V1__ENVELOPE__BODY_ERROR) {
		snprintf(err, err_size, "%s", reply->error->message);
		r = IPC_ERR_REMOTE;
	} else if (r == IPC_OK &&
	           reply->body_case != STEMEDB__IPC__V1__ENVELOPE__BODY_SUBSCRIBE_RESPONSE) {
		snprintf(err, err_size, "unexpected reply type %d to a subscribe request",
		         (int)reply->body_case);
		r = IPC_ERR_PROTOCOL;
	}
	if (r == IPC_OK)
		s->start_offset = reply->subscribe_response->wal_end_offset;

	ipc_envelope_free(reply);
	buf_free(&frame);
	if (result != NULL)
		*result = r;
	if (r != IPC_OK) {
		ipc_subscription_free(s);
		return NULL;
	}
	return s;
}

uint64_t ipc_subscription_start_offset(const struct ipc_subscription *s)
{
	return s->start_offset;
}

enum ipc_result ipc_subscription_next(struct ipc_subscription *s, uint32_t timeout_ms,
                                      ipc_envelope **event, char *err, size_t err_size)
{
	enum ipc_result r;

	*event = NULL;
	err[0] = '\0';
	if (s->stream.fd < 0) {
		snprintf(err, err_size, "the subscription has ended; subscribe again");
		return IPC_ERR_CLOSED;
	}
	r = stream_read(&s->stream, now_ms() + timeout_ms, event, err, err_size);
	if (r != IPC_OK && r != IPC_ERR_TIMEOUT)
		stream_close(&s->stream);
	return r;
}

int ipc_subscription_fd(const struct ipc_subscription *s)
{
	return s->stream.fd;
}

void ipc_subscription_free(struct ipc_subscription *s)
{
	if (s == NULL)
		return;
	stream_close(&s->stream);
	buf_free(&s->stream.in);
	free(s);
}
