#include "http_h2.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "stemedb/config.h"
#include "stemedb/log.h"

#define H2_PREFACE     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN (sizeof(H2_PREFACE) - 1)
/* The HTTP/1.1 request head of an upgrade must fit in this many bytes. */
#define H2_UPGRADE_HEAD_MAX 8192
#define H2_HEADER_VALUE_MAX 1024

struct h2_front_state {
	struct event_base *base;
	struct evconnlistener *listener;
	pthread_t thread;
	char upstream_host[256];
	uint16_t upstream_port;
	struct http_h2_limits limits;
};

struct h2_session;

/* One HTTP/2 stream. It lives until nghttp2 has closed it and the forwarded
 * request, if any, has completed. */
struct h2_stream {
	struct h2_session *session;
	struct h2_front_state *front;
	int32_t id;
	char method[16];
	char path[H2_HEADER_VALUE_MAX];
	char content_type[H2_HEADER_VALUE_MAX];
	char accept[H2_HEADER_VALUE_MAX];
	char agent_id[H2_HEADER_VALUE_MAX];
	char api_key[H2_HEADER_VALUE_MAX];
	char pow_nonce[H2_HEADER_VALUE_MAX];
	char pow_timestamp[H2_HEADER_VALUE_MAX];
	size_t header_bytes;
	struct evbuffer *request_body;
	struct evbuffer *response_body;
	struct evhttp_connection *upstream;
	bool answered;  /* a response was submitted */
	bool forwarded; /* a request to the upstream is in flight */
	bool closed;    /* nghttp2 has closed the stream */
	struct h2_stream *next;
};

struct h2_session {
	struct h2_front_state *front;
	struct bufferevent *bev;
	nghttp2_session *ng;
	bool started; /* the preface or the upgrade was seen */
	bool closing; /* an HTTP/1.1 rejection is being written, then the socket closes */
	struct h2_stream *streams;
	struct evhttp_connection *idle_upstreams[8];
	size_t idle_count;
};

struct http_h2_front {
	struct h2_front_state state;
};

static void h2_session_free(struct h2_session *s);
static void h2_session_flush(struct h2_session *s);

static void h2_stream_unlink(struct h2_stream *st)
{
	struct h2_stream **link = &st->session->streams;

	while (*link != NULL && *link != st)
		link = &(*link)->next;
	if (*link == st)
		*link = st->next;
}

static void h2_stream_free(struct h2_stream *st)
{
	h2_stream_unlink(st);
	evbuffer_free(st->request_body);
	evbuffer_free(st->response_body);
	free(st);
}

static ssize_t h2_read_body(nghttp2_session *ng, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct evbuffer *body = source->ptr;
	int n = evbuffer_remove(body, buf, length);

	(void)ng;
	(void)stream_id;
	(void)user_data;
	if (n < 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (evbuffer_get_length(body) == 0)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return n;
}

#define H2_NV(name, value)                                                                         \
	{                                                                                          \
		(uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, strlen(value),            \
		        NGHTTP2_NV_FLAG_NONE                                                       \
	}

/* Response headers of the HTTP/1.1 listener that the front passes on: the methods of a
 * 405, the scheme of a 401, and the headers of the protection layers. */
static const struct {
	const char *upstream; /* as libevent finds it (case-insensitive) */
	const char *h2;       /* lowercase, as HTTP/2 requires */
} passed_headers[] = {
        {"Allow", "allow"},
        {"Retry-After", "retry-after"},
        {"WWW-Authenticate", "www-authenticate"},
        {"X-Circuit-Breaker-State", "x-circuit-breaker-state"},
        {"X-Quota-Limit", "x-quota-limit"},
        {"X-Quota-Remaining", "x-quota-remaining"},
        {"X-Quota-Reset", "x-quota-reset"},
        {"X-PoW-Difficulty", "x-pow-difficulty"},
};
#define PASSED_HEADER_COUNT (sizeof(passed_headers) / sizeof(passed_headers[0]))

/* Submits a response whose body is st->response_body, with the passed headers of
 * upstream (NULL for a response of the front itself). */
static void h2_submit(struct h2_stream *st, int status, const char *content_type,
                      const struct evkeyvalq *upstream)
{
	char status_text[8];
	nghttp2_nv headers[2 + PASSED_HEADER_COUNT];
	size_t count = 0;
	nghttp2_data_provider provider = {.source.ptr = st->response_body,
	                                  .read_callback = h2_read_body};
	bool has_body =
	        evbuffer_get_length(st->response_body) > 0 && strcmp(st->method, "HEAD") != 0;

	snprintf(status_text, sizeof(status_text), "%d", status);
	headers[count++] = (nghttp2_nv)H2_NV(":status", status_text);
	if (content_type != NULL)
		headers[count++] = (nghttp2_nv)H2_NV("content-type", content_type);
	for (size_t i = 0; upstream != NULL && i < PASSED_HEADER_COUNT; i++) {
		const char *value = evhttp_find_header(upstream, passed_headers[i].upstream);

		if (value != NULL)
			headers[count++] = (nghttp2_nv){
			        (uint8_t *)passed_headers[i].h2, (uint8_t *)value,
			        strlen(passed_headers[i].h2), strlen(value), NGHTTP2_NV_FLAG_NONE};
	}

	st->answered = true;
	nghttp2_submit_response(st->session->ng, st->id, headers, count,
	                        has_body ? &provider : NULL);
}

/* Sends the API error body on a stream that the front itself rejects. */
static void h2_reply_error(struct h2_stream *st, int status, const char *code, const char *message)
{
	evbuffer_drain(st->response_body, evbuffer_get_length(st->response_body));
	evbuffer_add_printf(st->response_body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
	                    code, message);
	h2_submit(st, status, "application/json", NULL);
}

static void on_free_upstream(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	evhttp_connection_free(arg);
}

/* Frees an upstream connection from inside its completion callback. libevent decides
 * whether to free a connection marked free-on-completion before it runs the callback,
 * so marking it there leaks it; freeing it directly there is unsafe. The free runs
 * from the event loop right after the callback returns instead. */
static void h2_free_upstream_later(struct h2_front_state *front, struct evhttp_connection *conn)
{
	const struct timeval now = {0, 0};

	if (event_base_once(front->base, -1, EV_TIMEOUT, on_free_upstream, conn, &now) != 0) {
		log_error("event_base_once() failed; an HTTP/2 upstream connection is closed at "
		          "once instead");
		evhttp_connection_free_on_completion(conn);
	}
}

static struct evhttp_connection *h2_take_upstream(struct h2_session *s)
{
	struct h2_front_state *front = s->front;

	if (s->idle_count > 0)
		return s->idle_upstreams[--s->idle_count];
	return evhttp_connection_base_new(front->base, NULL, front->upstream_host,
	                                  front->upstream_port);
}

static void h2_return_upstream(struct h2_session *s, struct evhttp_connection *conn)
{
	if (s->idle_count < sizeof(s->idle_upstreams) / sizeof(s->idle_upstreams[0]))
		s->idle_upstreams[s->idle_count++] = conn;
	else
		h2_free_upstream_later(s->front, conn);
}

static void h2_copy_response(struct h2_stream *st, struct evhttp_request *res)
{
	struct evkeyvalq *headers = evhttp_request_get_input_headers(res);
	const char *content_type = evhttp_find_header(headers, "Content-Type");

	evbuffer_add_buffer(st->response_body, evhttp_request_get_input_buffer(res));
	h2_submit(st, evhttp_request_get_response_code(res), content_type, headers);
}

/* Completes a forwarded request. libevent frees res after this returns. */
static void on_upstream_done(struct evhttp_request *res, void *arg)
{
	struct h2_stream *st = arg;
	struct h2_session *s = st->session;

	st->forwarded = false;
	if (s == NULL) {
		/* The HTTP/2 connection closed while the request was in flight. */
		h2_free_upstream_later(st->front, st->upstream);
		evbuffer_free(st->request_body);
		evbuffer_free(st->response_body);
		free(st);
		return;
	}

	if (res == NULL || evhttp_request_get_response_code(res) == 0) {
		log_warn("HTTP/2 stream %d: the forwarded request to %s:%u failed", st->id,
		         s->front->upstream_host, s->front->upstream_port);
		evhttp_connection_free(st->upstream);
		st->upstream = NULL;
		if (!st->closed)
			h2_reply_error(
			        st, 502, "internal_error",
			        "The HTTP/1.1 listener did not respond; see the server log.");
	} else {
		h2_return_upstream(s, st->upstream);
		st->upstream = NULL;
		if (!st->closed)
			h2_copy_response(st, res);
	}

	if (st->closed)
		h2_stream_free(st);
	else
		h2_session_flush(s);
}

static enum evhttp_cmd_type h2_method_command(const char *method, bool *known)
{
	static const struct {
		const char *name;
		enum evhttp_cmd_type command;
	} table[] = {{"GET", EVHTTP_REQ_GET},       {"POST", EVHTTP_REQ_POST},
	             {"HEAD", EVHTTP_REQ_HEAD},     {"PUT", EVHTTP_REQ_PUT},
	             {"DELETE", EVHTTP_REQ_DELETE}, {"OPTIONS", EVHTTP_REQ_OPTIONS},
	             {"PATCH", EVHTTP_REQ_PATCH}};

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (strcmp(method, table[i].name) == 0) {
			*known = true;
			return table[i].command;
		}
	}
	*known = false;
	return EVHTTP_REQ_GET;
}

static void h2_add_header(struct evkeyvalq *headers, const char *name, const char *value)
{
	if (value[0] != '\0')
		evhttp_add_header(headers, name, value);
}

/* Forwards a complete request to the HTTP/1.1 listener. */
static void h2_forward(struct h2_stream *st)
{
	struct h2_session *s = st->session;
	struct evhttp_request *req;
	struct evkeyvalq *headers;
	enum evhttp_cmd_type command;
	bool known;

	command = h2_method_command(st->method, &known);
	if (!known || st->path[0] != '/') {
		h2_reply_error(st, 400, "invalid_parameter",
		               "The request needs a :method such as GET or POST and a :path "
		               "starting with '/'.");
		return;
	}

	st->upstream = h2_take_upstream(s);
	req = st->upstream != NULL ? evhttp_request_new(on_upstream_done, st) : NULL;
	if (req == NULL) {
		log_error("HTTP/2 stream %d: creating the forwarded request failed", st->id);
		h2_reply_error(st, 500, "internal_error",
		               "The server could not forward the request.");
		return;
	}

	headers = evhttp_request_get_output_headers(req);
	evhttp_add_header(headers, "Host", s->front->upstream_host);
	h2_add_header(headers, "Content-Type", st->content_type);
	h2_add_header(headers, "Accept", st->accept);
	h2_add_header(headers, "X-Agent-Id", st->agent_id);
	h2_add_header(headers, "X-API-Key", st->api_key);
	h2_add_header(headers, "X-PoW-Nonce", st->pow_nonce);
	h2_add_header(headers, "X-PoW-Timestamp", st->pow_timestamp);
	evbuffer_add_buffer(evhttp_request_get_output_buffer(req), st->request_body);

	st->forwarded = true;
	if (evhttp_make_request(st->upstream, req, command, st->path) != 0) {
		/* evhttp_make_request has freed req already. */
		st->forwarded = false;
		evhttp_connection_free(st->upstream);
		st->upstream = NULL;
		h2_reply_error(st, 500, "internal_error",
		               "The server could not forward the request.");
	}
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
	struct h2_session *s = user_data;
	struct h2_stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;

	st = calloc(1, sizeof(*st));
	if (st == NULL)
		abort();
	st->session = s;
	st->front = s->front;
	st->id = frame->hd.stream_id;
	st->request_body = evbuffer_new();
	st->response_body = evbuffer_new();
	if (st->request_body == NULL || st->response_body == NULL)
		abort();
	st->next = s->streams;
	s->streams = st;
	nghttp2_session_set_stream_user_data(ng, st->id, st);
	return 0;
}

static void h2_copy_value(char *out, size_t out_size, const uint8_t *value, size_t len)
{
	size_t n = len < out_size - 1 ? len : out_size - 1;

	memcpy(out, value, n);
	out[n] = '\0';
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
	struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
	static const struct {
		const char *name;
		size_t offset;
	} kept[] = {{":method", offsetof(struct h2_stream, method)},
	            {":path", offsetof(struct h2_stream, path)},
	            {"content-type", offsetof(struct h2_stream, content_type)},
	            {"accept", offsetof(struct h2_stream, accept)},
	            {"x-agent-id", offsetof(struct h2_stream, agent_id)},
	            {"x-api-key", offsetof(struct h2_stream, api_key)},
	            {"x-pow-nonce", offsetof(struct h2_stream, pow_nonce)},
	            {"x-pow-timestamp", offsetof(struct h2_stream, pow_timestamp)}};

	(void)flags;
	(void)user_data;
	if (st == NULL || st->answered)
		return 0;

	st->header_bytes += namelen + valuelen;
	if (st->header_bytes > st->session->front->limits.max_header_bytes) {
		h2_reply_error(st, 431, "invalid_header",
		               "The request headers are larger than STEMEDB_MAX_HEADER_BYTES.");
		return 0;
	}
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		size_t size = i == 0 ? sizeof(st->method) : H2_HEADER_VALUE_MAX;

		if (namelen == strlen(kept[i].name) && memcmp(name, kept[i].name, namelen) == 0)
			h2_copy_value((char *)st + kept[i].offset, size, value, valuelen);
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user_data)
{
	struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, stream_id);

	(void)flags;
	(void)user_data;
	if (st == NULL || st->answered)
		return 0;

	if (evbuffer_get_length(st->request_body) + len >
	    st->session->front->limits.max_body_bytes) {
		h2_reply_error(st, 413, "payload_too_large",
		               "The request body is larger than STEMEDB_MAX_BATCH_BODY_BYTES.");
		return 0;
	}
	evbuffer_add(st->request_body, data, len);
	return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
	struct h2_stream *st;

	(void)user_data;
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;

	st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
	if (st != NULL && !st->answered && !st->forwarded)
		h2_forward(st);
	return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
	struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, stream_id);

	(void)error_code;
	(void)user_data;
	if (st == NULL)
		return 0;

	st->closed = true;
	if (!st->forwarded)
		h2_stream_free(st);
	return 0;
}

static void h2_session_flush(struct h2_session *s)
{
	const uint8_t *data;
	ssize_t n;

	while ((n = nghttp2_session_mem_send(s->ng, &data)) > 0)
		bufferevent_write(s->bev, data, (size_t)n);

	if (n < 0) {
		h2_session_free(s);
		return;
	}

	/* After a GOAWAY nghttp2 wants neither, and the socket closes once the output
	 * has been written. */
	if (!nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng)) {
		s->closing = true;
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
			h2_session_free(s);
	}
}

/* Finds "Name: value" in an HTTP/1.1 head, case-insensitively; copies the value. */
static bool h2_find_header(const char *head, const char *name, char *out, size_t out_size)
{
	size_t name_len = strlen(name);

	for (const char *line = strstr(head, "\r\n"); line != NULL;
	     line = strstr(line + 2, "\r\n")) {
		const char *start = line + 2;
		const char *end = strstr(start, "\r\n");

		if (end == NULL || end == start)
			return false;
		if (strncasecmp(start, name, name_len) == 0 && start[name_len] == ':') {
			const char *value = start + name_len + 1;
			size_t len;

			while (*value == ' ' || *value == '\t')
				value++;
			len = (size_t)(end - value);
			if (len >= out_size)
				return false;
			memcpy(out, value, len);
			out[len] = '\0';
			return true;
		}
	}
	return false;
}

static void h2_reject_http1(struct h2_session *s, const char *message)
{
	evbuffer_add_printf(bufferevent_get_output(s->bev),
	                    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
	                    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
	                    strlen(message), message);
	bufferevent_disable(s->bev, EV_READ);
	s->closing = true;
}

static int h2_base64url_value(char c)
{
	static const char alphabet[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const char *at = c != '\0' ? strchr(alphabet, c) : NULL;

	return at != NULL ? (int)(at - alphabet) : -1;
}

/* Decodes unpadded base64url (the encoding of HTTP2-Settings) into out. */
static bool h2_base64url_decode(const char *text, uint8_t *out, size_t *out_len)
{
	size_t capacity = *out_len, n = 0;
	uint32_t bits = 0;
	int bit_count = 0;

	for (const char *c = text; *c != '\0' && *c != '='; c++) {
		int value = h2_base64url_value(*c);

		if (value < 0)
			return false;
		bits = (bits << 6) | (uint32_t)value;
		bit_count += 6;
		if (bit_count >= 8) {
			if (n == capacity)
				return false;
			bit_count -= 8;
			out[n++] = (uint8_t)(bits >> bit_count);
		}
	}
	*out_len = n;
	return true;
}

enum h2_upgrade_result { H2_UPGRADE_NEED_MORE, H2_UPGRADE_DONE, H2_UPGRADE_REJECTED };

/* Handles "GET /path HTTP/1.1" with "Upgrade: h2c" and "HTTP2-Settings". The request
 * becomes stream 1, and the bytes after the head are HTTP/2. */
static enum h2_upgrade_result h2_try_upgrade(struct h2_session *s, struct evbuffer *input)
{
	size_t len = evbuffer_get_length(input);
	char head[H2_UPGRADE_HEAD_MAX + 1], method[16], path[H2_HEADER_VALUE_MAX];
	char upgrade[64], settings_text[256], accept[H2_HEADER_VALUE_MAX] = "";
	uint8_t settings[192];
	struct evbuffer_ptr end = evbuffer_search(input, "\r\n\r\n", 4, NULL);
	size_t head_len, settings_len;
	struct h2_stream *st;

	if (end.pos < 0) {
		if (len <= H2_UPGRADE_HEAD_MAX)
			return H2_UPGRADE_NEED_MORE;
		h2_reject_http1(s, "The HTTP/1.1 request head is too large.\n");
		return H2_UPGRADE_REJECTED;
	}
	head_len = (size_t)end.pos + 4;
	if (head_len > H2_UPGRADE_HEAD_MAX) {
		h2_reject_http1(s, "The HTTP/1.1 request head is too large.\n");
		return H2_UPGRADE_REJECTED;
	}
	evbuffer_remove(input, head, head_len);
	head[head_len] = '\0';

	if (sscanf(head, "%15s %1023s HTTP/1.1\r\n", method, path) != 2 ||
	    !h2_find_header(head, "Upgrade", upgrade, sizeof(upgrade)) ||
	    strcmp(upgrade, "h2c") != 0 ||
	    !h2_find_header(head, "HTTP2-Settings", settings_text, sizeof(settings_text))) {
		h2_reject_http1(s, "This address serves HTTP/2 only: send the HTTP/2 connection "
		                   "preface, or an HTTP/1.1 request with Upgrade: h2c and "
		                   "HTTP2-Settings.\n");
		return H2_UPGRADE_REJECTED;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		h2_reject_http1(s, "Upgrade: h2c is accepted on GET and HEAD only; send other "
		                   "requests with the HTTP/2 preface.\n");
		return H2_UPGRADE_REJECTED;
	}

	settings_len = sizeof(settings);
	if (!h2_base64url_decode(settings_text, settings, &settings_len) ||
	    nghttp2_session_upgrade2(s->ng, settings, settings_len, strcmp(method, "HEAD") == 0,
	                             NULL) != 0) {
		h2_reject_http1(s, "HTTP2-Settings is not a valid base64url SETTINGS payload.\n");
		return H2_UPGRADE_REJECTED;
	}
	h2_find_header(head, "Accept", accept, sizeof(accept));

	evbuffer_add_printf(bufferevent_get_output(s->bev),
	                    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
	                    "Upgrade: h2c\r\n\r\n");
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		abort();
	st->session = s;
	st->front = s->front;
	st->id = 1;
	st->request_body = evbuffer_new();
	st->response_body = evbuffer_new();
	snprintf(st->method, sizeof(st->method), "%s", method);
	snprintf(st->path, sizeof(st->path), "%s", path);
	snprintf(st->accept, sizeof(st->accept), "%s", accept);
	st->next = s->streams;
	s->streams = st;
	nghttp2_session_set_stream_user_data(s->ng, 1, st);
	s->started = true;
	h2_forward(st);
	return H2_UPGRADE_DONE;
}

static void on_client_read(struct bufferevent *bev, void *arg)
{
	struct h2_session *s = arg;
	struct evbuffer *input = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(input);
	ssize_t used;

	if (!s->started) {
		unsigned char first[H2_PREFACE_LEN];
		size_t n = len < H2_PREFACE_LEN ? len : H2_PREFACE_LEN;

		evbuffer_copyout(input, first, n);
		if (memcmp(first, H2_PREFACE, n) == 0) {
			if (n < H2_PREFACE_LEN)
				return;
			s->started = true;
		} else if (h2_try_upgrade(s, input) != H2_UPGRADE_DONE) {
			return;
		}
		len = evbuffer_get_length(input);
	}

	used = nghttp2_session_mem_recv(s->ng, evbuffer_pullup(input, -1), len);
	if (used < 0) {
		log_info("HTTP/2 connection closed: %s", nghttp2_strerror((int)used));
		h2_session_free(s);
		return;
	}
	evbuffer_drain(input, (size_t)used);
	h2_session_flush(s);
}

static void on_client_write(struct bufferevent *bev, void *arg)
{
	struct h2_session *s = arg;

	(void)bev;
	if (s->closing)
		h2_session_free(s);
}

static void on_client_event(struct bufferevent *bev, short events, void *arg)
{
	(void)bev;
	(void)events;
	h2_session_free(arg);
}

static void h2_session_free(struct h2_session *s)
{
	while (s->streams != NULL) {
		struct h2_stream *st = s->streams;

		s->streams = st->next;
		if (st->forwarded) {
			/* on_upstream_done frees it when the forwarded request ends. */
			st->session = NULL;
			continue;
		}
		evbuffer_free(st->request_body);
		evbuffer_free(st->response_body);
		free(st);
	}
	for (size_t i = 0; i < s->idle_count; i++)
		evhttp_connection_free(s->idle_upstreams[i]);
	nghttp2_session_del(s->ng);
	bufferevent_free(s->bev);
	free(s);
}

static nghttp2_session_callbacks *h2_callbacks(void)
{
	nghttp2_session_callbacks *cb;

	if (nghttp2_session_callbacks_new(&cb) != 0)
		abort();
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	return cb;
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	struct h2_front_state *front = arg;
	struct h2_session *s = calloc(1, sizeof(*s));
	nghttp2_session_callbacks *cb = h2_callbacks();
	nghttp2_settings_entry settings[] = {
	        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, front->limits.max_streams},
	        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)front->limits.max_header_bytes}};
	struct timeval idle = {(time_t)(front->limits.idle_timeout_ms / 1000),
	                       (suseconds_t)(front->limits.idle_timeout_ms % 1000) * 1000};
	int one = 1;

	(void)listener;
	(void)sa;
	(void)salen;
	if (s == NULL)
		abort();

	/* Frames are written as soon as a response is ready, so Nagle's algorithm would
	 * hold small responses back until the client's delayed ACK (about 40 ms). */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->front = front;
	s->bev = bufferevent_socket_new(front->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL || nghttp2_session_server_new(&s->ng, cb, s) != 0)
		abort();
	nghttp2_session_callbacks_del(cb);

	nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, settings,
	                        sizeof(settings) / sizeof(settings[0]));
	bufferevent_setcb(s->bev, on_client_read, on_client_write, on_client_event, s);
	bufferevent_set_timeouts(s->bev, &idle, NULL);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static void *h2_front_main(void *arg)
{
	struct h2_front_state *front = arg;

	event_base_loop(front->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static bool h2_bind(struct h2_front_state *front, const char *listen, char *err, size_t err_size)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *address = NULL;
	char host[256], port_text[8];
	uint16_t port;

	if (!config_split_endpoint(listen, host, sizeof(host), &port)) {
		snprintf(err, err_size, "STEMEDB_HTTP2_LISTEN '%s' is not host:port", listen);
		return false;
	}
	snprintf(port_text, sizeof(port_text), "%u", port);
	if (getaddrinfo(host, port_text, &hints, &address) != 0) {
		snprintf(err, err_size, "STEMEDB_HTTP2_LISTEN host '%s' does not resolve", host);
		return false;
	}
	front->listener = evconnlistener_new_bind(front->base, on_accept, front,
	                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
	                                          address->ai_addr, (int)address->ai_addrlen);
	freeaddrinfo(address);
	if (front->listener == NULL) {
		snprintf(
		        err, err_size,
		        "listening on %s failed: %s; choose a free address in STEMEDB_HTTP2_LISTEN",
		        listen, strerror(errno));
		return false;
	}
	return true;
}

struct http_h2_front *http_h2_front_start(const char *listen, const char *upstream,
                                          const struct http_h2_limits *limits, char *err,
                                          size_t err_size)
{
	struct http_h2_front *f = calloc(1, sizeof(*f));
	struct h2_front_state *front;

	if (f == NULL)
		abort();
	front = &f->state;
	front->limits = *limits;
	if (!config_split_endpoint(upstream, front->upstream_host, sizeof(front->upstream_host),
	                           &front->upstream_port)) {
		snprintf(err, err_size, "STEMEDB_API_LISTEN '%s' is not host:port", upstream);
		free(f);
		return NULL;
	}
	/* A wildcard listener is reached through loopback. */
	if (strcmp(front->upstream_host, "0.0.0.0") == 0)
		snprintf(front->upstream_host, sizeof(front->upstream_host), "127.0.0.1");
	else if (strcmp(front->upstream_host, "::") == 0)
		snprintf(front->upstream_host, sizeof(front->upstream_host), "::1");

	front->base = event_base_new();
	if (front->base == NULL || !h2_bind(front, listen, err, err_size) ||
	    pthread_create(&front->thread, NULL, h2_front_main, front) != 0) {
		if (front->listener != NULL)
			evconnlistener_free(front->listener);
		if (front->base != NULL)
			event_base_free(front->base);
		free(f);
		return NULL;
	}
	log_info("HTTP/2 (h2c) listening on %s, forwarding to %s:%u", listen, front->upstream_host,
	         front->upstream_port);
	return f;
}

void http_h2_front_stop(struct http_h2_front *f)
{
	struct h2_front_state *front = &f->state;

	event_base_loopexit(front->base, NULL);
	pthread_join(front->thread, NULL);
	evconnlistener_free(front->listener);
	/* NOTE: sessions still open at this point are not freed, because the process is
	 * exiting and their bufferevents belong to the base freed next. */
	event_base_free(front->base);
	free(f);
}
