#include "http_h2.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
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
#include <unistd.h>

#include "stemedb/config.h"
#include "stemedb/log.h"

#define H2_PREFACE     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN (sizeof(H2_PREFACE) - 1)
/* The HTTP/1.1 request head of an upgrade must fit in this many bytes. */
#define H2_UPGRADE_HEAD_MAX 16384
#define H2_METHOD_MAX       16
#define H2_PATH_MAX         8192
#define H2_RESPONSE_HEADERS 32
#define H2_CLIENT_MAX       64

struct h2_session;

/* One HTTP/2 stream. It lives until nghttp2 has closed it. A stream whose forwarded
 * request is still running when the client goes away is abandoned instead, and a
 * deferred event frees it together with its upstream connection. */
struct h2_stream {
	struct h2_session *session; /* NULL once abandoned */
	struct http_h2_context *ctx;
	int32_t id;
	char method[H2_METHOD_MAX];
	char path[H2_PATH_MAX];
	size_t header_bytes;
	struct evhttp_request *request; /* being built; owned until made */
	struct evbuffer *response_body;
	struct evhttp_connection *upstream;
	bool answered;      /* response headers were submitted */
	bool forwarded;     /* a request to the upstream is in flight */
	bool upstream_done; /* the forwarded response is complete */
	bool deferred;      /* the data provider returned NGHTTP2_ERR_DEFERRED */
	bool closed;        /* nghttp2 has closed the stream */
	struct h2_stream *next;
};

struct h2_session {
	struct http_h2_context *ctx;
	struct bufferevent *bev;
	nghttp2_session *ng;
	char client[H2_CLIENT_MAX];
	bool started; /* the preface or the upgrade was seen */
	bool holds_client_slot;
	bool closing; /* the socket closes once the output is written */
	struct h2_stream *streams;
	struct evhttp_connection *idle_upstreams[8];
	size_t idle_count;
};

static void h2_session_free(struct h2_session *s);
static void h2_session_flush(struct h2_session *s);
static void h2_free_upstream_later(struct http_h2_context *ctx, struct evhttp_connection *conn);

static void h2_stream_unlink(struct h2_stream *st)
{
	struct h2_stream **link = &st->session->streams;

	while (*link != NULL && *link != st)
		link = &(*link)->next;
	if (*link == st)
		*link = st->next;
}

static void h2_stream_release(struct h2_stream *st)
{
	if (st->request != NULL)
		evhttp_request_free(st->request);
	evbuffer_free(st->response_body);
	free(st);
}

static void on_abandoned(evutil_socket_t fd, short events, void *arg)
{
	struct h2_stream *st = arg;

	(void)fd;
	(void)events;
	/* Freeing the connection drops its pending request without calling back. */
	if (st->upstream != NULL)
		evhttp_connection_free(st->upstream);
	h2_stream_release(st);
}

/* Detaches a stream whose forwarded request may still be running (a Server-Sent
 * Events response never ends by itself). The upstream connection is freed from the
 * event loop, never from inside one of its own callbacks. */
static void h2_stream_abandon(struct h2_stream *st)
{
	const struct timeval now = {0, 0};

	h2_stream_unlink(st);
	st->session = NULL;
	if (event_base_once(st->ctx->base, -1, EV_TIMEOUT, on_abandoned, st, &now) != 0)
		log_error("event_base_once() failed; an HTTP/2 stream and its upstream "
		          "connection are leaked");
}

static void h2_stream_free(struct h2_stream *st)
{
	if (st->forwarded) {
		h2_stream_abandon(st);
		return;
	}
	h2_stream_unlink(st);
	if (st->upstream != NULL)
		h2_free_upstream_later(st->ctx, st->upstream);
	h2_stream_release(st);
}

static ssize_t h2_read_body(nghttp2_session *ng, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct h2_stream *st = source->ptr;
	size_t available = evbuffer_get_length(st->response_body);
	int n;

	(void)ng;
	(void)stream_id;
	(void)user_data;
	if (available == 0 && !st->upstream_done) {
		st->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	n = evbuffer_remove(st->response_body, buf, length);
	if (n < 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (st->upstream_done && evbuffer_get_length(st->response_body) == 0)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return n;
}

#define H2_NV(name, value)                                                                         \
	{                                                                                          \
		(uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, strlen(value),            \
		        NGHTTP2_NV_FLAG_NONE                                                       \
	}

/* Submits the response headers; the body follows from st->response_body as it fills,
 * unless the request was HEAD. */
static void h2_submit(struct h2_stream *st, int status, nghttp2_nv *extra, size_t extra_count)
{
	char status_text[8];
	nghttp2_nv headers[H2_RESPONSE_HEADERS + 1];
	size_t count = 0;
	nghttp2_data_provider provider = {.source.ptr = st, .read_callback = h2_read_body};
	bool has_body = strcmp(st->method, "HEAD") != 0;

	snprintf(status_text, sizeof(status_text), "%d", status);
	headers[count++] = (nghttp2_nv)H2_NV(":status", status_text);
	for (size_t i = 0; i < extra_count && count < H2_RESPONSE_HEADERS + 1; i++)
		headers[count++] = extra[i];

	st->answered = true;
	nghttp2_submit_response(st->session->ng, st->id, headers, count,
	                        has_body ? &provider : NULL);
}

/* Sends the API error body on a stream that the front itself rejects. */
static void h2_reply_error(struct h2_stream *st, int status, const char *code, const char *message)
{
	nghttp2_nv content_type = H2_NV("content-type", "application/json");

	evbuffer_drain(st->response_body, evbuffer_get_length(st->response_body));
	evbuffer_add_printf(st->response_body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
	                    code, message);
	st->upstream_done = true;
	h2_submit(st, status, &content_type, 1);
}

static void h2_resume(struct h2_stream *st)
{
	if (st->deferred && st->session != NULL) {
		st->deferred = false;
		nghttp2_session_resume_data(st->session->ng, st->id);
	}
}

static struct evhttp_connection *h2_take_upstream(struct h2_session *s)
{
	struct http_h2_context *ctx = s->ctx;

	if (s->idle_count > 0)
		return s->idle_upstreams[--s->idle_count];
	return evhttp_connection_base_new(ctx->base, NULL, "127.0.0.1", ctx->upstream_port);
}

static void on_free_upstream(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	evhttp_connection_free(arg);
}

/* Frees an upstream connection from the event loop. Callers may be inside one of the
 * connection's own callbacks, where freeing it directly is unsafe. */
static void h2_free_upstream_later(struct http_h2_context *ctx, struct evhttp_connection *conn)
{
	const struct timeval now = {0, 0};

	if (event_base_once(ctx->base, -1, EV_TIMEOUT, on_free_upstream, conn, &now) != 0) {
		log_error("event_base_once() failed; an HTTP/2 upstream connection is closed "
		          "after its response instead");
		evhttp_connection_free_on_completion(conn);
	}
}

/* Keeps a finished upstream connection for the next stream of the session. */
static void h2_return_upstream(struct h2_session *s, struct evhttp_connection *conn)
{
	if (s->idle_count < sizeof(s->idle_upstreams) / sizeof(s->idle_upstreams[0]))
		s->idle_upstreams[s->idle_count++] = conn;
	else
		h2_free_upstream_later(s->ctx, conn);
}

/* Hop-by-hop headers of HTTP/1.1 that HTTP/2 forbids or frames itself. */
static bool h2_is_hop_header(const char *name)
{
	static const char *const hop[] = {"connection",        "keep-alive", "proxy-connection",
	                                  "transfer-encoding", "upgrade",    "te",
	                                  "content-length",    "host",       "http2-settings"};

	for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++) {
		if (strcasecmp(name, hop[i]) == 0)
			return true;
	}
	return false;
}

/* Sends the upstream status and headers as soon as they arrive. */
static int on_upstream_headers(struct evhttp_request *res, void *arg)
{
	struct h2_stream *st = arg;
	struct evkeyvalq *headers = evhttp_request_get_input_headers(res);
	struct evkeyval *header;
	nghttp2_nv nv[H2_RESPONSE_HEADERS];
	char names[H2_RESPONSE_HEADERS][64];
	size_t count = 0;

	if (st->session == NULL || st->closed || st->answered)
		return 0;

	for (header = headers->tqh_first; header != NULL; header = header->next.tqe_next) {
		size_t len = strlen(header->key);

		if (count == H2_RESPONSE_HEADERS || len >= sizeof(names[0]) ||
		    h2_is_hop_header(header->key))
			continue;
		for (size_t i = 0; i <= len; i++)
			names[count][i] = (char)tolower((unsigned char)header->key[i]);
		nv[count] = (nghttp2_nv){(uint8_t *)names[count], (uint8_t *)header->value, len,
		                         strlen(header->value), NGHTTP2_NV_FLAG_NONE};
		count++;
	}
	h2_submit(st, evhttp_request_get_response_code(res), nv, count);
	h2_session_flush(st->session);
	return 0;
}

/* Passes each body chunk on as it arrives (Server-Sent Events). */
static void on_upstream_chunk(struct evhttp_request *res, void *arg)
{
	struct h2_stream *st = arg;

	if (st->session == NULL || st->closed)
		return;
	evbuffer_add_buffer(st->response_body, evhttp_request_get_input_buffer(res));
	h2_resume(st);
	h2_session_flush(st->session);
}

/* Completes a forwarded request. libevent frees res after this returns. */
static void on_upstream_done(struct evhttp_request *res, void *arg)
{
	struct h2_stream *st = arg;
	struct h2_session *s = st->session;

	st->forwarded = false;
	st->upstream_done = true;
	if (s == NULL)
		return; /* abandoned: on_abandoned frees the stream and the connection */

	if (res == NULL || evhttp_request_get_response_code(res) == 0) {
		log_warn("HTTP/2 stream %d from %s: the forwarded request to the internal "
		         "listener failed",
		         st->id, s->client);
		h2_free_upstream_later(s->ctx, st->upstream);
		st->upstream = NULL;
		if (!st->answered && !st->closed)
			h2_reply_error(st, 502, "internal_error",
			               "The HTTP/1.1 side did not respond; see the server log.");
	} else {
		h2_return_upstream(s, st->upstream);
		st->upstream = NULL;
		if (!st->answered && !st->closed)
			on_upstream_headers(res, st);
		evbuffer_add_buffer(st->response_body, evhttp_request_get_input_buffer(res));
	}

	if (st->closed) {
		h2_stream_free(st);
		return;
	}
	h2_resume(st);
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

/* Headers that the front sets itself; a client's copies are dropped. */
static bool h2_is_forwarding_header(const char *name)
{
	return strcasecmp(name, HTTP_H2_FORWARDED_FOR) == 0 ||
	       strcasecmp(name, HTTP_H2_FORWARD_TOKEN) == 0;
}

/* Creates the upstream request of a new stream; headers and body are added to it as
 * they arrive. */
static struct h2_stream *h2_stream_new(struct h2_session *s, int32_t id)
{
	struct h2_stream *st = calloc(1, sizeof(*st));

	if (st == NULL)
		abort();
	st->session = s;
	st->ctx = s->ctx;
	st->id = id;
	st->response_body = evbuffer_new();
	st->request = evhttp_request_new(on_upstream_done, st);
	if (st->response_body == NULL || st->request == NULL)
		abort();
	evhttp_request_set_header_cb(st->request, on_upstream_headers);
	evhttp_request_set_chunked_cb(st->request, on_upstream_chunk);
	st->next = s->streams;
	s->streams = st;
	nghttp2_session_set_stream_user_data(s->ng, id, st);
	return st;
}

/* Forwards a complete request to the internal HTTP/1.1 listener. */
static void h2_forward(struct h2_stream *st)
{
	struct h2_session *s = st->session;
	struct evhttp_request *req = st->request;
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
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
	if (st->upstream == NULL) {
		log_error("HTTP/2 stream %d from %s: creating the upstream connection failed",
		          st->id, s->client);
		h2_reply_error(st, 500, "internal_error",
		               "The server could not forward the request; see the server log.");
		return;
	}
	evhttp_add_header(headers, "Host", "127.0.0.1");
	evhttp_add_header(headers, HTTP_H2_FORWARDED_FOR, s->client);
	evhttp_add_header(headers, HTTP_H2_FORWARD_TOKEN, s->ctx->token);

	st->request = NULL; /* evhttp_make_request takes it over, even when it fails */
	st->forwarded = true;
	if (evhttp_make_request(st->upstream, req, command, st->path) != 0) {
		st->forwarded = false;
		log_error("HTTP/2 stream %d from %s: sending the forwarded request failed", st->id,
		          s->client);
		h2_reply_error(st, 500, "internal_error",
		               "The server could not forward the request; see the server log.");
	}
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
	(void)ng;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	h2_stream_new(user_data, frame->hd.stream_id);
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
	char name_text[128];
	char *value_text;

	(void)flags;
	(void)user_data;
	if (st == NULL || st->answered || st->request == NULL)
		return 0;

	st->header_bytes += namelen + valuelen;
	if (st->header_bytes > st->ctx->limits.max_header_bytes) {
		h2_reply_error(st, 431, "invalid_header",
		               "The request headers are larger than STEMEDB_MAX_HEADER_BYTES; "
		               "send fewer or shorter headers.");
		return 0;
	}
	if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
		h2_copy_value(st->method, sizeof(st->method), value, valuelen);
		return 0;
	}
	if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
		if (valuelen >= sizeof(st->path)) {
			h2_reply_error(st, 414, "invalid_parameter",
			               "The :path is too long; send a shorter URI.");
			return 0;
		}
		h2_copy_value(st->path, sizeof(st->path), value, valuelen);
		return 0;
	}
	if (namelen == 0 || name[0] == ':' || namelen >= sizeof(name_text))
		return 0;

	h2_copy_value(name_text, sizeof(name_text), name, namelen);
	if (h2_is_hop_header(name_text) || h2_is_forwarding_header(name_text))
		return 0;
	value_text = malloc(valuelen + 1);
	if (value_text == NULL)
		abort();
	h2_copy_value(value_text, valuelen + 1, value, valuelen);
	evhttp_add_header(evhttp_request_get_output_headers(st->request), name_text, value_text);
	free(value_text);
	return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user_data)
{
	struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, stream_id);
	struct evbuffer *body;

	(void)flags;
	(void)user_data;
	if (st == NULL || st->answered || st->request == NULL)
		return 0;

	body = evhttp_request_get_output_buffer(st->request);
	if (evbuffer_get_length(body) + len > st->ctx->limits.max_body_bytes) {
		h2_reply_error(st, 413, "payload_too_large",
		               "The request body is larger than STEMEDB_MAX_BATCH_BODY_BYTES; "
		               "split it into smaller requests.");
		return 0;
	}
	evbuffer_add(body, data, len);
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
	if (st != NULL && !st->answered && !st->forwarded && st->request != NULL)
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
		log_warn("HTTP/2 connection from %s closed: %s", s->client,
		         nghttp2_strerror((int)n));
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

/* Splits "Name: value" at line (which ends at end) and trims the value. Returns
 * false for a line without a colon. */
static bool h2_split_header(char *line, char *end, char **name, char **value)
{
	char *colon = memchr(line, ':', (size_t)(end - line));

	if (colon == NULL || colon == line)
		return false;
	*colon = '\0';
	*name = line;
	*value = colon + 1;
	while (**value == ' ' || **value == '\t')
		(*value)++;
	*end = '\0';
	while (end > *value && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	return true;
}

/* Returns true when the comma-separated list contains token, case-insensitively. */
static bool h2_list_has(const char *list, const char *token)
{
	size_t len = strlen(token);

	for (const char *at = list; *at != '\0';) {
		while (*at == ' ' || *at == '\t' || *at == ',')
			at++;
		if (strncasecmp(at, token, len) == 0 &&
		    (at[len] == '\0' || at[len] == ',' || at[len] == ' ' || at[len] == '\t'))
			return true;
		at = strchr(at, ',');
		if (at == NULL)
			break;
	}
	return false;
}

enum h2_upgrade_result { H2_UPGRADE_NEED_MORE, H2_UPGRADE_DONE, H2_UPGRADE_REJECTED };

/* Handles a GET or HEAD request with "Upgrade: h2c" and "HTTP2-Settings". The request
 * becomes stream 1 with every end-to-end header of the HTTP/1.1 head, and the bytes
 * after the head are HTTP/2. */
static enum h2_upgrade_result h2_try_upgrade(struct h2_session *s, struct evbuffer *input)
{
	char head[H2_UPGRADE_HEAD_MAX + 1], method[H2_METHOD_MAX], path[H2_PATH_MAX];
	char settings_text[256] = "";
	bool upgrade_h2c = false;
	uint8_t settings[192];
	struct evbuffer_ptr end = evbuffer_search(input, "\r\n\r\n", 4, NULL);
	size_t head_len, settings_len;
	struct h2_stream *st;
	struct evkeyvalq *headers;
	char *line, *line_end;

	if (end.pos < 0) {
		if (evbuffer_get_length(input) <= H2_UPGRADE_HEAD_MAX)
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

	if (sscanf(head, "%15s %8191s HTTP/1.1\r\n", method, path) != 2) {
		h2_reject_http1(s, "The request line is not 'METHOD /path HTTP/1.1'.\n");
		return H2_UPGRADE_REJECTED;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		h2_reject_http1(s, "Upgrade: h2c is accepted on GET and HEAD only; send other "
		                   "requests with the HTTP/2 preface.\n");
		return H2_UPGRADE_REJECTED;
	}

	st = h2_stream_new(s, 1);
	snprintf(st->method, sizeof(st->method), "%s", method);
	snprintf(st->path, sizeof(st->path), "%s", path);
	headers = evhttp_request_get_output_headers(st->request);
	line = strstr(head, "\r\n") + 2;
	while ((line_end = strstr(line, "\r\n")) != NULL && line_end != line) {
		char *next = line_end + 2;
		char *name, *value;

		if (h2_split_header(line, line_end, &name, &value)) {
			if (strcasecmp(name, "Upgrade") == 0)
				upgrade_h2c = h2_list_has(value, "h2c");
			else if (strcasecmp(name, "HTTP2-Settings") == 0)
				snprintf(settings_text, sizeof(settings_text), "%s", value);
			else if (!h2_is_hop_header(name) && !h2_is_forwarding_header(name))
				evhttp_add_header(headers, name, value);
		}
		line = next;
	}

	settings_len = sizeof(settings);
	if (!upgrade_h2c || settings_text[0] == '\0' ||
	    !h2_base64url_decode(settings_text, settings, &settings_len) ||
	    nghttp2_session_upgrade2(s->ng, settings, settings_len, strcmp(method, "HEAD") == 0,
	                             st) != 0) {
		h2_reject_http1(s, "An upgrade needs 'Upgrade: h2c' and an HTTP2-Settings header "
		                   "with a base64url SETTINGS payload.\n");
		return H2_UPGRADE_REJECTED;
	}

	evbuffer_add_printf(bufferevent_get_output(s->bev),
	                    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
	                    "Upgrade: h2c\r\n\r\n");
	s->started = true;
	h2_forward(st);
	return H2_UPGRADE_DONE;
}

/* Feeds the bytes in input to the session; complete frames are drained. */
static void h2_session_receive(struct h2_session *s, struct evbuffer *input)
{
	size_t len = evbuffer_get_length(input);
	ssize_t used;

	if (s->closing)
		return;
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
		log_info("HTTP/2 connection from %s closed: %s", s->client,
		         nghttp2_strerror((int)used));
		h2_session_free(s);
		return;
	}
	evbuffer_drain(input, (size_t)used);
	h2_session_flush(s);
}

static void on_client_read(struct bufferevent *bev, void *arg)
{
	h2_session_receive(arg, bufferevent_get_input(bev));
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
	struct h2_session *s = arg;

	/* A client waiting on a stream, such as a Server-Sent Events feed, sends nothing,
	 * so the idle timeout applies only to a connection without open streams. libevent
	 * disables reading when the timeout fires, so it is enabled again. */
	if ((events & BEV_EVENT_TIMEOUT) && s->streams != NULL) {
		bufferevent_enable(bev, EV_READ);
		return;
	}
	if (events & BEV_EVENT_TIMEOUT)
		log_info("HTTP/2 connection from %s closed after its idle timeout", s->client);
	h2_session_free(s);
}

static void h2_session_free(struct h2_session *s)
{
	while (s->streams != NULL)
		h2_stream_free(s->streams);
	for (size_t i = 0; i < s->idle_count; i++)
		h2_free_upstream_later(s->ctx, s->idle_upstreams[i]);
	if (s->holds_client_slot && s->ctx->release_client != NULL)
		s->ctx->release_client(s->ctx->release_arg, s->client);
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

bool http_h2_session_start(struct http_h2_context *ctx, evutil_socket_t fd,
                           struct evbuffer *already_read, const char *client,
                           bool holds_client_slot)
{
	struct h2_session *s = calloc(1, sizeof(*s));
	nghttp2_session_callbacks *cb = h2_callbacks();
	nghttp2_settings_entry settings[] = {
	        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, ctx->limits.max_streams},
	        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)ctx->limits.max_header_bytes}};
	struct timeval idle = {(time_t)(ctx->limits.idle_timeout_ms / 1000),
	                       (suseconds_t)(ctx->limits.idle_timeout_ms % 1000) * 1000};
	int one = 1;

	if (s == NULL)
		abort();
	/* Frames are written as soon as a response is ready, so Nagle's algorithm would
	 * hold small responses back until the client's delayed ACK (about 40 ms). */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evutil_make_socket_nonblocking(fd);
	s->ctx = ctx;
	snprintf(s->client, sizeof(s->client), "%s", client);
	s->holds_client_slot = holds_client_slot;
	s->bev = bufferevent_socket_new(ctx->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL || nghttp2_session_server_new(&s->ng, cb, s) != 0) {
		log_error("HTTP/2 connection from %s: creating the session failed", client);
		nghttp2_session_callbacks_del(cb);
		if (s->bev != NULL)
			bufferevent_free(s->bev);
		else
			evutil_closesocket(fd);
		if (holds_client_slot && ctx->release_client != NULL)
			ctx->release_client(ctx->release_arg, client);
		free(s);
		return false;
	}
	nghttp2_session_callbacks_del(cb);

	nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, settings,
	                        sizeof(settings) / sizeof(settings[0]));
	bufferevent_setcb(s->bev, on_client_read, on_client_write, on_client_event, s);
	bufferevent_set_timeouts(s->bev, &idle, NULL);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	/* The input buffer of a socket bufferevent takes data only from its socket, so
	 * the bytes read before the hand-over are fed to the session directly. They hold
	 * the whole preface or upgrade request, and nghttp2 consumes the rest. */
	if (already_read != NULL && evbuffer_get_length(already_read) > 0)
		h2_session_receive(s, already_read);
	return true;
}

struct http_h2_front {
	struct http_h2_context ctx;
	struct evconnlistener *listener;
	pthread_t thread;
};

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	struct http_h2_front *front = arg;
	char client[H2_CLIENT_MAX] = "unknown";

	(void)listener;
	getnameinfo(sa, (socklen_t)salen, client, sizeof(client), NULL, 0, NI_NUMERICHOST);
	http_h2_session_start(&front->ctx, fd, NULL, client, false);
}

static void *h2_front_main(void *arg)
{
	struct http_h2_front *front = arg;

	event_base_loop(front->ctx.base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static bool h2_bind(struct http_h2_front *front, const char *listen, char *err, size_t err_size)
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
	front->listener = evconnlistener_new_bind(front->ctx.base, on_accept, front,
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

struct http_h2_front *http_h2_front_start(const char *listen, uint16_t upstream_port,
                                          const char *token, const struct http_h2_limits *limits,
                                          char *err, size_t err_size)
{
	struct http_h2_front *front = calloc(1, sizeof(*front));

	if (front == NULL)
		abort();
	front->ctx.limits = *limits;
	front->ctx.upstream_port = upstream_port;
	snprintf(front->ctx.token, sizeof(front->ctx.token), "%s", token);

	front->ctx.base = event_base_new();
	if (front->ctx.base == NULL || !h2_bind(front, listen, err, err_size) ||
	    pthread_create(&front->thread, NULL, h2_front_main, front) != 0) {
		if (front->listener != NULL)
			evconnlistener_free(front->listener);
		if (front->ctx.base != NULL)
			event_base_free(front->ctx.base);
		free(front);
		return NULL;
	}
	log_info("HTTP/2 (h2c) listening on %s as well as on the API port", listen);
	return front;
}

void http_h2_front_stop(struct http_h2_front *front)
{
	event_base_loopexit(front->ctx.base, NULL);
	pthread_join(front->thread, NULL);
	evconnlistener_free(front->listener);
	/* NOTE: sessions still open at this point are not freed, because the process is
	 * exiting and their bufferevents belong to the base freed next. */
	event_base_free(front->ctx.base);
	free(front);
}
