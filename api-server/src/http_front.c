#include "http_front.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_util.h"
#include "stemedb/log.h"

#define FRONT_PREFACE     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define FRONT_PREFACE_LEN (sizeof(FRONT_PREFACE) - 1)
#define FRONT_CLIENT_MAX  64
#define CLIENT_BUCKETS    4096
#define CONN_BUCKETS      1024
/* Bytes moved to the socket bufferevent at a time; the rest waits in the filter. */
#define FRONT_WRITE_SLICE (64 * 1024)

/* Connections open per client address, shared by every worker. */
struct client_entry {
	char address[FRONT_CLIENT_MAX];
	uint64_t connections;
	struct client_entry *next;
};

struct http_front {
	SSL_CTX *tls;            /* NULL: cleartext, with HTTP/2 sniffing */
	uint64_t max_per_client; /* 0: no limit */
	uint64_t read_deadline_ms;
	uint64_t max_header_bytes;
	int null_fd; /* /dev/null, put in place of a handed-over socket */
	pthread_mutex_t clients_lock;
	struct client_entry *clients[CLIENT_BUCKETS];
	uint64_t rejections_logged;
};

enum conn_mode { CONN_SNIFF, CONN_PASS, CONN_HANDED_OVER, CONN_REJECTED };

/* One connection's filter state. It lives as long as the filtering bufferevent. */
struct front_conn {
	struct http_front_worker *fw;
	struct bufferevent *filter;
	struct bufferevent *underlying;
	enum conn_mode mode;
	bool admitted;   /* counted in the per-client table */
	bool in_request; /* bytes of a request arrived that evhttp has not dispatched */
	char client[FRONT_CLIENT_MAX];
	struct event *admit_event;
	struct event *deadline_event;
	struct event *close_event;
	struct event *write_event;   /* moves evhttp's output to the socket */
	struct event *written_event; /* runs evhttp's write callback once the socket has sent */
	bool write_pending;          /* output moved, evhttp's write callback not run yet */
	bool close_when_drained;     /* the front's own reply is being sent */
	size_t head_bytes;           /* bytes of the current request head so far */
	int head_match;              /* bytes of "\r\n\r\n" matched at the end */
	bool head_done;              /* the current request head is complete */
	short close_reason;          /* BEV_EVENT_* passed to evhttp by close_event */
	struct front_conn *next;
};

struct http_front_worker {
	struct http_front *front;
	struct event_base *base;
	struct http_h2_context h2;
	struct front_conn *conns[CONN_BUCKETS];
};

static size_t hash_text(const char *text, size_t buckets)
{
	uint64_t h = 1469598103934665603ull;

	for (const char *c = text; *c != '\0'; c++)
		h = (h ^ (unsigned char)*c) * 1099511628211ull;
	return (size_t)(h % buckets);
}

static size_t hash_pointer(const void *p)
{
	return (size_t)((((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull) >> 32) % CONN_BUCKETS;
}

/* Adds one connection for address; returns false, without counting it, when the
 * client has max connections open already. */
static bool clients_acquire(struct http_front *front, const char *address)
{
	size_t bucket = hash_text(address, CLIENT_BUCKETS);
	struct client_entry *e;
	bool admitted = true;

	pthread_mutex_lock(&front->clients_lock);
	for (e = front->clients[bucket]; e != NULL; e = e->next) {
		if (strcmp(e->address, address) == 0)
			break;
	}
	if (e == NULL) {
		e = calloc(1, sizeof(*e));
		if (e == NULL)
			abort();
		snprintf(e->address, sizeof(e->address), "%s", address);
		e->next = front->clients[bucket];
		front->clients[bucket] = e;
	}
	if (front->max_per_client != 0 && e->connections >= front->max_per_client)
		admitted = false;
	else
		e->connections++;
	pthread_mutex_unlock(&front->clients_lock);
	return admitted;
}

static void clients_release(struct http_front *front, const char *address)
{
	size_t bucket = hash_text(address, CLIENT_BUCKETS);
	struct client_entry **link;

	pthread_mutex_lock(&front->clients_lock);
	for (link = &front->clients[bucket]; *link != NULL; link = &(*link)->next) {
		struct client_entry *e = *link;

		if (strcmp(e->address, address) != 0)
			continue;
		if (--e->connections == 0) {
			*link = e->next;
			free(e);
		}
		break;
	}
	pthread_mutex_unlock(&front->clients_lock);
}

/* Releases the client slot of a session that the HTTP/2 side took over. */
static void release_h2_client(void *arg, const char *client)
{
	clients_release(arg, client);
}

static void conn_map_remove(struct front_conn *conn)
{
	struct front_conn **link = &conn->fw->conns[hash_pointer(conn->filter)];

	while (*link != NULL && *link != conn)
		link = &(*link)->next;
	if (*link == conn)
		*link = conn->next;
}

static struct front_conn *conn_map_find(struct http_front_worker *fw, struct bufferevent *filter)
{
	struct front_conn *conn = fw->conns[hash_pointer(filter)];

	while (conn != NULL && conn->filter != filter)
		conn = conn->next;
	return conn;
}

/* Makes evhttp close the connection by reporting reason (end of file or timeout) on
 * the filter, from the event loop rather than from inside the filter. */
static void conn_close_soon(struct front_conn *conn, short reason)
{
	const struct timeval now = {0, 0};

	conn->close_reason = reason;
	evtimer_add(conn->close_event, &now);
}

static void on_close_event(evutil_socket_t fd, short events, void *arg)
{
	struct front_conn *conn = arg;

	(void)fd;
	(void)events;
	bufferevent_trigger_event(conn->filter, conn->close_reason | BEV_EVENT_READING, 0);
}

static void conn_reject(struct front_conn *conn, evutil_socket_t fd)
{
	struct http_front *front = conn->fw->front;
	static const char body[] =
	        "{\"error\":{\"code\":\"connection_limit\",\"message\":\"This client has "
	        "STEMEDB_MAX_CONNECTIONS_PER_CLIENT connections open; reuse one of them.\"}}";
	char response[512];
	int len;

	conn->mode = CONN_REJECTED;
	http_count_rejection("connection_limit");
	/* Counted, so a connection flood logs a line per 1000 rejections. */
	if (__atomic_fetch_add(&front->rejections_logged, 1, __ATOMIC_RELAXED) % 1000 == 0)
		log_warn("closed a connection from %s: it has %llu connections open, the "
		         "STEMEDB_MAX_CONNECTIONS_PER_CLIENT limit",
		         conn->client, (unsigned long long)front->max_per_client);

	if (front->tls == NULL) {
		len = snprintf(response, sizeof(response),
		               "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json"
		               "\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
		               sizeof(body) - 1, body);
		/* Best effort: the socket is new, so its send buffer has room. */
		if (send(fd, response, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug("sending the connection limit reply to %s failed: %s",
			          conn->client, strerror(errno));
	}
	conn_close_soon(conn, BEV_EVENT_EOF);
}

/* Counts the connection against its client's limit once its socket is known. Returns
 * false when it was rejected. */
static bool conn_admit(struct front_conn *conn)
{
	struct sockaddr_storage peer;
	socklen_t peer_len = sizeof(peer);
	evutil_socket_t fd;

	if (conn->admitted || conn->mode == CONN_REJECTED)
		return conn->mode != CONN_REJECTED;
	fd = bufferevent_getfd(conn->filter);
	if (fd < 0)
		return true;
	if (getpeername(fd, (struct sockaddr *)&peer, &peer_len) != 0 ||
	    getnameinfo((struct sockaddr *)&peer, peer_len, conn->client, sizeof(conn->client),
	                NULL, 0, NI_NUMERICHOST) != 0)
		snprintf(conn->client, sizeof(conn->client), "unknown");

	if (!clients_acquire(conn->fw->front, conn->client)) {
		conn_reject(conn, fd);
		return false;
	}
	conn->admitted = true;
	return true;
}

static void on_admit_event(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	conn_admit(arg);
}

static void on_deadline(evutil_socket_t fd, short events, void *arg)
{
	struct front_conn *conn = arg;

	(void)fd;
	(void)events;
	http_count_rejection("read_timeout");
	log_info("closed a connection from %s: its request did not arrive within "
	         "STEMEDB_READ_TIMEOUT_MS (%llu ms)",
	         conn->client, (unsigned long long)conn->fw->front->read_deadline_ms);
	conn_close_soon(conn, BEV_EVENT_TIMEOUT);
}

static void conn_start_request(struct front_conn *conn)
{
	struct timeval deadline;
	uint64_t ms = conn->fw->front->read_deadline_ms;

	if (conn->in_request)
		return;
	conn->in_request = true;
	conn->head_bytes = 0;
	conn->head_match = 0;
	conn->head_done = false;
	deadline.tv_sec = (time_t)(ms / 1000);
	deadline.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(conn->deadline_event, &deadline);
}

void http_front_request_started(struct http_front_worker *fw, struct evhttp_connection *conn)
{
	struct front_conn *fc =
	        conn != NULL ? conn_map_find(fw, evhttp_connection_get_bufferevent(conn)) : NULL;

	if (fc == NULL)
		return;
	fc->in_request = false;
	evtimer_del(fc->deadline_event);
}

/* Returns true when the head (NUL-terminated) is a GET or HEAD request whose Upgrade
 * header lists h2c. */
static bool head_asks_h2c(const char *head)
{
	const char *line;

	if (strncmp(head, "GET ", 4) != 0 && strncmp(head, "HEAD ", 5) != 0)
		return false;
	for (line = strstr(head, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n")) {
		const char *value = line + 2;
		const char *end = strstr(value, "\r\n");

		if (end == NULL || end == value)
			return false;
		if (strncasecmp(value, "Upgrade:", 8) != 0)
			continue;
		for (value += 8; value < end; value++) {
			if (strncasecmp(value, "h2c", 3) == 0 &&
			    (value + 3 == end || value[3] == ',' || value[3] == ' ' ||
			     value[3] == '\t'))
				return true;
		}
	}
	return false;
}

/* Moves the socket to an HTTP/2 session. evhttp keeps the descriptor number it
 * accepted and calls shutdown() on it when it frees the connection, so the session
 * gets a duplicate and the number is pointed at /dev/null before evhttp receives
 * the end-of-file event that makes it close. The socket bufferevent is disabled first, which
 * removes the descriptor from epoll while it still names the socket. */
static void conn_hand_over(struct front_conn *conn, struct evbuffer *src)
{
	struct http_front *front = conn->fw->front;
	evutil_socket_t fd = bufferevent_getfd(conn->underlying);
	evutil_socket_t h2_fd;
	struct evbuffer *already_read = evbuffer_new();

	if (already_read == NULL)
		abort();
	bufferevent_disable(conn->underlying, EV_READ | EV_WRITE);
	h2_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (h2_fd < 0 || dup3(front->null_fd, fd, O_CLOEXEC) < 0) {
		log_error("handing a connection from %s to HTTP/2 failed: %s", conn->client,
		          strerror(errno));
		if (h2_fd >= 0)
			close(h2_fd);
		evbuffer_free(already_read);
		conn->mode = CONN_REJECTED;
		conn_close_soon(conn, BEV_EVENT_ERROR);
		return;
	}
	evbuffer_add_buffer(already_read, src);
	conn->mode = CONN_HANDED_OVER;
	evtimer_del(conn->deadline_event);
	conn_close_soon(conn, BEV_EVENT_EOF);

	/* From now on the session owns the client's connection slot. */
	http_h2_session_start(&conn->fw->h2, h2_fd, already_read, conn->client, conn->admitted);
	conn->admitted = false;
	evbuffer_free(already_read);
}

/* Decides what the first bytes of a cleartext connection are. */
static enum bufferevent_filter_result conn_sniff(struct front_conn *conn, struct evbuffer *src)
{
	struct http_front *front = conn->fw->front;
	size_t len = evbuffer_get_length(src);
	size_t n = len < FRONT_PREFACE_LEN ? len : FRONT_PREFACE_LEN;
	unsigned char first[FRONT_PREFACE_LEN];
	struct evbuffer_ptr end;
	char *head;
	bool upgrade;

	evbuffer_copyout(src, first, n);
	if (memcmp(first, FRONT_PREFACE, n) == 0) {
		if (n < FRONT_PREFACE_LEN)
			return BEV_NEED_MORE;
		conn_hand_over(conn, src);
		return BEV_OK;
	}

	end = evbuffer_search(src, "\r\n\r\n", 4, NULL);
	if (end.pos < 0) {
		if (len <= front->max_header_bytes)
			return BEV_NEED_MORE;
		conn->mode = CONN_PASS; /* conn_scan_head rejects the oversized head */
		return BEV_OK;
	}
	head = malloc((size_t)end.pos + 5);
	if (head == NULL)
		abort();
	evbuffer_copyout(src, head, (size_t)end.pos + 4);
	head[end.pos + 4] = '\0';
	upgrade = head_asks_h2c(head);
	free(head);
	if (upgrade) {
		conn_hand_over(conn, src);
		return BEV_OK;
	}
	conn->mode = CONN_PASS;
	return BEV_OK;
}

/* Follows the request head through src. Returns false when it grows past
 * STEMEDB_MAX_HEADER_BYTES without ending. */
static bool conn_scan_head(struct front_conn *conn, struct evbuffer *src)
{
	static const char end[] = "\r\n\r\n";
	struct evbuffer_iovec chunks[16];
	int count = evbuffer_peek(src, -1, NULL, chunks, 16);

	for (int i = 0; i < count && i < 16 && !conn->head_done; i++) {
		const char *bytes = chunks[i].iov_base;

		for (size_t j = 0; j < chunks[i].iov_len; j++) {
			if (++conn->head_bytes > conn->fw->front->max_header_bytes)
				return false;
			if (bytes[j] == end[conn->head_match])
				conn->head_match++;
			else
				conn->head_match = bytes[j] == '\r' ? 1 : 0;
			if (conn->head_match == 4) {
				conn->head_done = true;
				break;
			}
		}
	}
	return true;
}

/* Replies 431 on the socket bufferevent and closes once it is sent. evhttp itself
 * would reply to an oversized head with a plain 400. */
static void conn_reject_head(struct front_conn *conn)
{
	static const char body[] =
	        "{\"error\":{\"code\":\"invalid_header\",\"message\":\"The request line and "
	        "headers are larger than STEMEDB_MAX_HEADER_BYTES; send fewer or shorter "
	        "headers.\"}}";

	conn->mode = CONN_REJECTED;
	evtimer_del(conn->deadline_event);
	http_count_rejection("invalid_header");
	log_info("rejected a request head from %s: larger than STEMEDB_MAX_HEADER_BYTES (%llu)",
	         conn->client, (unsigned long long)conn->fw->front->max_header_bytes);
	evbuffer_add_printf(
	        bufferevent_get_output(conn->underlying),
	        "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: "
	        "application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
	        sizeof(body) - 1, body);
	conn->close_when_drained = true;
}

static enum bufferevent_filter_result conn_input(struct evbuffer *src, struct evbuffer *dst,
                                                 ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                 void *arg)
{
	struct front_conn *conn = arg;
	enum bufferevent_filter_result result;

	(void)limit;
	(void)mode;
	if (evbuffer_get_length(src) == 0)
		return BEV_OK;
	if (conn->mode == CONN_SNIFF && !conn_admit(conn))
		conn->mode = CONN_REJECTED;
	if (conn->mode == CONN_REJECTED || conn->mode == CONN_HANDED_OVER) {
		evbuffer_drain(src, evbuffer_get_length(src));
		return BEV_OK;
	}

	conn_start_request(conn);
	if (conn->mode == CONN_SNIFF) {
		if (conn->fw->front->tls != NULL) {
			conn->mode = CONN_PASS;
		} else {
			result = conn_sniff(conn, src);
			if (conn->mode != CONN_PASS)
				return result;
		}
	}
	if (!conn->head_done && !conn_scan_head(conn, src)) {
		conn_reject_head(conn);
		evbuffer_drain(src, evbuffer_get_length(src));
		return BEV_OK;
	}
	evbuffer_add_buffer(dst, src);
	return BEV_OK;
}

/* libevent 2.1.12's filter moves output to the socket bufferevent only while the
 * filter has EV_WRITE enabled, and enabling it later does not move what is waiting.
 * evhttp adds a response to the output before it enables EV_WRITE, so the filter
 * watches its output buffer and moves the data from the event loop right after
 * evhttp has enabled writing. */
static void on_output_added(struct evbuffer *buffer, const struct evbuffer_cb_info *info, void *arg)
{
	struct front_conn *conn = arg;

	(void)buffer;
	if (info->n_added > 0)
		event_active(conn->write_event, EV_TIMEOUT, 0);
}

static void on_write_event(evutil_socket_t fd, short events, void *arg)
{
	struct front_conn *conn = arg;

	(void)fd;
	(void)events;
	bufferevent_flush(conn->filter, EV_WRITE, BEV_NORMAL);
}

/* Moves evhttp's output to the socket bufferevent in slices, each once the socket has
 * sent the previous one. Unsent output then stays visible to evhttp and to the feed's
 * slow-client check. A plain filter would report the write complete as soon as the
 * bytes moved, and evhttp closes a "Connection: close" connection at that point,
 * losing what the socket had not sent yet. So the move reports BEV_NEED_MORE, and
 * on_written_event signals evhttp once both buffers are empty. */
static enum bufferevent_filter_result conn_output(struct evbuffer *src, struct evbuffer *dst,
                                                  ev_ssize_t limit,
                                                  enum bufferevent_flush_mode mode, void *arg)
{
	struct front_conn *conn = arg;

	(void)limit;
	(void)mode;
	if (evbuffer_get_length(src) == 0)
		return BEV_OK;
	if (evbuffer_get_length(dst) == 0)
		evbuffer_remove_buffer(src, dst, FRONT_WRITE_SLICE);
	conn->write_pending = true;
	return BEV_NEED_MORE;
}

static void on_underlying_drained(struct evbuffer *buffer, const struct evbuffer_cb_info *info,
                                  void *arg)
{
	struct front_conn *conn = arg;

	if (info->n_deleted == 0 || evbuffer_get_length(buffer) > 0)
		return;
	if (conn->write_pending) {
		conn->write_pending = false;
		event_active(conn->written_event, EV_TIMEOUT, 0);
	}
	if (conn->close_when_drained) {
		conn->close_when_drained = false;
		conn_close_soon(conn, BEV_EVENT_EOF);
	}
}

static void on_written_event(evutil_socket_t fd, short events, void *arg)
{
	struct front_conn *conn = arg;

	(void)fd;
	(void)events;
	if (evbuffer_get_length(bufferevent_get_output(conn->underlying)) > 0)
		return; /* the next drain schedules this again */
	if (evbuffer_get_length(bufferevent_get_output(conn->filter)) > 0) {
		conn->write_pending = true;
		bufferevent_flush(conn->filter, EV_WRITE, BEV_NORMAL);
		return;
	}
	bufferevent_trigger(conn->filter, EV_WRITE, 0);
}

static void conn_free(void *arg)
{
	struct front_conn *conn = arg;

	conn_map_remove(conn);
	if (conn->admitted)
		clients_release(conn->fw->front, conn->client);
	event_free(conn->admit_event);
	event_free(conn->deadline_event);
	event_free(conn->close_event);
	event_free(conn->write_event);
	event_free(conn->written_event);
	free(conn);
}

static struct bufferevent *front_new_bufferevent(struct event_base *base, void *arg)
{
	struct http_front_worker *fw = arg;
	struct front_conn *conn = calloc(1, sizeof(*conn));
	const struct timeval now = {0, 0};
	size_t bucket;

	if (conn == NULL)
		abort();
	conn->fw = fw;
	snprintf(conn->client, sizeof(conn->client), "unknown");
	if (fw->front->tls != NULL) {
		SSL *ssl = SSL_new(fw->front->tls);

		conn->underlying = ssl != NULL ? bufferevent_openssl_socket_new(
		                                         base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
		                                         BEV_OPT_CLOSE_ON_FREE)
		                               : NULL;
	} else {
		conn->underlying = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	conn->admit_event = evtimer_new(base, on_admit_event, conn);
	conn->deadline_event = evtimer_new(base, on_deadline, conn);
	conn->close_event = evtimer_new(base, on_close_event, conn);
	conn->write_event = event_new(base, -1, 0, on_write_event, conn);
	conn->written_event = event_new(base, -1, 0, on_written_event, conn);
	if (conn->underlying == NULL || conn->admit_event == NULL || conn->deadline_event == NULL ||
	    conn->close_event == NULL || conn->write_event == NULL || conn->written_event == NULL)
		abort();
	conn->filter = bufferevent_filter_new(conn->underlying, conn_input, conn_output,
	                                      BEV_OPT_CLOSE_ON_FREE, conn_free, conn);
	if (conn->filter == NULL ||
	    evbuffer_add_cb(bufferevent_get_output(conn->filter), on_output_added, conn) == NULL ||
	    evbuffer_add_cb(bufferevent_get_output(conn->underlying), on_underlying_drained,
	                    conn) == NULL)
		abort();

	bucket = hash_pointer(conn->filter);
	conn->next = fw->conns[bucket];
	fw->conns[bucket] = conn;
	/* evhttp sets the descriptor right after this returns; the admission check
	 * runs on the next loop iteration, or earlier when the first bytes arrive. */
	evtimer_add(conn->admit_event, &now);
	return conn->filter;
}

static int select_http1(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                        const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char http11[] = "\x08http/1.1";

	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto((unsigned char **)out, outlen, http11, sizeof(http11) - 1, in,
	                          inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	return SSL_TLSEXT_ERR_OK;
}

static void tls_error(char *err, size_t err_size, const char *what, const char *path,
                      const char *fix)
{
	char reason[256];

	ERR_error_string_n(ERR_get_error(), reason, sizeof(reason));
	snprintf(err, err_size, "%s '%s' failed: %s; %s", what, path, reason, fix);
	ERR_clear_error();
}

static SSL_CTX *tls_load(const struct api_config *cfg, char *err, size_t err_size)
{
	SSL_CTX *tls;

	if (cfg->tls_cert_file[0] == '\0' || cfg->tls_key_file[0] == '\0') {
		snprintf(err, err_size,
		         "STEMEDB_TLS_CERT_FILE and STEMEDB_TLS_KEY_FILE must be set together; "
		         "set both or neither");
		return NULL;
	}
	tls = SSL_CTX_new(TLS_server_method());
	if (tls == NULL || SSL_CTX_set_min_proto_version(tls, TLS1_3_VERSION) != 1) {
		snprintf(err, err_size, "creating the TLS 1.3 context failed");
		SSL_CTX_free(tls);
		return NULL;
	}
	if (SSL_CTX_use_certificate_chain_file(tls, cfg->tls_cert_file) != 1) {
		tls_error(err, err_size, "loading STEMEDB_TLS_CERT_FILE", cfg->tls_cert_file,
		          "give a readable PEM certificate chain");
		SSL_CTX_free(tls);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(tls, cfg->tls_key_file, SSL_FILETYPE_PEM) != 1) {
		tls_error(err, err_size, "loading STEMEDB_TLS_KEY_FILE", cfg->tls_key_file,
		          "give a readable, unencrypted PEM file with the private key of the "
		          "certificate in STEMEDB_TLS_CERT_FILE");
		SSL_CTX_free(tls);
		return NULL;
	}
	if (SSL_CTX_check_private_key(tls) != 1) {
		tls_error(err, err_size, "checking STEMEDB_TLS_KEY_FILE", cfg->tls_key_file,
		          "give the private key of the certificate in STEMEDB_TLS_CERT_FILE");
		SSL_CTX_free(tls);
		return NULL;
	}
	SSL_CTX_set_alpn_select_cb(tls, select_http1, NULL);
	return tls;
}

struct http_front *http_front_new(const struct api_config *cfg, char *err, size_t err_size)
{
	struct http_front *front = calloc(1, sizeof(*front));

	if (front == NULL)
		abort();
	front->max_per_client = cfg->max_connections_per_client;
	front->read_deadline_ms = cfg->read_timeout_ms;
	front->max_header_bytes = cfg->max_header_bytes;
	pthread_mutex_init(&front->clients_lock, NULL);
	front->null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (front->null_fd < 0) {
		snprintf(err, err_size, "opening /dev/null failed: %s", strerror(errno));
		http_front_free(front);
		return NULL;
	}
	if (cfg->tls_cert_file[0] != '\0' || cfg->tls_key_file[0] != '\0') {
		front->tls = tls_load(cfg, err, err_size);
		if (front->tls == NULL) {
			http_front_free(front);
			return NULL;
		}
		log_info("TLS 1.3 enabled on the API port with certificate %s", cfg->tls_cert_file);
	}
	return front;
}

void http_front_free(struct http_front *front)
{
	for (size_t i = 0; i < CLIENT_BUCKETS; i++) {
		while (front->clients[i] != NULL) {
			struct client_entry *e = front->clients[i];

			front->clients[i] = e->next;
			free(e);
		}
	}
	if (front->tls != NULL)
		SSL_CTX_free(front->tls);
	if (front->null_fd >= 0)
		close(front->null_fd);
	pthread_mutex_destroy(&front->clients_lock);
	free(front);
}

bool http_front_tls(const struct http_front *front)
{
	return front->tls != NULL;
}

struct http_front_worker *http_front_worker_new(struct http_front *front, struct event_base *base,
                                                struct evhttp *http,
                                                const struct http_h2_limits *limits,
                                                uint16_t internal_port, const char *token)
{
	struct http_front_worker *fw = calloc(1, sizeof(*fw));

	if (fw == NULL)
		abort();
	fw->front = front;
	fw->base = base;
	fw->h2.base = base;
	fw->h2.upstream_port = internal_port;
	fw->h2.limits = *limits;
	fw->h2.release_client = release_h2_client;
	fw->h2.release_arg = front;
	snprintf(fw->h2.token, sizeof(fw->h2.token), "%s", token);
	evhttp_set_bevcb(http, front_new_bufferevent, fw);
	return fw;
}

void http_front_worker_free(struct http_front_worker *fw)
{
	free(fw);
}
