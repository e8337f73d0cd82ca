/* Token buckets per client and endpoint class, in a sharded, bounded hash table. */
#include "rate_limit.h"

#include <event2/http.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http_util.h"
#include "stemedb/hex.h"
#include "stemedb/log.h"

/* A power of two. With many more shards than the usual worker count, two workers
 * rarely need the same shard at once (an estimate, not measured). */
#define RATE_LIMIT_SHARDS 64
/* Maximum length of a client identity: an IPv6 address text, or a key id, each after
 * a kind byte. */
#define RATE_LIMIT_CLIENT_MAX 64

struct client_entry {
	uint8_t client[RATE_LIMIT_CLIENT_MAX];
	uint8_t client_len;
	uint64_t hash;
	double tokens[HTTP_ROUTE_CLASS_COUNT];
	uint64_t last_ns[HTTP_ROUTE_CLASS_COUNT];
	uint64_t seen_ns;
	struct client_entry *next;
};

struct shard {
	pthread_mutex_t lock;
	struct client_entry **buckets; /* chains; bucket_count is a power of two */
	size_t bucket_count;
	size_t count;
	size_t limit;
};

struct rate_limiter {
	struct rate_limit_settings settings;
	struct shard shards[RATE_LIMIT_SHARDS];
};

bool rate_limit_take(const struct rate_limit_class *c, double *tokens, uint64_t *last_ns,
                     uint64_t now_ns, uint64_t *retry_after_s)
{
	double elapsed_s = now_ns > *last_ns ? (double)(now_ns - *last_ns) / 1e9 : 0.0;
	double wait_s;

	*tokens = fmin(c->burst, *tokens + elapsed_s * c->rate);
	*last_ns = now_ns;
	if (*tokens >= 1.0) {
		*tokens -= 1.0;
		return true;
	}
	wait_s = ceil((1.0 - *tokens) / c->rate);
	*retry_after_s = wait_s < 1.0 ? 1 : (uint64_t)wait_s;
	return false;
}

/* FNV-1a, 64-bit. */
static uint64_t client_hash(const uint8_t *data, size_t len)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < len; i++) {
		h ^= data[i];
		h *= 1099511628211ull;
	}
	return h;
}

struct rate_limiter *rate_limiter_new(const struct rate_limit_settings *settings)
{
	struct rate_limiter *limiter = calloc(1, sizeof(*limiter));
	size_t per_shard;

	if (limiter == NULL)
		abort();
	limiter->settings = *settings;
	per_shard = (size_t)((settings->max_clients + RATE_LIMIT_SHARDS - 1) / RATE_LIMIT_SHARDS);
	for (size_t i = 0; i < RATE_LIMIT_SHARDS; i++) {
		struct shard *s = &limiter->shards[i];

		pthread_mutex_init(&s->lock, NULL);
		s->limit = per_shard > 0 ? per_shard : 1;
		s->bucket_count = 16;
		s->buckets = calloc(s->bucket_count, sizeof(*s->buckets));
		if (s->buckets == NULL)
			abort();
	}
	return limiter;
}

void rate_limiter_free(struct rate_limiter *limiter)
{
	if (limiter == NULL)
		return;
	for (size_t i = 0; i < RATE_LIMIT_SHARDS; i++) {
		struct shard *s = &limiter->shards[i];

		for (size_t b = 0; b < s->bucket_count; b++) {
			struct client_entry *e = s->buckets[b];

			while (e != NULL) {
				struct client_entry *next = e->next;

				free(e);
				e = next;
			}
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
	}
	free(limiter);
}

/* True when every bucket of e would be full at now, so dropping e loses nothing: a new
 * entry starts full. */
static bool entry_idle(const struct rate_limiter *limiter, const struct client_entry *e,
                       uint64_t now_ns)
{
	for (int c = HTTP_ROUTE_CLASS_WRITE; c < HTTP_ROUTE_CLASS_COUNT; c++) {
		const struct rate_limit_class *cls = &limiter->settings.classes[c];
		double elapsed_s =
		        now_ns > e->last_ns[c] ? (double)(now_ns - e->last_ns[c]) / 1e9 : 0.0;

		if (e->tokens[c] + elapsed_s * cls->rate < cls->burst)
			return false;
	}
	return true;
}

/* Removes idle entries. When none is idle, removes the least recently seen one, which
 * drops that client's spent tokens. Caller holds the shard lock. */
static void shard_evict(struct rate_limiter *limiter, struct shard *s, uint64_t now_ns)
{
	struct client_entry **oldest = NULL;
	size_t removed = 0;

	for (size_t b = 0; b < s->bucket_count; b++) {
		struct client_entry **link = &s->buckets[b];

		while (*link != NULL) {
			struct client_entry *e = *link;

			if (entry_idle(limiter, e, now_ns)) {
				*link = e->next;
				free(e);
				s->count--;
				removed++;
				continue;
			}
			if (oldest == NULL || e->seen_ns < (*oldest)->seen_ns)
				oldest = link;
			link = &e->next;
		}
	}
	if (removed == 0 && oldest != NULL) {
		struct client_entry *e = *oldest;

		*oldest = e->next;
		free(e);
		s->count--;
	}
}

static void shard_grow(struct shard *s)
{
	size_t count = s->bucket_count * 2;
	struct client_entry **buckets = calloc(count, sizeof(*buckets));

	if (buckets == NULL)
		abort();
	for (size_t b = 0; b < s->bucket_count; b++) {
		struct client_entry *e = s->buckets[b];

		while (e != NULL) {
			struct client_entry *next = e->next;
			size_t slot = (size_t)(e->hash >> 8) & (count - 1);

			e->next = buckets[slot];
			buckets[slot] = e;
			e = next;
		}
	}
	free(s->buckets);
	s->buckets = buckets;
	s->bucket_count = count;
}

static struct client_entry *shard_lookup(struct rate_limiter *limiter, struct shard *s,
                                         const uint8_t *client, size_t len, uint64_t hash,
                                         uint64_t now_ns)
{
	size_t slot = (size_t)(hash >> 8) & (s->bucket_count - 1);
	struct client_entry *e;

	for (e = s->buckets[slot]; e != NULL; e = e->next) {
		if (e->hash == hash && e->client_len == len && memcmp(e->client, client, len) == 0)
			return e;
	}

	if (s->count >= s->limit)
		shard_evict(limiter, s, now_ns);
	if (s->count + 1 > s->bucket_count)
		shard_grow(s);
	slot = (size_t)(hash >> 8) & (s->bucket_count - 1);

	e = calloc(1, sizeof(*e));
	if (e == NULL)
		abort();
	memcpy(e->client, client, len);
	e->client_len = (uint8_t)len;
	e->hash = hash;
	for (int c = 0; c < HTTP_ROUTE_CLASS_COUNT; c++) {
		e->tokens[c] = limiter->settings.classes[c].burst;
		e->last_ns[c] = now_ns;
	}
	e->next = s->buckets[slot];
	s->buckets[slot] = e;
	s->count++;
	return e;
}

bool rate_limiter_allow(struct rate_limiter *limiter, const void *client, size_t len,
                        enum http_route_class cls, uint64_t now_ns, uint64_t *retry_after_s)
{
	uint64_t hash;
	struct shard *s;
	struct client_entry *e;
	bool allowed;

	if (len > RATE_LIMIT_CLIENT_MAX)
		len = RATE_LIMIT_CLIENT_MAX;
	hash = client_hash(client, len);
	s = &limiter->shards[hash & (RATE_LIMIT_SHARDS - 1)];

	pthread_mutex_lock(&s->lock);
	e = shard_lookup(limiter, s, client, len, hash, now_ns);
	e->seen_ns = now_ns;
	allowed = rate_limit_take(&limiter->settings.classes[cls], &e->tokens[cls],
	                          &e->last_ns[cls], now_ns, retry_after_s);
	pthread_mutex_unlock(&s->lock);
	return allowed;
}

size_t rate_limiter_clients(struct rate_limiter *limiter)
{
	size_t total = 0;

	for (size_t i = 0; i < RATE_LIMIT_SHARDS; i++) {
		pthread_mutex_lock(&limiter->shards[i].lock);
		total += limiter->shards[i].count;
		pthread_mutex_unlock(&limiter->shards[i].lock);
	}
	return total;
}

/* ---- the process-wide limiter ---- */

static struct rate_limiter *limiter;

void rate_limit_start(const struct rate_limit_settings *settings)
{
	if (!settings->enabled) {
		log_info("rate limits off (STEMEDB_RATE_LIMIT_ENABLED=false)");
		return;
	}
	limiter = rate_limiter_new(settings);
	log_info("rate limits on: write %.1f/s burst %.0f, read %.1f/s burst %.0f, other %.1f/s "
	         "burst %.0f, at most %llu clients",
	         settings->classes[HTTP_ROUTE_CLASS_WRITE].rate,
	         settings->classes[HTTP_ROUTE_CLASS_WRITE].burst,
	         settings->classes[HTTP_ROUTE_CLASS_READ].rate,
	         settings->classes[HTTP_ROUTE_CLASS_READ].burst,
	         settings->classes[HTTP_ROUTE_CLASS_OTHER].rate,
	         settings->classes[HTTP_ROUTE_CLASS_OTHER].burst,
	         (unsigned long long)settings->max_clients);
}

void rate_limit_stop(void)
{
	rate_limiter_free(limiter);
	limiter = NULL;
}

static const char *const class_names[HTTP_ROUTE_CLASS_COUNT] = {"exempt", "write", "read", "other"};

/* Writes the client identity: 'k' and the key id for a keyed request, else 'i' and
 * the client address text (for an HTTP/2 stream, the address of the HTTP/2 client,
 * which the front passes on). Returns its length. */
static size_t client_identity(struct http_call *call, uint8_t out[RATE_LIMIT_CLIENT_MAX])
{
	size_t len;

	if (call->key_known) {
		out[0] = 'k';
		memcpy(out + 1, call->key_id, sizeof(call->key_id));
		return 1 + sizeof(call->key_id);
	}
	out[0] = 'i';
	len = strnlen(call->client, sizeof(call->client));
	if (len > RATE_LIMIT_CLIENT_MAX - 1)
		len = RATE_LIMIT_CLIENT_MAX - 1;
	memcpy(out + 1, call->client, len);
	return 1 + len;
}

bool rate_limit_check(struct http_call *call)
{
	uint8_t client[RATE_LIMIT_CLIENT_MAX];
	uint64_t retry_after_s = 1;
	char retry_text[24];
	size_t len;

	if (limiter == NULL || call->route_class == HTTP_ROUTE_CLASS_EXEMPT)
		return true;
	len = client_identity(call, client);
	if (rate_limiter_allow(limiter, client, len, call->route_class, http_now_ns(),
	                       &retry_after_s))
		return true;

	snprintf(retry_text, sizeof(retry_text), "%llu", (unsigned long long)retry_after_s);
	evhttp_add_header(evhttp_request_get_output_headers(call->req), "Retry-After", retry_text);
	http_reply_error(call, 429, "rate_limited", NULL,
	                 "This client sent more %s requests than its limit of %.1f per second "
	                 "(burst %.0f); retry after %llu s.",
	                 class_names[call->route_class],
	                 limiter->settings.classes[call->route_class].rate,
	                 limiter->settings.classes[call->route_class].burst,
	                 (unsigned long long)retry_after_s);
	return false;
}
