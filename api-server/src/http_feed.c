/* The assertion feed. Pages come from the ingest-order index of the views column family
 * ('f', HLC wall ms, HLC logical, hash), scanned backwards. Streams are registered in a
 * process-wide list that the commit writer thread fills through http_feed_publish. Each
 * stream drains its queue on the worker thread that owns its connection. */

#include "http_feed.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "http_handlers.h"
#include "http_util.h"
#include "stemedb/hex.h"
#include "stemedb/json_codec.h"
#include "stemedb/log.h"
#include "store.h"

#define FEED_LIMIT_DEFAULT 50
#define FEED_LIMIT_MAX     1000
/* Index keys one page may read while skipping assertions outside subject_prefix. */
#define FEED_SCAN_MAX  10000
#define FEED_KEY_LEN   (1 + 8 + 4 + STEMEDB_HASH_LEN)
#define FEED_QUEUE_MAX 1024
/* A stream whose unsent output exceeds this is too slow to keep up and is closed. */
#define FEED_OUTPUT_MAX       (4u * 1024u * 1024u)
#define FEED_KEEPALIVE_S      15
#define FEED_STREAM_TIMEOUT_S 86400

struct feed_item {
	uint8_t hash[STEMEDB_HASH_LEN];
	struct hlc_stamp hlc;
};

struct feed_stream {
	struct feed_stream *next; /* registry link */
	struct evhttp_request *req;
	struct store *store;
	struct event *wake;
	struct event *keepalive;
	char *prefix;
	size_t prefix_len;
	/* Guarded by registry_lock. */
	struct feed_item queue[FEED_QUEUE_MAX];
	size_t queued;
	bool overflow;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct feed_stream *registry;

static const char *const feed_param_names[] = {"limit", "cursor", "subject_prefix", NULL};

/* ---- shared ---- */

static bool subject_matches(const struct assertion *a, const char *prefix, size_t prefix_len)
{
	return a->subject_len >= prefix_len && memcmp(a->subject, prefix, prefix_len) == 0;
}

static void feed_key_hex(const struct feed_item *item, char out[2 * FEED_KEY_LEN + 1])
{
	struct buf key;

	buf_init(&key);
	store_feed_key(&key, item->hlc.wall_ms, item->hlc.logical, item->hash);
	hex_encode(key.data, key.len, out);
	buf_free(&key);
}

/* The assertion JSON of GET /v1/assertions/{hash} plus its ingest position: "cursor",
 * the feed key that a page or a Last-Event-ID can resume from. */
static json_t *feed_entry(const struct assertion *a, const struct feed_item *item)
{
	char cursor[2 * FEED_KEY_LEN + 1];
	json_t *entry = assertion_to_json(a, item->hash);

	feed_key_hex(item, cursor);
	json_object_set_new(entry, "hlc",
	                    json_pack("{s:I, s:I}", "wall_ms", (json_int_t)item->hlc.wall_ms,
	                              "logical", (json_int_t)item->hlc.logical));
	json_object_set_new(entry, "cursor", json_string(cursor));
	return entry;
}

/* ---- pages ---- */

struct feed_page {
	struct store *store;
	const char *prefix;
	size_t prefix_len;
	uint64_t limit;
	size_t scanned;
	json_t *entries;
	uint8_t last[FEED_KEY_LEN];
	bool more;
	bool failed;
};

static bool on_feed_key(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                        size_t value_len)
{
	struct feed_page *page = ctx;
	struct feed_item item;
	struct hlc_stamp hlc;
	struct assertion a;
	enum store_result rc;

	(void)value;
	(void)value_len;
	if (key_len != FEED_KEY_LEN)
		return true;
	if (json_array_size(page->entries) == page->limit || page->scanned == FEED_SCAN_MAX) {
		page->more = true;
		return false;
	}
	page->scanned++;
	memcpy(page->last, key, FEED_KEY_LEN);

	memset(&item, 0, sizeof(item));
	memcpy(item.hash, key + 1 + 8 + 4, STEMEDB_HASH_LEN);
	assertion_init(&a);
	rc = store_get_assertion(page->store, item.hash, &a, &hlc);
	if (rc == STORE_ERROR)
		page->failed = true;
	if (rc == STORE_OK && subject_matches(&a, page->prefix, page->prefix_len)) {
		item.hlc = hlc;
		json_array_append_new(page->entries, feed_entry(&a, &item));
	}
	assertion_free(&a);
	return !page->failed;
}

static bool parse_feed_params(struct http_call *call, const struct http_query *q,
                              struct feed_page *page, uint8_t cursor[FEED_KEY_LEN],
                              struct store_scan *scan)
{
	const struct http_param *p;

	if ((p = http_query_get(q, "limit")) != NULL &&
	    !http_parse_u64(p->value, 1, FEED_LIMIT_MAX, &page->limit)) {
		http_reply_error(
		        call, 400, "invalid_parameter", "limit",
		        "Query parameter limit='%.100s' is invalid; give an integer from 1 "
		        "to %d.",
		        p->value, FEED_LIMIT_MAX);
		return false;
	}
	if ((p = http_query_get(q, "subject_prefix")) != NULL) {
		if (p->value_len == 0 || p->value_len > STEMEDB_SUBJECT_MAX) {
			http_reply_error(
			        call, 400, "invalid_parameter", "subject_prefix",
			        "Query parameter 'subject_prefix' has %zu bytes; give 1 to "
			        "%d bytes.",
			        p->value_len, STEMEDB_SUBJECT_MAX);
			return false;
		}
		page->prefix = p->value;
		page->prefix_len = p->value_len;
	}
	if ((p = http_query_get(q, "cursor")) != NULL) {
		if (!hex_decode(p->value, p->value_len, cursor, FEED_KEY_LEN) ||
		    cursor[0] != STORE_VIEW_FEED) {
			http_reply_error(
			        call, 400, "invalid_parameter", "cursor",
			        "Query parameter cursor='%.100s' is not a feed cursor; pass "
			        "next_cursor or an entry's cursor unchanged.",
			        p->value);
			return false;
		}
		scan->after = cursor;
		scan->after_len = FEED_KEY_LEN;
	}
	return true;
}

static void handle_feed_page(struct http_call *call)
{
	static const uint8_t prefix = STORE_VIEW_FEED;
	struct feed_page page = {.store = call->state->store,
	                         .limit = FEED_LIMIT_DEFAULT,
	                         .prefix = "",
	                         .entries = json_array()};
	struct store_scan scan = {
	        .family = STORE_INDEX_VIEWS, .prefix = &prefix, .prefix_len = 1, .reverse = true};
	char next[2 * FEED_KEY_LEN + 1];
	uint8_t cursor[FEED_KEY_LEN];
	struct http_query q;

	if (!http_query_parse(call, feed_param_names, &q) ||
	    !parse_feed_params(call, &q, &page, cursor, &scan))
		goto done;

	if (store_index_scan(call->state->store, &scan, on_feed_key, &page) != STORE_OK ||
	    page.failed) {
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Reading the feed failed; see the server log.");
		goto done;
	}
	if (page.more)
		hex_encode(page.last, FEED_KEY_LEN, next);
	http_reply_json(call, 200,
	                json_pack("{s:O, s:s?}", "assertions", page.entries, "next_cursor",
	                          page.more ? next : NULL));
done:
	json_decref(page.entries);
	http_query_free(&q);
}

/* ---- streams ---- */

static void stream_remove(struct feed_stream *s)
{
	pthread_mutex_lock(&registry_lock);
	for (struct feed_stream **p = &registry; *p != NULL; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);

	event_free(s->wake);
	event_free(s->keepalive);
	free(s->prefix);
	free(s);
}

/* Ends the stream from the server side: the last chunk names the reason, then the reply ends. */
static void stream_close(struct feed_stream *s, const char *reason)
{
	struct evbuffer *chunk = evbuffer_new();

	log_warn("closing a feed stream: %s", reason);
	evbuffer_add_printf(chunk, ": closed: %s\n\n", reason);
	evhttp_send_reply_chunk(s->req, chunk);
	evbuffer_free(chunk);
	evhttp_send_reply_end(s->req);
	stream_remove(s);
}

/* When the client closes, evhttp frees the connection but keeps a request whose reply
 * has not ended, without a connection. Ending the reply then frees the request. */
static bool stream_gone(struct feed_stream *s)
{
	if (evhttp_request_get_connection(s->req) != NULL)
		return false;
	evhttp_send_reply_end(s->req);
	stream_remove(s);
	return true;
}

static size_t stream_backlog(const struct feed_stream *s)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(s->req);
	struct bufferevent *bev = conn != NULL ? evhttp_connection_get_bufferevent(conn) : NULL;

	return bev != NULL ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void stream_send(struct feed_stream *s, const struct feed_item *item)
{
	struct hlc_stamp hlc;
	struct assertion a;
	struct evbuffer *chunk;
	json_t *entry;
	char *text;

	assertion_init(&a);
	if (store_get_assertion(s->store, item->hash, &a, &hlc) != STORE_OK ||
	    !subject_matches(&a, s->prefix, s->prefix_len)) {
		assertion_free(&a);
		return;
	}
	entry = feed_entry(&a, item);
	text = json_dumps(entry, JSON_COMPACT);
	chunk = evbuffer_new();
	evbuffer_add_printf(chunk, "id: %s\nevent: assertion\ndata: %s\n\n",
	                    json_string_value(json_object_get(entry, "cursor")), text);
	evhttp_send_reply_chunk(s->req, chunk);
	evbuffer_free(chunk);
	free(text);
	json_decref(entry);
	assertion_free(&a);
}

static void on_stream_wake(evutil_socket_t fd, short events, void *arg)
{
	struct feed_stream *s = arg;
	struct feed_item *items = malloc(sizeof(s->queue));
	size_t count;
	bool overflow;

	(void)fd;
	(void)events;
	if (items == NULL)
		abort();
	if (stream_gone(s)) {
		free(items);
		return;
	}
	pthread_mutex_lock(&registry_lock);
	count = s->queued;
	overflow = s->overflow;
	memcpy(items, s->queue, count * sizeof(*items));
	s->queued = 0;
	pthread_mutex_unlock(&registry_lock);

	if (overflow) {
		stream_close(s, "the client fell more than 1024 assertions behind");
	} else {
		for (size_t i = 0; i < count; i++)
			stream_send(s, &items[i]);
		if (stream_backlog(s) > FEED_OUTPUT_MAX)
			stream_close(s, "the client did not read 4 MiB of pending events");
	}
	free(items);
}

static void on_stream_keepalive(evutil_socket_t fd, short events, void *arg)
{
	struct feed_stream *s = arg;
	struct evbuffer *chunk;

	(void)fd;
	(void)events;
	if (stream_gone(s))
		return;
	chunk = evbuffer_new();
	evbuffer_add(chunk, ": keep-alive\n\n", 14);
	evhttp_send_reply_chunk(s->req, chunk);
	evbuffer_free(chunk);
}

void http_feed_publish(const struct commit_ingested *items, size_t count)
{
	pthread_mutex_lock(&registry_lock);
	for (struct feed_stream *s = registry; s != NULL; s = s->next) {
		for (size_t i = 0; i < count && !s->overflow; i++) {
			if (s->queued == FEED_QUEUE_MAX) {
				s->overflow = true;
				break;
			}
			memcpy(s->queue[s->queued].hash, items[i].hash, STEMEDB_HASH_LEN);
			s->queue[s->queued].hlc = items[i].hlc;
			s->queued++;
		}
		if (count > 0)
			event_active(s->wake, EV_READ, 0);
	}
	pthread_mutex_unlock(&registry_lock);
}

/* Starts the event stream and hands the request over from the call, which is finished
 * at once so that an open stream does not count as a request in flight. */
static void handle_feed_stream(struct http_call *call)
{
	static const char *const names[] = {"subject_prefix", NULL};
	struct evhttp_connection *conn = evhttp_request_get_connection(call->req);
	struct event_base *base = evhttp_connection_get_base(conn);
	struct timeval keepalive = {FEED_KEEPALIVE_S, 0};
	struct timeval stream_timeout = {FEED_STREAM_TIMEOUT_S, 0};
	struct evkeyvalq *headers = evhttp_request_get_output_headers(call->req);
	const struct http_param *p;
	struct feed_stream *s;
	struct http_query q;

	if (!http_query_parse(call, names, &q))
		goto done;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		abort();
	p = http_query_get(&q, "subject_prefix");
	s->prefix = strdup(p != NULL ? p->value : "");
	if (s->prefix == NULL)
		abort();
	s->prefix_len = strlen(s->prefix);
	s->req = call->req;
	s->store = call->state->store;
	s->wake = event_new(base, -1, 0, on_stream_wake, s);
	s->keepalive = event_new(base, -1, EV_PERSIST, on_stream_keepalive, s);
	event_add(s->keepalive, &keepalive);

	/* The stream writes a comment at least every 15 s, so the idle timeout of the
	 * connection only has to catch a peer that vanished without closing. */
	evhttp_connection_set_timeout_tv(conn, &stream_timeout);
	evhttp_add_header(headers, "Content-Type", "text/event-stream");
	evhttp_add_header(headers, "Cache-Control", "no-store");
	evhttp_send_reply_start(call->req, 200, "OK");
	on_stream_keepalive(-1, 0, s);

	pthread_mutex_lock(&registry_lock);
	s->next = registry;
	registry = s;
	pthread_mutex_unlock(&registry_lock);
	http_call_finish(call, 200);
done:
	http_query_free(&q);
}

void http_handle_feed(struct http_call *call)
{
	const char *accept =
	        evhttp_find_header(evhttp_request_get_input_headers(call->req), "Accept");

	if (http_require_ready(call) == NULL)
		return;
	if (accept != NULL && strstr(accept, "text/event-stream") != NULL)
		handle_feed_stream(call);
	else
		handle_feed_page(call);
}
