/* Query audit log. Keys of the "audit" column family (values in brackets):
 *
 *   'r' id (16 B)                                  [record, binary or JSON text]
 *   't' time ms u64 BE, id (16 B)                  [agent id (32 B) or empty]
 *   'a' agent id (32 B), time ms u64 BE, id (16 B) [empty]
 *
 * The time index value names the agent so that expiry can delete the agent key
 * without reading the record. A record is written in binary (docs/storage.md gives the
 * layout), which is less than half the size of its JSON form and costs no text formatting
 * per query. The audit endpoints turn it into JSON when it is read. Stores written
 * before the binary format hold JSON text, which starts with '{' and is read as is. */

#include "audit.h"

#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stemedb/buf.h"
#include "stemedb/hex.h"
#include "stemedb/log.h"
#include "store.h"

#define AUDIT_FLUSH_INTERVAL_MS 100
#define AUDIT_QUEUE_MAX         10000
#define AUDIT_EXPIRE_BATCH      1000
#define AUDIT_KEY_RECORD        'r'
#define AUDIT_KEY_TIME          't'
#define AUDIT_KEY_AGENT         'a'

/* First byte of a binary record value; JSON records start with '{'. */
#define AUDIT_FORMAT_BINARY 0x01
#define AUDIT_FLAG_AGENT    0x01
#define AUDIT_FLAG_WINNER   0x02

/* A completed record waiting for the writer thread. */
struct queued_entry {
	struct queued_entry *next;
	uint8_t id[AUDIT_ID_LEN];
	uint64_t time_ms;
	bool has_agent;
	uint8_t agent[STEMEDB_AGENT_ID_LEN];
	struct buf record; /* the encoded record, taken over from the entry */
};

struct audit_log {
	struct store *store;
	uint64_t retention_ms;
	uint64_t expire_interval_ms;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
	struct queued_entry *head;
	struct queued_entry *tail;
	size_t queued;
	uint64_t dropped;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- entries ---- */

/* Room reserved for a record at the start: the fixed fields, the parameters and about
 * 20 contributors, so that a typical record never grows its buffer. */
#define AUDIT_RECORD_RESERVE 1024
#define AUDIT_ID_TIME_LEN    6

/* Record ids: the time in Unix ms as a 48-bit big-endian prefix, then 10 bytes from a
 * per-thread ChaCha20 (IETF) stream under a random key drawn once per thread, with a
 * counter as the nonce. The prefix makes the ids of one batch neighbours in key order,
 * so RocksDB's memtable inserts them next to each other. The 80 random bits keep ids
 * unguessable and cost no getrandom system call per query. */
static _Thread_local struct {
	bool seeded;
	uint64_t counter;
	uint8_t key[crypto_stream_chacha20_ietf_KEYBYTES];
} id_source;

static void draw_id(uint8_t id[AUDIT_ID_LEN], uint64_t time_ms)
{
	uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {0};
	uint8_t time_be[8];

	if (!id_source.seeded) {
		randombytes_buf(id_source.key, sizeof(id_source.key));
		id_source.seeded = true;
	}
	store_u64be(time_be, time_ms);
	memcpy(id, time_be + 2, AUDIT_ID_TIME_LEN);
	store_u64le(nonce, id_source.counter++);
	crypto_stream_chacha20_ietf(id + AUDIT_ID_TIME_LEN, AUDIT_ID_LEN - AUDIT_ID_TIME_LEN, nonce,
	                            id_source.key);
}

static void require_stage(const struct audit_entry *e, enum audit_entry_stage stage,
                          const char *function)
{
	if (e->stage != stage) {
		log_error("%s called at audit entry stage %d, expected %d", function, (int)e->stage,
		          (int)stage);
		abort();
	}
}

static void store_u16le(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

void audit_entry_init(struct audit_entry *e, const char *endpoint,
                      const uint8_t agent[STEMEDB_AGENT_ID_LEN])
{
	size_t endpoint_len = strlen(endpoint);

	memset(e, 0, sizeof(*e));
	e->time_ms = now_ms();
	draw_id(e->id, e->time_ms);
	hex_encode(e->id, sizeof(e->id), e->id_hex);
	e->has_agent = agent != NULL;
	if (agent != NULL)
		memcpy(e->agent, agent, STEMEDB_AGENT_ID_LEN);
	if (endpoint_len > UINT8_MAX)
		abort();

	buf_init(&e->record);
	buf_reserve(&e->record, AUDIT_RECORD_RESERVE);
	buf_put_u8(&e->record, AUDIT_FORMAT_BINARY);
	buf_put_u64le(&e->record, e->time_ms);
	buf_put_u8(&e->record, (uint8_t)endpoint_len);
	buf_append(&e->record, endpoint, endpoint_len);
	e->flags_at = e->record.len;
	buf_put_u8(&e->record, e->has_agent ? AUDIT_FLAG_AGENT : 0);
	if (e->has_agent)
		buf_append(&e->record, e->agent, STEMEDB_AGENT_ID_LEN);
	e->parameter_count_at = e->record.len;
	buf_put_u16le(&e->record, 0);
	e->stage = AUDIT_ENTRY_PARAMETERS;
}

void audit_entry_add_parameter(struct audit_entry *e, const char *name, const char *value,
                               size_t value_len)
{
	size_t name_len = strlen(name);

	require_stage(e, AUDIT_ENTRY_PARAMETERS, __func__);
	if (name_len > UINT16_MAX || value_len > UINT32_MAX || e->parameter_count == UINT16_MAX)
		abort();
	buf_put_u16le(&e->record, (uint16_t)name_len);
	buf_append(&e->record, name, name_len);
	buf_put_u32le(&e->record, (uint32_t)value_len);
	buf_append(&e->record, value, value_len);
	e->parameter_count++;
}

void audit_entry_set_winner(struct audit_entry *e, const uint8_t winner[STEMEDB_HASH_LEN])
{
	require_stage(e, AUDIT_ENTRY_PARAMETERS, __func__);
	store_u16le(e->record.data + e->parameter_count_at, (uint16_t)e->parameter_count);
	if (winner != NULL) {
		e->record.data[e->flags_at] |= AUDIT_FLAG_WINNER;
		buf_append(&e->record, winner, STEMEDB_HASH_LEN);
	}
	/* Both counts are known only at submission: audit_log_submit fills them in. */
	e->counts_at = e->record.len;
	buf_put_u32le(&e->record, 0);
	buf_put_u8(&e->record, 0);
	e->stage = AUDIT_ENTRY_CONTRIBUTORS;
}

void audit_entry_add(struct audit_entry *e, const uint8_t hash[STEMEDB_HASH_LEN], double weight)
{
	uint64_t bits;

	require_stage(e, AUDIT_ENTRY_CONTRIBUTORS, __func__);
	e->contributor_count++;
	if (e->contributor_count > AUDIT_CONTRIBUTORS_MAX)
		return;
	if (!isfinite(weight))
		weight = 0.0;
	memcpy(&bits, &weight, sizeof(bits));
	buf_append(&e->record, hash, STEMEDB_HASH_LEN);
	buf_put_u64le(&e->record, bits);
}

void audit_entry_free(struct audit_entry *e)
{
	buf_free(&e->record);
	e->stage = AUDIT_ENTRY_EMPTY;
}

/* Fills in the contributor counts. */
static void finish_entry(struct audit_entry *e)
{
	size_t stored = e->contributor_count < AUDIT_CONTRIBUTORS_MAX ? e->contributor_count
	                                                              : AUDIT_CONTRIBUTORS_MAX;

	require_stage(e, AUDIT_ENTRY_CONTRIBUTORS, __func__);
	store_u32le(e->record.data + e->counts_at, e->contributor_count > UINT32_MAX
	                                                   ? UINT32_MAX
	                                                   : (uint32_t)e->contributor_count);
	e->record.data[e->counts_at + 4] = (uint8_t)stored;
}

static json_t *hex_or_null(const uint8_t *bytes, size_t len)
{
	char hex[2 * STEMEDB_HASH_LEN + 1];

	if (bytes == NULL)
		return json_null();
	hex_encode(bytes, len, hex);
	return json_string(hex);
}

/* Decodes a binary record (AUDIT_FORMAT_BINARY) into the JSON object that the audit
 * endpoints return. Returns NULL when the bytes are not a valid record. */
static json_t *binary_record_json(const uint8_t id[AUDIT_ID_LEN], const uint8_t *data, size_t len)
{
	char hex[2 * STEMEDB_HASH_LEN + 1];
	const uint8_t *bytes;
	json_t *parameters = json_object();
	json_t *contributors = json_array();
	json_t *record = NULL;
	struct reader rd;
	uint8_t flags, stored;
	uint64_t time_ms;
	uint32_t count;
	size_t endpoint_len;
	const uint8_t *endpoint, *agent = NULL, *winner = NULL;

	reader_init(&rd, data, len);
	if (reader_u8(&rd) != AUDIT_FORMAT_BINARY)
		goto done;
	time_ms = reader_u64le(&rd);
	endpoint_len = reader_u8(&rd);
	endpoint = reader_bytes(&rd, endpoint_len);
	flags = reader_u8(&rd);
	if ((flags & AUDIT_FLAG_AGENT) != 0)
		agent = reader_bytes(&rd, STEMEDB_AGENT_ID_LEN);
	for (uint16_t i = 0, n = reader_u16le(&rd); rd.ok && i < n; i++) {
		size_t name_len = reader_u16le(&rd);
		const uint8_t *name = reader_bytes(&rd, name_len);
		size_t value_len = reader_u32le(&rd);

		bytes = reader_bytes(&rd, value_len);
		if (name == NULL || bytes == NULL)
			goto done;
		char *key = strndup((const char *)name, name_len);

		if (key == NULL)
			abort();
		json_object_set_new(parameters, key, json_stringn((const char *)bytes, value_len));
		free(key);
	}
	if ((flags & AUDIT_FLAG_WINNER) != 0)
		winner = reader_bytes(&rd, STEMEDB_HASH_LEN);
	count = reader_u32le(&rd);
	stored = reader_u8(&rd);
	for (uint8_t i = 0; rd.ok && i < stored; i++) {
		uint64_t bits;
		double weight;

		bytes = reader_bytes(&rd, STEMEDB_HASH_LEN);
		bits = reader_u64le(&rd);
		if (bytes == NULL)
			goto done;
		memcpy(&weight, &bits, sizeof(weight));
		hex_encode(bytes, STEMEDB_HASH_LEN, hex);
		json_array_append_new(contributors,
		                      json_pack("{s:s, s:f}", "hash", hex, "weight", weight));
	}
	if (!rd.ok || rd.left != 0 || endpoint == NULL)
		goto done;

	record = json_object();
	hex_encode(id, AUDIT_ID_LEN, hex);
	json_object_set_new(record, "query_id", json_string(hex));
	json_object_set_new(record, "time_ms", json_integer((json_int_t)time_ms));
	json_object_set_new(record, "endpoint", json_stringn((const char *)endpoint, endpoint_len));
	json_object_set_new(record, "agent_id", hex_or_null(agent, STEMEDB_AGENT_ID_LEN));
	json_object_set(record, "parameters", parameters);
	json_object_set_new(record, "winner", hex_or_null(winner, STEMEDB_HASH_LEN));
	json_object_set_new(record, "contributor_count", json_integer((json_int_t)count));
	json_object_set(record, "contributors", contributors);

done:
	json_decref(parameters);
	json_decref(contributors);
	return record;
}

void audit_log_submit(struct audit_log *log, struct audit_entry *e)
{
	struct queued_entry *q;

	if (log == NULL)
		goto done;
	finish_entry(e);
	q = malloc(sizeof(*q));
	if (q == NULL)
		abort();
	q->next = NULL;
	memcpy(q->id, e->id, AUDIT_ID_LEN);
	q->time_ms = e->time_ms;
	q->has_agent = e->has_agent;
	memcpy(q->agent, e->agent, STEMEDB_AGENT_ID_LEN);
	q->record = e->record;
	buf_init(&e->record);

	pthread_mutex_lock(&log->lock);
	if (log->queued >= AUDIT_QUEUE_MAX || log->stopping) {
		/* Dropping keeps queries fast when the disk falls behind; the writer logs
		 * the count once per batch. */
		log->dropped++;
		pthread_mutex_unlock(&log->lock);
		buf_free(&q->record);
		free(q);
		goto done;
	}
	if (log->tail != NULL)
		log->tail->next = q;
	else
		log->head = q;
	log->tail = q;
	log->queued++;
	pthread_mutex_unlock(&log->lock);
done:
	audit_entry_free(e);
}

/* ---- keys ---- */

static void time_key(struct buf *key, uint64_t time_ms, const uint8_t id[AUDIT_ID_LEN])
{
	buf_put_u8(key, AUDIT_KEY_TIME);
	buf_put_u64be(key, time_ms);
	buf_append(key, id, AUDIT_ID_LEN);
}

static void agent_key(struct buf *key, const uint8_t agent[STEMEDB_AGENT_ID_LEN], uint64_t time_ms,
                      const uint8_t id[AUDIT_ID_LEN])
{
	buf_put_u8(key, AUDIT_KEY_AGENT);
	buf_append(key, agent, STEMEDB_AGENT_ID_LEN);
	buf_put_u64be(key, time_ms);
	buf_append(key, id, AUDIT_ID_LEN);
}

static void record_key(struct buf *key, const uint8_t id[AUDIT_ID_LEN])
{
	buf_put_u8(key, AUDIT_KEY_RECORD);
	buf_append(key, id, AUDIT_ID_LEN);
}

static uint64_t load_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* ---- writer thread ---- */

/* Adds the keys of a queue to batch, one kind of key after the other, so that each run
 * of inserts lands in one region of the memtable. key is scratch space. */
static size_t batch_put_entries(struct store_batch *batch, const struct queued_entry *head,
                                struct buf *key)
{
	size_t count = 0;

	for (const struct queued_entry *q = head; q != NULL; q = q->next, count++) {
		buf_reset(key);
		record_key(key, q->id);
		store_batch_put_audit(batch, key->data, key->len, q->record.data, q->record.len);
	}
	for (const struct queued_entry *q = head; q != NULL; q = q->next) {
		buf_reset(key);
		time_key(key, q->time_ms, q->id);
		store_batch_put_audit(batch, key->data, key->len, q->agent,
		                      q->has_agent ? STEMEDB_AGENT_ID_LEN : 0);
	}
	for (const struct queued_entry *q = head; q != NULL; q = q->next) {
		if (!q->has_agent)
			continue;
		buf_reset(key);
		agent_key(key, q->agent, q->time_ms, q->id);
		store_batch_put_audit(batch, key->data, key->len, NULL, 0);
	}
	return count;
}

/* Stores a detached queue in one RocksDB write; the records are freed whether or not
 * the write succeeds. batch and key are the writer thread's, reused for every flush. */
static void write_entries(struct audit_log *log, struct store_batch *batch, struct buf *key,
                          struct queued_entry *head, uint64_t dropped)
{
	size_t count;

	store_batch_clear(batch);
	count = batch_put_entries(batch, head, key);
	if (count > 0 && store_audit_write(log->store, batch) != STORE_OK)
		log_error("storing %zu audit records failed; they are lost", count);
	if (dropped > 0)
		log_warn("dropped %llu audit records because the queue of %d was full",
		         (unsigned long long)dropped, AUDIT_QUEUE_MAX);

	while (head != NULL) {
		struct queued_entry *next = head->next;

		buf_free(&head->record);
		free(head);
		head = next;
	}
}

static void wait_interval(struct audit_log *log)
{
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_nsec += AUDIT_FLUSH_INTERVAL_MS * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&log->wake, &log->lock, &deadline);
}

static void *audit_main(void *arg)
{
	struct audit_log *log = arg;
	struct store_batch *batch = store_batch_new();
	uint64_t next_expiry = 0;
	bool stopping = false;
	struct buf key;

	buf_init(&key);

	while (!stopping) {
		struct queued_entry *head;
		uint64_t dropped;

		pthread_mutex_lock(&log->lock);
		if (!log->stopping)
			wait_interval(log);
		stopping = log->stopping;
		head = log->head;
		dropped = log->dropped;
		log->head = log->tail = NULL;
		log->queued = 0;
		log->dropped = 0;
		pthread_mutex_unlock(&log->lock);

		write_entries(log, batch, &key, head, dropped);
		if (now_ms() >= next_expiry) {
			size_t expired = audit_log_expire(log, now_ms());

			if (expired > 0)
				log_info("deleted %zu audit records older than the retention",
				         expired);
			next_expiry = now_ms() + log->expire_interval_ms;
		}
	}
	store_batch_free(batch);
	buf_free(&key);
	return NULL;
}

struct audit_log *audit_log_start(struct store *store, uint64_t retention_seconds, char *err,
                                  size_t err_size)
{
	struct audit_log *log;
	int rc;

	if (retention_seconds == 0)
		return NULL;
	log = calloc(1, sizeof(*log));
	if (log == NULL)
		abort();
	log->store = store;
	log->retention_ms = retention_seconds * 1000u;
	/* A tenth of the retention, between 1 s and 1 h: records outlive the retention by
	 * at most that much. */
	log->expire_interval_ms = log->retention_ms / 10;
	if (log->expire_interval_ms < 1000)
		log->expire_interval_ms = 1000;
	if (log->expire_interval_ms > 3600000)
		log->expire_interval_ms = 3600000;
	pthread_mutex_init(&log->lock, NULL);
	pthread_cond_init(&log->wake, NULL);

	rc = pthread_create(&log->thread, NULL, audit_main, log);
	if (rc != 0) {
		snprintf(err, err_size, "pthread_create for the audit writer failed: %s",
		         strerror(rc));
		pthread_mutex_destroy(&log->lock);
		pthread_cond_destroy(&log->wake);
		free(log);
		return NULL;
	}
	return log;
}

void audit_log_stop(struct audit_log *log)
{
	if (log == NULL)
		return;
	pthread_mutex_lock(&log->lock);
	log->stopping = true;
	pthread_cond_signal(&log->wake);
	pthread_mutex_unlock(&log->lock);
	pthread_join(log->thread, NULL);
	pthread_mutex_destroy(&log->lock);
	pthread_cond_destroy(&log->wake);
	free(log);
}

bool audit_log_enabled(const struct audit_log *log)
{
	return log != NULL;
}

/* ---- reads ---- */

struct record_lookup {
	const uint8_t *id;
	json_t *record;
};

/* Decodes the stored record in either format: JSON text, which stores written before
 * the binary format hold, or AUDIT_FORMAT_BINARY. */
static bool copy_value(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                       size_t value_len)
{
	struct record_lookup *lookup = ctx;
	char id_hex[AUDIT_ID_HEX_LEN + 1];

	(void)key;
	(void)key_len;
	if (value_len > 0 && value[0] == '{')
		lookup->record = json_loadb((const char *)value, value_len, 0, NULL);
	else
		lookup->record = binary_record_json(lookup->id, value, value_len);
	if (lookup->record == NULL) {
		hex_encode(lookup->id, AUDIT_ID_LEN, id_hex);
		log_error("audit record %s is not a valid record (%zu bytes); skipping it", id_hex,
		          value_len);
	}
	return false;
}

enum audit_result audit_log_get(struct audit_log *log, const uint8_t id[AUDIT_ID_LEN], json_t **out)
{
	struct buf key;
	struct store_scan scan = {.family = STORE_INDEX_AUDIT};
	struct record_lookup lookup = {.id = id};
	enum store_result rc;

	*out = NULL;
	if (log == NULL)
		return AUDIT_NOT_FOUND;
	buf_init(&key);
	record_key(&key, id);
	scan.prefix = key.data;
	scan.prefix_len = key.len;
	rc = store_index_scan(log->store, &scan, copy_value, &lookup);
	*out = lookup.record;
	buf_free(&key);
	if (rc != STORE_OK)
		return AUDIT_ERROR;
	return *out != NULL ? AUDIT_OK : AUDIT_NOT_FOUND;
}

struct list_state {
	struct audit_log *log;
	const struct audit_filter *filter;
	size_t prefix_len; /* bytes before the time in an index key */
	json_t *records;
	struct buf last;
	bool more;
	bool failed;
};

static bool on_index_key(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                         size_t value_len)
{
	struct list_state *ls = ctx;
	const uint8_t *id = key + ls->prefix_len + 8;
	json_t *record = NULL;
	enum audit_result rc;

	(void)value;
	(void)value_len;
	if (key_len != ls->prefix_len + 8 + AUDIT_ID_LEN)
		return true;
	if (load_be64(key + ls->prefix_len) < ls->filter->from_ms)
		return false;
	if (json_array_size(ls->records) == ls->filter->limit) {
		ls->more = true;
		return false;
	}

	rc = audit_log_get(ls->log, id, &record);
	if (rc == AUDIT_ERROR) {
		ls->failed = true;
		return false;
	}
	if (rc == AUDIT_OK)
		json_array_append_new(ls->records, record);
	buf_reset(&ls->last);
	buf_append(&ls->last, key, key_len);
	return true;
}

enum audit_result audit_log_list(struct audit_log *log, const struct audit_filter *filter,
                                 json_t *records, char **next)
{
	struct list_state ls = {.log = log, .filter = filter, .records = records};
	struct store_scan scan = {.family = STORE_INDEX_AUDIT, .reverse = true};
	struct buf prefix, start;
	enum store_result rc;

	*next = NULL;
	if (log == NULL)
		return AUDIT_OK;
	buf_init(&prefix);
	buf_init(&start);
	buf_init(&ls.last);
	buf_put_u8(&prefix, filter->has_agent ? AUDIT_KEY_AGENT : AUDIT_KEY_TIME);
	if (filter->has_agent)
		buf_append(&prefix, filter->agent, STEMEDB_AGENT_ID_LEN);
	ls.prefix_len = prefix.len;

	scan.prefix = prefix.data;
	scan.prefix_len = prefix.len;
	if (filter->cursor != NULL) {
		scan.after = filter->cursor;
		scan.after_len = filter->cursor_len;
	} else if (filter->to_ms < UINT64_MAX) {
		/* The bare prefix and time sort before every key of that time, so the scan
		 * starts at the newest record of time to_ms or earlier. */
		buf_append(&start, prefix.data, prefix.len);
		buf_put_u64be(&start, filter->to_ms + 1);
		scan.after = start.data;
		scan.after_len = start.len;
	}

	rc = store_index_scan(log->store, &scan, on_index_key, &ls);
	if (ls.more) {
		*next = malloc(2 * ls.last.len + 1);
		if (*next == NULL)
			abort();
		hex_encode(ls.last.data, ls.last.len, *next);
	}
	buf_free(&prefix);
	buf_free(&start);
	buf_free(&ls.last);
	return rc != STORE_OK || ls.failed ? AUDIT_ERROR : AUDIT_OK;
}

/* ---- expiry ---- */

struct expire_state {
	struct store_batch *batch;
	uint64_t cutoff_ms;
	size_t count;
};

static bool on_expired_key(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                           size_t value_len)
{
	struct expire_state *es = ctx;
	const uint8_t *id = key + 1 + 8;
	uint64_t time_ms;
	struct buf other;

	if (key_len != 1 + 8 + AUDIT_ID_LEN)
		return true;
	time_ms = load_be64(key + 1);
	if (time_ms >= es->cutoff_ms || es->count == AUDIT_EXPIRE_BATCH)
		return false;

	buf_init(&other);
	store_batch_delete_audit(es->batch, key, key_len);
	record_key(&other, id);
	store_batch_delete_audit(es->batch, other.data, other.len);
	if (value_len == STEMEDB_AGENT_ID_LEN) {
		buf_reset(&other);
		agent_key(&other, value, time_ms, id);
		store_batch_delete_audit(es->batch, other.data, other.len);
	}
	buf_free(&other);
	es->count++;
	return true;
}

size_t audit_log_expire(struct audit_log *log, uint64_t now)
{
	uint8_t prefix = AUDIT_KEY_TIME;
	struct store_scan scan = {.family = STORE_INDEX_AUDIT, .prefix = &prefix, .prefix_len = 1};
	struct expire_state es = {.batch = store_batch_new()};
	size_t total = 0;

	if (log == NULL || now < log->retention_ms)
		goto done;
	es.cutoff_ms = now - log->retention_ms;
	do {
		es.count = 0;
		store_batch_clear(es.batch);
		if (store_index_scan(log->store, &scan, on_expired_key, &es) != STORE_OK ||
		    (es.count > 0 && store_audit_write(log->store, es.batch) != STORE_OK))
			break;
		total += es.count;
	} while (es.count == AUDIT_EXPIRE_BATCH);
done:
	store_batch_free(es.batch);
	return total;
}
