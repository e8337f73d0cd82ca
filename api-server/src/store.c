/*
 * RocksDB storage. Column families (docs/storage.md gives every byte):
 *
 *   default     key "wal_cursor" (10 ASCII bytes) -> u64 LE global WAL offset just past
 *               the last applied record
 *   assertions  key hash (32 B) -> assertion envelope (assertion_encode_envelope)
 *   sp_index    key subject, 0x00, predicate, 0x00, timestamp u64 BE, hash (32 B)
 *               -> candidate value (encode_candidate below)
 *   views       secondary indexes of the read-side views, empty values; the key's
 *               first byte names the index (STORE_VIEW_* in store.h)
 *   audit       query audit records and their indexes, written by the audit thread
 *   records     signed records other than assertions: type byte || id -> record envelope,
 *               plus the supersession and alias index keys (store.h lists them)
 *   votes       assertion hash || voter || timestamp u64 BE || vote id -> weight i32 LE
 *
 * Subjects and predicates never contain NUL, so the two separators make the prefix of a
 * (subject, predicate) unambiguous, and keys inside it sort by timestamp, then hash.
 *
 * Writes go through a WriteBatch with the RocksDB WAL disabled, because the StemeDB WAL
 * already contains every record and the cursor in the same batch says where replay starts.
 * atomic_flush keeps the column families of one flush consistent with each other.
 */

#include "store.h"

#include <inttypes.h>
#include <rocksdb/c.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stemedb/buf.h"
#include "stemedb/log.h"

#define STORE_BLOCK_CACHE_BYTES  (256u * 1024u * 1024u)
#define STORE_BLOOM_BITS_PER_KEY 10.0
#define STORE_CURSOR_KEY         "wal_cursor"
#define STORE_CANDIDATE_VERSION  1
/* Key suffix after the (subject, predicate) prefix: timestamp u64 BE and hash. */
#define STORE_INDEX_SUFFIX_LEN (8 + STEMEDB_HASH_LEN)

enum store_cf {
	CF_DEFAULT = 0,
	CF_ASSERTIONS,
	CF_SP_INDEX,
	CF_VIEWS,
	CF_AUDIT,
	CF_RECORDS,
	CF_VOTES,
	CF_PROTECT,
	CF_COUNT
};

static const char *const CF_NAMES[CF_COUNT] = {"default", "assertions", "sp_index", "views",
                                               "audit",   "records",    "votes",    "protect"};

struct store {
	char *path;
	rocksdb_t *db;
	rocksdb_options_t *db_options;
	rocksdb_options_t *cf_options[CF_COUNT];
	rocksdb_cache_t *cache;
	rocksdb_column_family_handle_t *cf[CF_COUNT];
	rocksdb_readoptions_t *read_options;
	rocksdb_writeoptions_t *write_options;
	_Atomic uint64_t assertion_count;
};

/* Puts are buffered as (column family u8, key length u32, key, value length u32, value)
 * because store_batch_new has no store, and so no column family handles, to write to. */
/* An assertion envelope that a co-signature in the batch has rewritten, so that a later
 * co-signature of the same assertion in the same batch builds on it. */
struct batch_envelope {
	uint8_t hash[STEMEDB_HASH_LEN];
	struct buf envelope;
};

struct store_batch {
	struct buf ops;
	bool has_cursor;
	uint64_t cursor;
	struct batch_envelope *rewritten;
	size_t rewritten_count;
	size_t rewritten_cap;
};

static void batch_forget_rewritten(struct store_batch *b);

static void set_err(char *err, size_t err_size, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || err_size == 0) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(err, err_size, fmt, ap);
	va_end(ap);
}

/* ---- options ---- */

static rocksdb_options_t *make_cf_options(struct store *s, enum store_cf cf)
{
	rocksdb_options_t *options = rocksdb_options_create();
	rocksdb_block_based_table_options_t *table = rocksdb_block_based_options_create();

	rocksdb_block_based_options_set_block_cache(table, s->cache);
	rocksdb_block_based_options_set_cache_index_and_filter_blocks(table, 1);
	rocksdb_block_based_options_set_format_version(table, 5);

	/* Duplicate checks look up hashes that are mostly absent, and a whole-key bloom
	 * filter rules most of them out without a disk read. The index is only ever scanned by
	 * prefix, and its prefixes vary in length, so a filter there would cost space for nothing.
	 */
	if (cf == CF_ASSERTIONS) {
		rocksdb_block_based_options_set_filter_policy(
		        table, rocksdb_filterpolicy_create_bloom_full(STORE_BLOOM_BITS_PER_KEY));
	}
	rocksdb_options_set_block_based_table_factory(options, table);
	rocksdb_block_based_options_destroy(table);

	rocksdb_options_set_compression(options, rocksdb_lz4_compression);
	rocksdb_options_set_level_compaction_dynamic_level_bytes(options, 1);
	return options;
}

static void make_db_options(struct store *s)
{
	s->db_options = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(s->db_options, 1);
	rocksdb_options_set_create_missing_column_families(s->db_options, 1);
	rocksdb_options_increase_parallelism(s->db_options, 2);
	rocksdb_options_set_atomic_flush(s->db_options, 1);
	rocksdb_options_set_keep_log_file_num(s->db_options, 5);

	s->read_options = rocksdb_readoptions_create();
	s->write_options = rocksdb_writeoptions_create();
	rocksdb_writeoptions_disable_WAL(s->write_options, 1);
}

/* ---- open and close ---- */

/* Counts the assertions once, so that the counter is right even after a crash. */
static enum store_result count_assertions(struct store *s, uint64_t *count)
{
	rocksdb_readoptions_t *options = rocksdb_readoptions_create();
	rocksdb_iterator_t *it;
	char *error = NULL;
	uint64_t n = 0;

	rocksdb_readoptions_set_fill_cache(options, 0);
	it = rocksdb_create_iterator_cf(s->db, options, s->cf[CF_ASSERTIONS]);
	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		n++;
	}
	rocksdb_iter_get_error(it, &error);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(options);

	if (error != NULL) {
		log_error("counting the assertions in %s failed: %s", s->path, error);
		rocksdb_free(error);
		return STORE_ERROR;
	}
	*count = n;
	return STORE_OK;
}

struct store *store_open(const char *path, char *err, size_t err_size)
{
	struct store *s = calloc(1, sizeof(*s));
	char *error = NULL;
	uint64_t count = 0;

	if (s == NULL) {
		abort();
	}
	s->path = strdup(path);
	s->cache = rocksdb_cache_create_lru(STORE_BLOCK_CACHE_BYTES);
	make_db_options(s);
	for (int i = 0; i < CF_COUNT; i++) {
		s->cf_options[i] = make_cf_options(s, (enum store_cf)i);
	}

	s->db = rocksdb_open_column_families(s->db_options, path, CF_COUNT, CF_NAMES,
	                                     (const rocksdb_options_t *const *)s->cf_options, s->cf,
	                                     &error);
	if (error != NULL) {
		set_err(err, err_size, "cannot open the RocksDB database in %s: %s", path, error);
		log_error("rocksdb_open_column_families() of %s failed: %s", path, error);
		rocksdb_free(error);
		goto fail;
	}

	if (count_assertions(s, &count) != STORE_OK) {
		set_err(err, err_size, "cannot count the assertions in %s; see the log", path);
		goto fail;
	}
	atomic_store(&s->assertion_count, count);
	log_info("opened the store in %s with %" PRIu64 " assertions", path, count);
	return s;

fail:
	store_close(s);
	return NULL;
}

void store_close(struct store *s)
{
	if (s == NULL) {
		return;
	}
	for (int i = 0; i < CF_COUNT; i++) {
		if (s->cf[i] != NULL) {
			rocksdb_column_family_handle_destroy(s->cf[i]);
		}
	}
	if (s->db != NULL) {
		rocksdb_close(s->db);
	}
	for (int i = 0; i < CF_COUNT; i++) {
		if (s->cf_options[i] != NULL) {
			rocksdb_options_destroy(s->cf_options[i]);
		}
	}
	rocksdb_options_destroy(s->db_options);
	rocksdb_readoptions_destroy(s->read_options);
	rocksdb_writeoptions_destroy(s->write_options);
	rocksdb_cache_destroy(s->cache);
	free(s->path);
	free(s);
}

/* ---- point reads ---- */

/* Reads one value; *out stays NULL when the key is absent. */
static enum store_result get_pinned(struct store *s, enum store_cf cf, const void *key,
                                    size_t key_len, rocksdb_pinnableslice_t **out)
{
	char *error = NULL;

	*out = rocksdb_get_pinned_cf(s->db, s->read_options, s->cf[cf], key, key_len, &error);
	if (error != NULL) {
		log_error("rocksdb_get_pinned_cf() in column family %s of %s failed: %s",
		          CF_NAMES[cf], s->path, error);
		rocksdb_free(error);
		return STORE_ERROR;
	}
	return *out == NULL ? STORE_NOT_FOUND : STORE_OK;
}

enum store_result store_get_cursor(struct store *s, uint64_t *cursor)
{
	rocksdb_pinnableslice_t *slice;
	enum store_result rc;
	const char *value;
	size_t len;

	rc = get_pinned(s, CF_DEFAULT, STORE_CURSOR_KEY, strlen(STORE_CURSOR_KEY), &slice);
	if (rc == STORE_NOT_FOUND) {
		*cursor = 0;
		return STORE_OK;
	}
	if (rc != STORE_OK) {
		return rc;
	}

	value = rocksdb_pinnableslice_value(slice, &len);
	if (len != 8) {
		log_error("the WAL cursor in %s is %zu bytes long instead of 8", s->path, len);
		rc = STORE_ERROR;
	} else {
		*cursor = load_u64le((const uint8_t *)value);
	}
	rocksdb_pinnableslice_destroy(slice);
	return rc;
}

enum store_result store_has_assertion(struct store *s, const uint8_t hash[STEMEDB_HASH_LEN])
{
	rocksdb_pinnableslice_t *slice;
	enum store_result rc = get_pinned(s, CF_ASSERTIONS, hash, STEMEDB_HASH_LEN, &slice);

	if (slice != NULL) {
		rocksdb_pinnableslice_destroy(slice);
	}
	return rc;
}

enum store_result store_get_assertion(struct store *s, const uint8_t hash[STEMEDB_HASH_LEN],
                                      struct assertion *a, struct hlc_stamp *hlc)
{
	rocksdb_pinnableslice_t *slice;
	enum store_result rc = get_pinned(s, CF_ASSERTIONS, hash, STEMEDB_HASH_LEN, &slice);
	const char *value;
	size_t len;

	if (rc != STORE_OK) {
		return rc;
	}

	value = rocksdb_pinnableslice_value(slice, &len);
	if (!assertion_decode_envelope((const uint8_t *)value, len, a, hlc)) {
		log_error("the stored envelope of an assertion in %s (%zu bytes) does not decode",
		          s->path, len);
		rc = STORE_ERROR;
	}
	rocksdb_pinnableslice_destroy(slice);
	return rc;
}

/* ---- candidate values ---- */

/* Candidate value, version 1: u8 version, u8 object type, the object (text and
 * reference: u32 length and bytes; number: binary64; boolean: u8), u32 confidence in
 * millionths, u8 source class, u8 lifecycle, u8 flags (bit 0: epoch present),
 * epoch 32 B when present, HLC wall_ms u64, logical u32, node id 16 B, u8 agent count
 * and 32 B per distinct signer. Timestamp and hash are in the key. */
static void encode_candidate(const struct candidate *c, struct buf *out)
{
	buf_put_u8(out, STORE_CANDIDATE_VERSION);
	buf_put_u8(out, (uint8_t)c->object.type);
	if (c->object.type == OBJECT_NUMBER) {
		uint64_t bits;

		memcpy(&bits, &c->object.number, sizeof(bits));
		buf_put_u64le(out, bits);
	} else if (c->object.type == OBJECT_BOOLEAN) {
		buf_put_u8(out, c->object.boolean ? 1 : 0);
	} else {
		buf_put_u32le(out, (uint32_t)c->object.text_len);
		buf_append(out, c->object.text, c->object.text_len);
	}

	buf_put_u32le(out, c->confidence_micro);
	buf_put_u8(out, c->source_class);
	buf_put_u8(out, c->lifecycle);
	buf_put_u8(out, c->has_epoch ? 1 : 0);
	if (c->has_epoch) {
		buf_append(out, c->epoch, STEMEDB_HASH_LEN);
	}

	buf_put_u64le(out, c->hlc.wall_ms);
	buf_put_u32le(out, c->hlc.logical);
	buf_append(out, c->hlc.node_id, sizeof(c->hlc.node_id));
	buf_put_u8(out, (uint8_t)c->agent_count);
	buf_append(out, c->agents, c->agent_count * STEMEDB_AGENT_ID_LEN);
}

static bool decode_object(struct reader *r, struct object_value *o)
{
	o->type = (enum object_type)reader_u8(r);
	if (o->type == OBJECT_NUMBER) {
		uint64_t bits = reader_u64le(r);

		memcpy(&o->number, &bits, sizeof(bits));
		return r->ok;
	}
	if (o->type == OBJECT_BOOLEAN) {
		o->boolean = reader_u8(r) != 0;
		return r->ok;
	}
	if (o->type != OBJECT_TEXT && o->type != OBJECT_REFERENCE) {
		return false;
	}

	uint32_t len = reader_u32le(r);
	const uint8_t *text = reader_bytes(r, len);

	if (text == NULL) {
		return false;
	}
	o->text = malloc((size_t)len + 1);
	if (o->text == NULL) {
		abort();
	}
	memcpy(o->text, text, len);
	o->text[len] = '\0';
	o->text_len = len;
	return true;
}

/* Fills c (zeroed by the caller) from an index key suffix and value. */
static bool decode_candidate(const uint8_t *suffix, const uint8_t *value, size_t len,
                             struct candidate *c)
{
	struct reader r;
	const uint8_t *bytes;

	c->timestamp = load_u64be(suffix);
	memcpy(c->hash, suffix + 8, STEMEDB_HASH_LEN);

	reader_init(&r, value, len);
	if (reader_u8(&r) != STORE_CANDIDATE_VERSION || !decode_object(&r, &c->object)) {
		return false;
	}
	c->confidence_micro = reader_u32le(&r);
	c->source_class = reader_u8(&r);
	c->lifecycle = reader_u8(&r);
	c->has_epoch = (reader_u8(&r) & 1) != 0;
	if (c->has_epoch) {
		bytes = reader_bytes(&r, STEMEDB_HASH_LEN);
		if (bytes != NULL) {
			memcpy(c->epoch, bytes, STEMEDB_HASH_LEN);
		}
	}

	c->hlc.wall_ms = reader_u64le(&r);
	c->hlc.logical = reader_u32le(&r);
	bytes = reader_bytes(&r, sizeof(c->hlc.node_id));
	if (bytes != NULL) {
		memcpy(c->hlc.node_id, bytes, sizeof(c->hlc.node_id));
	}
	c->agent_count = reader_u8(&r);
	if (c->agent_count > STEMEDB_SIGNATURES_MAX) {
		return false;
	}
	bytes = reader_bytes(&r, c->agent_count * STEMEDB_AGENT_ID_LEN);
	if (bytes != NULL) {
		memcpy(c->agents, bytes, c->agent_count * STEMEDB_AGENT_ID_LEN);
	}
	return r.ok && r.left == 0;
}

/* ---- prefix scans ---- */

/* Appends subject, 0x00 and, when predicate is not NULL, predicate and 0x00. */
static void build_prefix(struct buf *out, const char *subject, size_t subject_len,
                         const char *predicate, size_t predicate_len)
{
	buf_append(out, subject, subject_len);
	buf_put_u8(out, 0);
	if (predicate != NULL) {
		buf_append(out, predicate, predicate_len);
		buf_put_u8(out, 0);
	}
}

/* An iterator over the keys of sp_index that start with prefix, which ends in 0x00, so
 * the first key after the range is the prefix with its last byte set to 0x01. */
struct prefix_scan {
	rocksdb_readoptions_t *options;
	rocksdb_iterator_t *it;
	struct buf upper;
};

static void prefix_scan_start(struct store *s, struct prefix_scan *scan, const struct buf *prefix)
{
	buf_init(&scan->upper);
	buf_append(&scan->upper, prefix->data, prefix->len);
	scan->upper.data[scan->upper.len - 1] = 0x01;

	scan->options = rocksdb_readoptions_create();
	rocksdb_readoptions_set_iterate_upper_bound(scan->options, (const char *)scan->upper.data,
	                                            scan->upper.len);
	scan->it = rocksdb_create_iterator_cf(s->db, scan->options, s->cf[CF_SP_INDEX]);
	rocksdb_iter_seek(scan->it, (const char *)prefix->data, prefix->len);
}

/* Destroys the iterator and returns STORE_ERROR when it stopped on an error. */
static enum store_result prefix_scan_finish(struct store *s, struct prefix_scan *scan)
{
	char *error = NULL;
	enum store_result rc = STORE_OK;

	rocksdb_iter_get_error(scan->it, &error);
	if (error != NULL) {
		log_error("scanning the subject/predicate index of %s failed: %s", s->path, error);
		rocksdb_free(error);
		rc = STORE_ERROR;
	}
	rocksdb_iter_destroy(scan->it);
	rocksdb_readoptions_destroy(scan->options);
	buf_free(&scan->upper);
	return rc;
}

enum store_result store_scan_candidates(struct store *s, const char *subject, size_t subject_len,
                                        const char *predicate, size_t predicate_len, uint64_t as_of,
                                        size_t limit, struct candidate_list *out)
{
	struct buf prefix;
	struct prefix_scan scan;
	enum store_result rc = STORE_OK;

	buf_init(&prefix);
	build_prefix(&prefix, subject, subject_len, predicate, predicate_len);
	prefix_scan_start(s, &scan, &prefix);

	for (size_t n = 0; rocksdb_iter_valid(scan.it) && (limit == 0 || n < limit); n++) {
		size_t key_len;
		size_t value_len;
		const uint8_t *key = (const uint8_t *)rocksdb_iter_key(scan.it, &key_len);
		const uint8_t *value = (const uint8_t *)rocksdb_iter_value(scan.it, &value_len);
		struct candidate *c;

		if (key_len != prefix.len + STORE_INDEX_SUFFIX_LEN) {
			log_error("an index key of %zu bytes in %s does not match the layout",
			          key_len, s->path);
			rc = STORE_ERROR;
			break;
		}
		if (load_u64be(key + prefix.len) > as_of) {
			break;
		}

		c = candidate_list_push(out);
		if (!decode_candidate(key + prefix.len, value, value_len, c)) {
			log_error("an index value of %zu bytes in %s does not decode", value_len,
			          s->path);
			rc = STORE_ERROR;
			break;
		}
		rocksdb_iter_next(scan.it);
	}

	if (prefix_scan_finish(s, &scan) != STORE_OK) {
		rc = STORE_ERROR;
	}
	buf_free(&prefix);
	return rc;
}

enum store_result store_subject_predicates(struct store *s, const char *subject, size_t subject_len,
                                           bool (*fn)(void *ctx, const char *predicate,
                                                      size_t predicate_len, uint64_t count),
                                           void *ctx)
{
	struct buf prefix;
	struct buf current;
	struct prefix_scan scan;
	uint64_t count = 0;
	bool more = true;
	enum store_result rc;

	buf_init(&prefix);
	buf_init(&current);
	build_prefix(&prefix, subject, subject_len, NULL, 0);
	prefix_scan_start(s, &scan, &prefix);

	for (; rocksdb_iter_valid(scan.it) && more; rocksdb_iter_next(scan.it)) {
		size_t key_len;
		const char *key = rocksdb_iter_key(scan.it, &key_len);
		const char *predicate = key + prefix.len;
		const char *end = memchr(predicate, 0, key_len - prefix.len);
		size_t predicate_len = end ? (size_t)(end - predicate) : key_len - prefix.len;

		if (count > 0 && (predicate_len != current.len ||
		                  memcmp(predicate, current.data, predicate_len) != 0)) {
			more = fn(ctx, (const char *)current.data, current.len, count);
			count = 0;
		}
		if (count == 0) {
			buf_reset(&current);
			buf_append(&current, predicate, predicate_len);
		}
		count++;
	}
	if (more && count > 0) {
		fn(ctx, (const char *)current.data, current.len, count);
	}

	rc = prefix_scan_finish(s, &scan);
	buf_free(&current);
	buf_free(&prefix);
	return rc;
}

/* ---- statistics ---- */

uint64_t store_assertion_count(struct store *s)
{
	return atomic_load(&s->assertion_count);
}

uint64_t store_disk_bytes(struct store *s)
{
	static const char *const PROPERTIES[] = {"rocksdb.live-sst-files-size",
	                                         "rocksdb.cur-size-all-mem-tables"};
	uint64_t total = 0;

	for (int cf = 0; cf < CF_COUNT; cf++) {
		for (size_t p = 0; p < sizeof(PROPERTIES) / sizeof(PROPERTIES[0]); p++) {
			uint64_t value = 0;

			if (rocksdb_property_int_cf(s->db, s->cf[cf], PROPERTIES[p], &value) == 0) {
				total += value;
			}
		}
	}
	return total;
}

/* ---- batches ---- */

static void batch_put_view_keys(struct store_batch *b, const uint8_t hash[STEMEDB_HASH_LEN],
                                const struct assertion *a, const struct hlc_stamp *hlc);

struct store_batch *store_batch_new(void)
{
	struct store_batch *b = calloc(1, sizeof(*b));

	if (b == NULL) {
		abort();
	}
	buf_init(&b->ops);
	return b;
}

void store_batch_free(struct store_batch *b)
{
	if (b == NULL) {
		return;
	}
	buf_free(&b->ops);
	batch_forget_rewritten(b);
	free(b->rewritten);
	free(b);
}

void store_batch_clear(struct store_batch *b)
{
	buf_reset(&b->ops);
	b->has_cursor = false;
	b->cursor = 0;
	batch_forget_rewritten(b);
}

static void batch_put(struct store_batch *b, enum store_cf cf, const void *key, size_t key_len,
                      const void *value, size_t value_len)
{
	buf_put_u8(&b->ops, (uint8_t)cf);
	buf_put_u32le(&b->ops, (uint32_t)key_len);
	buf_append(&b->ops, key, key_len);
	buf_put_u32le(&b->ops, (uint32_t)value_len);
	buf_append(&b->ops, value, value_len);
}

/* Puts the sp_index entry and the view keys of an assertion, not its record. */
static void batch_put_index_keys(struct store_batch *b, const uint8_t hash[STEMEDB_HASH_LEN],
                                 const struct assertion *a, const struct hlc_stamp *hlc)
{
	struct candidate c;
	struct buf key;
	struct buf value;

	memset(&c, 0, sizeof(c));
	candidate_from_assertion(&c, a, hash, hlc);
	buf_init(&key);
	buf_init(&value);

	build_prefix(&key, a->subject, a->subject_len, a->predicate, a->predicate_len);
	buf_put_u64be(&key, a->timestamp);
	buf_append(&key, hash, STEMEDB_HASH_LEN);
	encode_candidate(&c, &value);

	batch_put(b, CF_SP_INDEX, key.data, key.len, value.data, value.len);
	batch_put_view_keys(b, hash, a, hlc);

	free(c.object.text);
	buf_free(&key);
	buf_free(&value);
}

void store_batch_put_assertion(struct store_batch *b, const uint8_t hash[STEMEDB_HASH_LEN],
                               const struct assertion *a, const struct hlc_stamp *hlc,
                               const uint8_t *envelope, size_t envelope_len)
{
	batch_put(b, CF_ASSERTIONS, hash, STEMEDB_HASH_LEN, envelope, envelope_len);
	batch_put_index_keys(b, hash, a, hlc);
}

void store_batch_put_assertion_unindexed(struct store_batch *b,
                                         const uint8_t hash[STEMEDB_HASH_LEN],
                                         const uint8_t *envelope, size_t envelope_len)
{
	batch_put(b, CF_ASSERTIONS, hash, STEMEDB_HASH_LEN, envelope, envelope_len);
}

void store_batch_put_protect(struct store_batch *b, const void *key, size_t key_len,
                             const void *value, size_t value_len)
{
	batch_put(b, CF_PROTECT, key, key_len, value, value_len);
}

enum store_result store_batch_put_index(struct store *s, struct store_batch *b,
                                        const uint8_t hash[STEMEDB_HASH_LEN])
{
	struct assertion a;
	struct hlc_stamp hlc;
	struct buf envelope;
	enum store_result rc;

	assertion_init(&a);
	buf_init(&envelope);
	rc = store_get_envelope(s, hash, &envelope);
	if (rc == STORE_OK && !assertion_decode_envelope(envelope.data, envelope.len, &a, &hlc)) {
		log_error("a stored assertion in %s does not decode, so it cannot be indexed",
		          s->path);
		rc = STORE_ERROR;
	}
	if (rc == STORE_OK)
		batch_put_index_keys(b, hash, &a, &hlc);
	assertion_free(&a);
	buf_free(&envelope);
	return rc;
}

enum store_result store_quarantine_indexable(struct store *s, const uint8_t hash[STEMEDB_HASH_LEN],
                                             bool *indexable)
{
	uint8_t key[1 + STEMEDB_HASH_LEN];
	rocksdb_pinnableslice_t *slice;
	enum store_result rc;
	const char *value;
	size_t len;

	key[0] = STORE_PROTECT_QUARANTINE;
	memcpy(key + 1, hash, STEMEDB_HASH_LEN);
	*indexable = true;
	rc = get_pinned(s, CF_PROTECT, key, sizeof(key), &slice);
	if (rc == STORE_NOT_FOUND)
		return STORE_OK;
	if (rc != STORE_OK)
		return rc;
	value = rocksdb_pinnableslice_value(slice, &len);
	*indexable = len > STORE_QUARANTINE_STATUS_AT &&
	             (uint8_t)value[STORE_QUARANTINE_STATUS_AT] == STORE_QUARANTINE_APPROVED;
	rocksdb_pinnableslice_destroy(slice);
	return STORE_OK;
}

void store_batch_set_cursor(struct store_batch *b, uint64_t cursor)
{
	b->has_cursor = true;
	b->cursor = cursor;
}

/* Replays the buffered puts into a RocksDB WriteBatch. */
static rocksdb_writebatch_t *build_writebatch(struct store *s, const struct store_batch *b)
{
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	struct reader r;

	reader_init(&r, b->ops.data, b->ops.len);
	while (r.ok && r.left > 0) {
		uint8_t cf = reader_u8(&r);
		uint32_t key_len = reader_u32le(&r);
		const uint8_t *key = reader_bytes(&r, key_len);
		uint32_t value_len = reader_u32le(&r);
		const uint8_t *value = reader_bytes(&r, value_len);

		if (!r.ok || cf >= 2 * CF_COUNT) {
			break;
		}
		if (cf >= CF_COUNT) {
			rocksdb_writebatch_delete_cf(wb, s->cf[cf - CF_COUNT], (const char *)key,
			                             key_len);
			continue;
		}
		rocksdb_writebatch_put_cf(wb, s->cf[cf], (const char *)key, key_len,
		                          (const char *)value, value_len);
	}

	if (b->has_cursor) {
		uint8_t cursor[8];

		store_u64le(cursor, b->cursor);
		rocksdb_writebatch_put_cf(wb, s->cf[CF_DEFAULT], STORE_CURSOR_KEY,
		                          strlen(STORE_CURSOR_KEY), (const char *)cursor,
		                          sizeof(cursor));
	}
	return wb;
}

enum store_result store_batch_commit(struct store *s, struct store_batch *b,
                                     uint64_t new_assertions, char *err, size_t err_size)
{
	rocksdb_writebatch_t *wb = build_writebatch(s, b);
	char *error = NULL;

	rocksdb_write(s->db, s->write_options, wb, &error);
	rocksdb_writebatch_destroy(wb);
	if (error != NULL) {
		set_err(err, err_size, "rocksdb_write() of a batch to %s failed: %s", s->path,
		        error);
		log_error("rocksdb_write() of a batch to %s failed: %s", s->path, error);
		rocksdb_free(error);
		return STORE_ERROR;
	}

	atomic_fetch_add(&s->assertion_count, new_assertions);
	return STORE_OK;
}

enum store_result store_batch_commit_durable(struct store *s, struct store_batch *b, char *err,
                                             size_t err_size)
{
	rocksdb_writebatch_t *wb = build_writebatch(s, b);
	rocksdb_writeoptions_t *options = rocksdb_writeoptions_create();
	char *error = NULL;

	rocksdb_writeoptions_set_sync(options, 1);
	rocksdb_write(s->db, options, wb, &error);
	rocksdb_writeoptions_destroy(options);
	rocksdb_writebatch_destroy(wb);
	if (error != NULL) {
		set_err(err, err_size, "rocksdb_write() of a synced batch to %s failed: %s",
		        s->path, error);
		log_error("rocksdb_write() of a synced batch to %s failed: %s", s->path, error);
		rocksdb_free(error);
		return STORE_ERROR;
	}
	return STORE_OK;
}

enum store_result store_flush(struct store *s, char *err, size_t err_size)
{
	/* Each call flushes one column family, because the RocksDB 7.8 C API has no call
	 * that flushes several at once, so a crash can fall between two flushes. The order
	 * keeps replay correct across such a crash. Keys derived from a record (index,
	 * views, vote tallies, quarantine and LSH keys) go first, then the records that
	 * replay checks to skip what is applied (assertions, then other records, whose
	 * co-signatures rewrite assertion envelopes), and the cursor (default) last. A
	 * record on disk therefore implies its derived keys are on disk too, and the cursor
	 * never runs ahead of data. */
	static const enum store_cf ORDER[CF_COUNT] = {CF_SP_INDEX, CF_VIEWS,  CF_VOTES,
	                                              CF_PROTECT,  CF_AUDIT,  CF_ASSERTIONS,
	                                              CF_RECORDS,  CF_DEFAULT};
	rocksdb_flushoptions_t *options = rocksdb_flushoptions_create();
	enum store_result rc = STORE_OK;

	rocksdb_flushoptions_set_wait(options, 1);
	for (int i = 0; i < CF_COUNT; i++) {
		char *error = NULL;

		rocksdb_flush_cf(s->db, options, s->cf[ORDER[i]], &error);
		if (error != NULL) {
			set_err(err, err_size, "rocksdb_flush_cf() of %s in %s failed: %s",
			        CF_NAMES[ORDER[i]], s->path, error);
			log_error("rocksdb_flush_cf() of %s in %s failed: %s", CF_NAMES[ORDER[i]],
			          s->path, error);
			rocksdb_free(error);
			rc = STORE_ERROR;
			break;
		}
	}
	rocksdb_flushoptions_destroy(options);
	return rc;
}

/* ---- administration: watermark, envelopes, compaction, checkpoints, rebuild ---- */

#define STORE_ARCHIVED_KEY  "wal_archived"
#define STORE_REBUILD_BATCH 1000

static enum store_result get_u64(struct store *s, const char *key, uint64_t *out)
{
	rocksdb_pinnableslice_t *slice;
	enum store_result rc = get_pinned(s, CF_DEFAULT, key, strlen(key), &slice);
	const char *value;
	size_t len;

	*out = 0;
	if (rc != STORE_OK) {
		return rc == STORE_NOT_FOUND ? STORE_OK : rc;
	}
	value = rocksdb_pinnableslice_value(slice, &len);
	if (len != 8) {
		log_error("the value of %s in %s is %zu bytes long instead of 8", key, s->path,
		          len);
		rc = STORE_ERROR;
	} else {
		*out = load_u64le((const uint8_t *)value);
	}
	rocksdb_pinnableslice_destroy(slice);
	return rc;
}

enum store_result store_get_archived_watermark(struct store *s, uint64_t *watermark)
{
	return get_u64(s, STORE_ARCHIVED_KEY, watermark);
}

enum store_result store_set_archived_watermark(struct store *s, uint64_t watermark, char *err,
                                               size_t err_size)
{
	uint8_t value[8];
	char *error = NULL;

	store_u64le(value, watermark);
	rocksdb_put_cf(s->db, s->write_options, s->cf[CF_DEFAULT], STORE_ARCHIVED_KEY,
	               strlen(STORE_ARCHIVED_KEY), (const char *)value, sizeof(value), &error);
	if (error != NULL) {
		set_err(err, err_size, "rocksdb_put_cf() of %s in %s failed: %s",
		        STORE_ARCHIVED_KEY, s->path, error);
		log_error("rocksdb_put_cf() of %s in %s failed: %s", STORE_ARCHIVED_KEY, s->path,
		          error);
		rocksdb_free(error);
		return STORE_ERROR;
	}
	return STORE_OK;
}

enum store_result store_get_envelope(struct store *s, const uint8_t hash[STEMEDB_HASH_LEN],
                                     struct buf *out)
{
	rocksdb_pinnableslice_t *slice;
	enum store_result rc = get_pinned(s, CF_ASSERTIONS, hash, STEMEDB_HASH_LEN, &slice);
	const char *value;
	size_t len;

	if (rc != STORE_OK) {
		return rc;
	}
	value = rocksdb_pinnableslice_value(slice, &len);
	buf_append(out, value, len);
	rocksdb_pinnableslice_destroy(slice);
	return STORE_OK;
}

enum store_result store_compact(struct store *s)
{
	for (int cf = 0; cf < CF_COUNT; cf++) {
		rocksdb_compact_range_cf(s->db, s->cf[cf], NULL, 0, NULL, 0);
	}
	log_info("compacted every column family of %s", s->path);
	return STORE_OK;
}

/* Opens a checkpoint read-only and reads the WAL cursor and assertion count it
 * contains, because writes that ran during the checkpoint may be in it too. */
static enum store_result read_checkpoint(struct store *s, const char *dir, uint64_t *cursor,
                                         uint64_t *count, char *err, size_t err_size)
{
	struct store probe = {.path = (char *)dir};
	char *error = NULL;
	enum store_result rc;

	probe.db_options = s->db_options;
	probe.read_options = s->read_options;
	probe.db = rocksdb_open_for_read_only_column_families(
	        s->db_options, dir, CF_COUNT, CF_NAMES,
	        (const rocksdb_options_t *const *)s->cf_options, probe.cf, 0, &error);
	if (error != NULL) {
		set_err(err, err_size, "opening the checkpoint %s read-only failed: %s", dir,
		        error);
		log_error("rocksdb_open_for_read_only_column_families() of %s failed: %s", dir,
		          error);
		rocksdb_free(error);
		return STORE_ERROR;
	}

	rc = store_get_cursor(&probe, cursor);
	if (rc == STORE_OK) {
		rc = count_assertions(&probe, count);
	}
	if (rc != STORE_OK) {
		set_err(err, err_size, "reading the checkpoint %s failed; see the log", dir);
	}
	for (int i = 0; i < CF_COUNT; i++) {
		rocksdb_column_family_handle_destroy(probe.cf[i]);
	}
	rocksdb_close(probe.db);
	return rc;
}

enum store_result store_checkpoint(struct store *s, const char *dir, uint64_t *cursor,
                                   uint64_t *count, char *err, size_t err_size)
{
	rocksdb_checkpoint_t *checkpoint;
	char *error = NULL;

	if (store_flush(s, err, err_size) != STORE_OK) {
		return STORE_ERROR;
	}
	checkpoint = rocksdb_checkpoint_object_create(s->db, &error);
	if (error == NULL) {
		/* log_size_for_flush 0 flushes memtables first, so no RocksDB WAL is needed. */
		rocksdb_checkpoint_create(checkpoint, dir, 0, &error);
		rocksdb_checkpoint_object_destroy(checkpoint);
	}
	if (error != NULL) {
		set_err(err, err_size, "creating a RocksDB checkpoint in %s failed: %s", dir,
		        error);
		log_error("rocksdb_checkpoint_create() into %s failed: %s", dir, error);
		rocksdb_free(error);
		return STORE_ERROR;
	}
	return read_checkpoint(s, dir, cursor, count, err, err_size);
}

static enum store_result write_batch(struct store *s, rocksdb_writebatch_t *wb)
{
	char *error = NULL;

	rocksdb_write(s->db, s->write_options, wb, &error);
	rocksdb_writebatch_clear(wb);
	if (error != NULL) {
		log_error("rocksdb_write() of an index rebuild batch to %s failed: %s", s->path,
		          error);
		rocksdb_free(error);
		return STORE_ERROR;
	}
	return STORE_OK;
}

/* Builds the sp_index key and value of a stored assertion. When views is not NULL, also
 * adds the assertion's view keys (revision, agent and feed indexes) to it. */
static bool index_entry(const uint8_t *envelope, size_t len, const uint8_t *hash, struct buf *key,
                        struct buf *value, struct store_batch *views)
{
	struct assertion a;
	struct hlc_stamp hlc;
	struct candidate c;
	bool ok;

	assertion_init(&a);
	ok = assertion_decode_envelope(envelope, len, &a, &hlc);
	if (ok && views != NULL) {
		batch_put_view_keys(views, hash, &a, &hlc);
	}
	if (ok) {
		memset(&c, 0, sizeof(c));
		candidate_from_assertion(&c, &a, hash, &hlc);
		build_prefix(key, a.subject, a.subject_len, a.predicate, a.predicate_len);
		buf_put_u64be(key, a.timestamp);
		buf_append(key, hash, STEMEDB_HASH_LEN);
		encode_candidate(&c, value);
		free(c.object.text);
	}
	assertion_free(&a);
	return ok;
}

/* Writes one chunk of a rebuild: the sp_index entries in wb, then the view keys. Both
 * are set-semantics puts, so a crash between the two writes only leaves work that the
 * next rebuild repeats. */
static enum store_result rebuild_write(struct store *s, rocksdb_writebatch_t *wb,
                                       struct store_batch *views)
{
	rocksdb_writebatch_t *view_wb;
	enum store_result rc = write_batch(s, wb);

	if (rc != STORE_OK) {
		return rc;
	}
	view_wb = build_writebatch(s, views);
	rc = write_batch(s, view_wb);
	rocksdb_writebatch_destroy(view_wb);
	store_batch_clear(views);
	return rc;
}

/* Phase 1: writes the index entry and the view keys of every stored assertion, in
 * batches. */
static enum store_result rebuild_put_all(struct store *s, _Atomic uint64_t *done)
{
	rocksdb_readoptions_t *options = rocksdb_readoptions_create();
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	struct store_batch *views = store_batch_new();
	enum store_result rc = STORE_OK;
	rocksdb_iterator_t *it;
	struct buf key, value;
	size_t pending = 0;

	buf_init(&key);
	buf_init(&value);
	rocksdb_readoptions_set_fill_cache(options, 0);
	it = rocksdb_create_iterator_cf(s->db, options, s->cf[CF_ASSERTIONS]);
	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it) && rc == STORE_OK;
	     rocksdb_iter_next(it)) {
		size_t hash_len, len;
		const uint8_t *hash = (const uint8_t *)rocksdb_iter_key(it, &hash_len);
		const uint8_t *envelope = (const uint8_t *)rocksdb_iter_value(it, &len);

		bool indexable = true;

		buf_reset(&key);
		buf_reset(&value);
		if (hash_len == STEMEDB_HASH_LEN &&
		    store_quarantine_indexable(s, hash, &indexable) != STORE_OK) {
			rc = STORE_ERROR;
			break;
		}
		if (!indexable)
			continue;
		if (hash_len != STEMEDB_HASH_LEN ||
		    !index_entry(envelope, len, hash, &key, &value, views)) {
			log_error(
			        "a stored assertion in %s does not decode; the index rebuild stops",
			        s->path);
			rc = STORE_ERROR;
			break;
		}
		rocksdb_writebatch_put_cf(wb, s->cf[CF_SP_INDEX], (const char *)key.data, key.len,
		                          (const char *)value.data, value.len);
		atomic_fetch_add(done, 1);
		if (++pending == STORE_REBUILD_BATCH) {
			rc = rebuild_write(s, wb, views);
			pending = 0;
		}
	}
	if (rc == STORE_OK && pending > 0) {
		rc = rebuild_write(s, wb, views);
	}
	store_batch_free(views);

	rocksdb_iter_destroy(it);
	rocksdb_writebatch_destroy(wb);
	rocksdb_readoptions_destroy(options);
	buf_free(&key);
	buf_free(&value);
	return rc;
}

/* True when key is exactly the index key of the stored assertion it names. */
static bool index_key_current(struct store *s, const uint8_t *key, size_t key_len)
{
	const uint8_t *hash = key + key_len - STEMEDB_HASH_LEN;
	rocksdb_pinnableslice_t *slice;
	struct buf expected, value;
	const char *envelope;
	size_t len;
	bool current;

	bool indexable = false;

	if (key_len < STORE_INDEX_SUFFIX_LEN ||
	    store_quarantine_indexable(s, hash, &indexable) != STORE_OK || !indexable ||
	    get_pinned(s, CF_ASSERTIONS, hash, STEMEDB_HASH_LEN, &slice) != STORE_OK) {
		return false;
	}
	buf_init(&expected);
	buf_init(&value);
	envelope = rocksdb_pinnableslice_value(slice, &len);
	current = index_entry((const uint8_t *)envelope, len, hash, &expected, &value, NULL) &&
	          expected.len == key_len && memcmp(expected.data, key, key_len) == 0;
	rocksdb_pinnableslice_destroy(slice);
	buf_free(&expected);
	buf_free(&value);
	return current;
}

/* Phase 2: deletes index keys that no stored assertion produces. */
static enum store_result rebuild_delete_stale(struct store *s, uint64_t *deleted)
{
	rocksdb_readoptions_t *options = rocksdb_readoptions_create();
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	enum store_result rc = STORE_OK;
	rocksdb_iterator_t *it;
	size_t pending = 0;

	rocksdb_readoptions_set_fill_cache(options, 0);
	it = rocksdb_create_iterator_cf(s->db, options, s->cf[CF_SP_INDEX]);
	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it) && rc == STORE_OK;
	     rocksdb_iter_next(it)) {
		size_t key_len;
		const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &key_len);

		if (index_key_current(s, key, key_len)) {
			continue;
		}
		rocksdb_writebatch_delete_cf(wb, s->cf[CF_SP_INDEX], (const char *)key, key_len);
		(*deleted)++;
		if (++pending == STORE_REBUILD_BATCH) {
			rc = write_batch(s, wb);
			pending = 0;
		}
	}
	if (rc == STORE_OK && pending > 0) {
		rc = write_batch(s, wb);
	}

	rocksdb_iter_destroy(it);
	rocksdb_writebatch_destroy(wb);
	rocksdb_readoptions_destroy(options);
	return rc;
}

enum store_result store_rebuild_index(struct store *s, _Atomic uint64_t *done, char *err,
                                      size_t err_size)
{
	uint64_t deleted = 0;

	if (rebuild_put_all(s, done) != STORE_OK || rebuild_delete_stale(s, &deleted) != STORE_OK) {
		set_err(err, err_size, "rebuilding the index of %s failed; see the log", s->path);
		return STORE_ERROR;
	}
	log_info("rebuilt the subject/predicate index of %s: %" PRIu64
	         " assertions indexed, %" PRIu64 " stale keys deleted",
	         s->path, atomic_load(done), deleted);
	return STORE_OK;
}

/* ---- views: revision, agent and ingest-order indexes, and the audit family ---- */

static void batch_put_view_keys(struct store_batch *b, const uint8_t hash[STEMEDB_HASH_LEN],
                                const struct assertion *a, const struct hlc_stamp *hlc)
{
	struct buf key;

	buf_init(&key);
	if (a->has_parent) {
		buf_put_u8(&key, STORE_VIEW_CHILDREN);
		buf_append(&key, a->parent_hash, STEMEDB_HASH_LEN);
		buf_append(&key, hash, STEMEDB_HASH_LEN);
		batch_put(b, CF_VIEWS, key.data, key.len, NULL, 0);
	}

	/* One agent key per signer, so an assertion co-signed at write time counts for
	 * every agent that signed it. */
	for (size_t i = 0; i < a->signature_count; i++) {
		buf_reset(&key);
		buf_put_u8(&key, STORE_VIEW_AGENT);
		buf_append(&key, a->signatures[i].agent_id, STEMEDB_AGENT_ID_LEN);
		buf_put_u64be(&key, a->timestamp);
		buf_append(&key, hash, STEMEDB_HASH_LEN);
		batch_put(b, CF_VIEWS, key.data, key.len, NULL, 0);
	}

	buf_reset(&key);
	store_feed_key(&key, hlc->wall_ms, hlc->logical, hash);
	batch_put(b, CF_VIEWS, key.data, key.len, NULL, 0);
	buf_free(&key);
}

void store_feed_key(struct buf *out, uint64_t wall_ms, uint32_t logical,
                    const uint8_t hash[STEMEDB_HASH_LEN])
{
	uint8_t logical_be[4] = {(uint8_t)(logical >> 24), (uint8_t)(logical >> 16),
	                         (uint8_t)(logical >> 8), (uint8_t)logical};

	buf_put_u8(out, STORE_VIEW_FEED);
	buf_put_u64be(out, wall_ms);
	buf_append(out, logical_be, sizeof(logical_be));
	buf_append(out, hash, STEMEDB_HASH_LEN);
}

/* Sets out to the smallest key greater than every key that starts with prefix, and
 * returns false when no such key exists (the prefix is all 0xff bytes). */
static bool prefix_end(const uint8_t *prefix, size_t prefix_len, struct buf *out)
{
	buf_append(out, prefix, prefix_len);
	while (out->len > 0) {
		if (out->data[out->len - 1] != 0xff) {
			out->data[out->len - 1]++;
			return true;
		}
		out->len--;
	}
	return false;
}

static rocksdb_column_family_handle_t *index_family(struct store *s, enum store_index family)
{
	if (family == STORE_INDEX_RECORDS)
		return s->cf[CF_RECORDS];
	return s->cf[family == STORE_INDEX_AUDIT ? CF_AUDIT : CF_VIEWS];
}

/* Positions it on the first key to visit: just past `after` in the scan direction, or
 * at the start of the range when after is NULL. */
static void index_scan_seek(rocksdb_iterator_t *it, const struct store_scan *scan)
{
	size_t key_len = 0;
	const char *key;

	if (scan->after == NULL) {
		if (scan->reverse)
			rocksdb_iter_seek_to_last(it);
		else
			rocksdb_iter_seek_to_first(it);
		return;
	}

	if (scan->reverse)
		rocksdb_iter_seek_for_prev(it, (const char *)scan->after, scan->after_len);
	else
		rocksdb_iter_seek(it, (const char *)scan->after, scan->after_len);
	if (!rocksdb_iter_valid(it))
		return;
	key = rocksdb_iter_key(it, &key_len);
	if (key_len == scan->after_len && memcmp(key, scan->after, key_len) == 0) {
		if (scan->reverse)
			rocksdb_iter_prev(it);
		else
			rocksdb_iter_next(it);
	}
}

enum store_result store_index_scan(struct store *s, const struct store_scan *scan, store_key_fn fn,
                                   void *ctx)
{
	rocksdb_readoptions_t *options = rocksdb_readoptions_create();
	enum store_result rc = STORE_OK;
	rocksdb_iterator_t *it;
	struct buf upper;
	char *error = NULL;

	buf_init(&upper);
	rocksdb_readoptions_set_iterate_lower_bound(options, (const char *)scan->prefix,
	                                            scan->prefix_len);
	if (prefix_end(scan->prefix, scan->prefix_len, &upper))
		rocksdb_readoptions_set_iterate_upper_bound(options, (const char *)upper.data,
		                                            upper.len);
	it = rocksdb_create_iterator_cf(s->db, options, index_family(s, scan->family));

	for (index_scan_seek(it, scan); rocksdb_iter_valid(it);) {
		size_t key_len, value_len;
		const char *key = rocksdb_iter_key(it, &key_len);
		const char *value = rocksdb_iter_value(it, &value_len);

		if (!fn(ctx, (const uint8_t *)key, key_len, (const uint8_t *)value, value_len))
			break;
		if (scan->reverse)
			rocksdb_iter_prev(it);
		else
			rocksdb_iter_next(it);
	}

	rocksdb_iter_get_error(it, &error);
	if (error != NULL) {
		log_error("scanning column family %s of %s failed: %s",
		          scan->family == STORE_INDEX_AUDIT     ? "audit"
		          : scan->family == STORE_INDEX_RECORDS ? "records"
		                                                : "views",
		          s->path, error);
		rocksdb_free(error);
		rc = STORE_ERROR;
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(options);
	buf_free(&upper);
	return rc;
}

enum store_result store_audit_write(struct store *s, const struct store_batch *b)
{
	rocksdb_writeoptions_t *options = rocksdb_writeoptions_create();
	rocksdb_writebatch_t *wb = build_writebatch(s, b);
	char *error = NULL;

	/* Audit records are in no StemeDB WAL, so unlike every other write this one goes
	 * through RocksDB's own WAL (unsynced) to survive a process crash. */
	rocksdb_write(s->db, options, wb, &error);
	rocksdb_writebatch_destroy(wb);
	rocksdb_writeoptions_destroy(options);
	if (error != NULL) {
		log_error("rocksdb_write() of audit records to %s failed: %s", s->path, error);
		rocksdb_free(error);
		return STORE_ERROR;
	}
	return STORE_OK;
}

void store_batch_put_audit(struct store_batch *b, const void *key, size_t key_len,
                           const void *value, size_t value_len)
{
	batch_put(b, CF_AUDIT, key, key_len, value, value_len);
}

void store_batch_delete_audit(struct store_batch *b, const void *key, size_t key_len)
{
	/* A delete is buffered as a put to the column family number CF_COUNT + CF_AUDIT,
	 * which build_writebatch turns into a delete. */
	batch_put(b, (enum store_cf)(CF_COUNT + CF_AUDIT), key, key_len, NULL, 0);
}

/* ---- signed records other than assertions ---- */

/* records key: type u8 || id. votes key: assertion hash || voter || timestamp u64 BE ||
 * vote id, value the weight in millionths (i32 LE), so that the last key of each voter
 * is the vote that counts. */
#define STORE_VOTE_KEY_LEN (2 * STEMEDB_HASH_LEN + 8 + STEMEDB_HASH_LEN)

static void record_key(uint8_t type, const uint8_t id[STEMEDB_HASH_LEN],
                       uint8_t key[1 + STEMEDB_HASH_LEN])
{
	key[0] = type;
	memcpy(key + 1, id, STEMEDB_HASH_LEN);
}

enum store_result store_has_record(struct store *s, uint8_t type,
                                   const uint8_t id[STEMEDB_HASH_LEN])
{
	uint8_t key[1 + STEMEDB_HASH_LEN];
	rocksdb_pinnableslice_t *slice;
	enum store_result rc;

	record_key(type, id, key);
	rc = get_pinned(s, CF_RECORDS, key, sizeof(key), &slice);
	if (rc == STORE_OK)
		rocksdb_pinnableslice_destroy(slice);
	return rc;
}

enum store_result store_get_record(struct store *s, uint8_t type,
                                   const uint8_t id[STEMEDB_HASH_LEN], struct record *r,
                                   struct hlc_stamp *hlc)
{
	uint8_t key[1 + STEMEDB_HASH_LEN];
	rocksdb_pinnableslice_t *slice;
	enum store_result rc;
	const char *value;
	size_t len;

	record_key(type, id, key);
	rc = get_pinned(s, CF_RECORDS, key, sizeof(key), &slice);
	if (rc != STORE_OK)
		return rc;

	value = rocksdb_pinnableslice_value(slice, &len);
	if (!record_decode_envelope((const uint8_t *)value, len, r, hlc) || r->type != type) {
		log_error("the stored %s record %02x%02x... in %s is not a valid envelope (%zu "
		          "bytes)",
		          record_type_name(type), id[0], id[1], s->path, len);
		rc = STORE_ERROR;
	}
	rocksdb_pinnableslice_destroy(slice);
	return rc;
}

static void batch_forget_rewritten(struct store_batch *b)
{
	for (size_t i = 0; i < b->rewritten_count; i++)
		buf_free(&b->rewritten[i].envelope);
	b->rewritten_count = 0;
}

/* Returns the envelope of hash that this batch rewrote last, or NULL. */
static struct batch_envelope *batch_find_rewritten(struct store_batch *b,
                                                   const uint8_t hash[STEMEDB_HASH_LEN])
{
	for (size_t i = b->rewritten_count; i > 0; i--) {
		if (memcmp(b->rewritten[i - 1].hash, hash, STEMEDB_HASH_LEN) == 0)
			return &b->rewritten[i - 1];
	}
	return NULL;
}

static void batch_remember_rewritten(struct store_batch *b, const uint8_t hash[STEMEDB_HASH_LEN],
                                     const struct buf *envelope)
{
	struct batch_envelope *e = batch_find_rewritten(b, hash);

	if (e == NULL) {
		if (b->rewritten_count == b->rewritten_cap) {
			b->rewritten_cap = b->rewritten_cap ? 2 * b->rewritten_cap : 8;
			b->rewritten =
			        realloc(b->rewritten, b->rewritten_cap * sizeof(*b->rewritten));
			if (b->rewritten == NULL)
				abort();
		}
		e = &b->rewritten[b->rewritten_count++];
		memcpy(e->hash, hash, STEMEDB_HASH_LEN);
		buf_init(&e->envelope);
	}
	buf_reset(&e->envelope);
	buf_append(&e->envelope, envelope->data, envelope->len);
}

/* Loads the current envelope of an assertion: the batch's rewrite if any, else the store's. */
static bool load_current_envelope(struct store *s, struct store_batch *b,
                                  const uint8_t hash[STEMEDB_HASH_LEN], struct assertion *a,
                                  struct hlc_stamp *hlc)
{
	struct batch_envelope *e = batch_find_rewritten(b, hash);
	struct buf stored;
	bool ok;

	if (e != NULL)
		return assertion_decode_envelope(e->envelope.data, e->envelope.len, a, hlc);

	buf_init(&stored);
	ok = store_get_envelope(s, hash, &stored) == STORE_OK &&
	     assertion_decode_envelope(stored.data, stored.len, a, hlc);
	buf_free(&stored);
	return ok;
}

static bool assertion_has_signer(const struct assertion *a,
                                 const uint8_t agent[STEMEDB_AGENT_ID_LEN])
{
	for (size_t i = 0; i < a->signature_count; i++) {
		if (memcmp(a->signatures[i].agent_id, agent, STEMEDB_AGENT_ID_LEN) == 0)
			return true;
	}
	return false;
}

/* Adds the co-signature to the stored assertion: its envelope gets one more signature
 * (the hash does not cover signatures) and its sp_index value is recomputed from the
 * new signer list, under the same key. A signer that is present already, or a full
 * signer list, leaves both unchanged, so applying the record twice changes nothing. */
static void batch_put_cosignature(struct store *s, struct store_batch *b, const struct record *r)
{
	const struct cosignature *cs = &r->u.cosignature;
	struct assertion a;
	struct hlc_stamp hlc;
	struct signature *sig;
	struct buf envelope;

	assertion_init(&a);
	buf_init(&envelope);
	if (!load_current_envelope(s, b, cs->assertion_hash, &a, &hlc)) {
		log_error(
		        "co-signature of assertion %02x%02x... in %s: the assertion is missing or "
		        "unreadable, so only the record is stored",
		        cs->assertion_hash[0], cs->assertion_hash[1], s->path);
		goto done;
	}
	if (assertion_has_signer(&a, cs->agent_id) || a.signature_count >= STEMEDB_SIGNATURES_MAX)
		goto done;

	sig = &a.signatures[a.signature_count++];
	memcpy(sig->agent_id, cs->agent_id, STEMEDB_AGENT_ID_LEN);
	memcpy(sig->signature, r->signers[0].signature, STEMEDB_SIGNATURE_LEN);
	sig->timestamp = cs->timestamp;
	if (!assertion_encode_envelope(&a, &hlc, &envelope))
		goto done;

	/* Rewrites the envelope and the sp_index entry and adds the co-signer's agent view
	 * key; the other view keys are written again unchanged. An assertion held in
	 * quarantine gets only the new envelope, so the co-signature does not index it. */
	bool indexable = true;

	if (store_quarantine_indexable(s, cs->assertion_hash, &indexable) == STORE_OK && !indexable)
		store_batch_put_assertion_unindexed(b, cs->assertion_hash, envelope.data,
		                                    envelope.len);
	else
		store_batch_put_assertion(b, cs->assertion_hash, &a, &hlc, envelope.data,
		                          envelope.len);
	batch_remember_rewritten(b, cs->assertion_hash, &envelope);

done:
	buf_free(&envelope);
	assertion_free(&a);
}

static void batch_put_superseded_by(struct store_batch *b,
                                    const uint8_t superseded[STEMEDB_HASH_LEN],
                                    const uint8_t superseding[STEMEDB_HASH_LEN])
{
	uint8_t key[1 + 2 * STEMEDB_HASH_LEN];

	key[0] = STORE_RECORDS_SUPERSEDED_BY;
	memcpy(key + 1, superseded, STEMEDB_HASH_LEN);
	memcpy(key + 1 + STEMEDB_HASH_LEN, superseding, STEMEDB_HASH_LEN);
	batch_put(b, CF_RECORDS, key, sizeof(key), NULL, 0);
}

void store_alias_prefix(struct buf *out, const char *subject, size_t subject_len)
{
	buf_put_u8(out, STORE_RECORDS_ALIAS);
	buf_put_u8(out, (uint8_t)(subject_len >> 8));
	buf_put_u8(out, (uint8_t)subject_len);
	buf_append(out, subject, subject_len);
}

static void batch_put_alias(struct store_batch *b, const char *subject, size_t subject_len,
                            const char *other, size_t other_len)
{
	struct buf key;

	buf_init(&key);
	store_alias_prefix(&key, subject, subject_len);
	buf_append(&key, other, other_len);
	batch_put(b, CF_RECORDS, key.data, key.len, NULL, 0);
	buf_free(&key);
}

void store_trust_outcome_view_key(const struct trust_outcome_record *t, struct buf *key)
{
	crypto_generichash_state hash;
	uint8_t timestamp_be[8];
	uint8_t outcome = t->accurate ? 1 : 0;
	uint8_t id[STORE_TRUST_OUTCOME_KEY_ID_LEN];

	store_u64be(timestamp_be, t->timestamp);
	crypto_generichash_init(&hash, NULL, 0, sizeof(id));
	crypto_generichash_update(&hash, t->agent_id, STEMEDB_AGENT_ID_LEN);
	crypto_generichash_update(&hash, timestamp_be, sizeof(timestamp_be));
	crypto_generichash_update(&hash, &outcome, 1);
	crypto_generichash_update(&hash, (const uint8_t *)t->note, t->note_len);
	crypto_generichash_final(&hash, id, sizeof(id));

	buf_put_u8(key, STORE_VIEW_TRUST_OUTCOME);
	buf_append(key, t->agent_id, STEMEDB_AGENT_ID_LEN);
	buf_append(key, timestamp_be, sizeof(timestamp_be));
	buf_append(key, id, sizeof(id));
}

/* Writes the trust view key of an outcome record. The value is the outcome byte and the
 * note, as trust outcomes stored before they became WAL records. */
static void batch_put_trust_outcome(struct store_batch *b, const struct trust_outcome_record *t)
{
	struct buf key, value;

	buf_init(&key);
	buf_init(&value);
	store_trust_outcome_view_key(t, &key);
	buf_put_u8(&value, t->accurate ? 1 : 0);
	buf_append(&value, t->note, t->note_len);
	batch_put(b, CF_VIEWS, key.data, key.len, value.data, value.len);
	buf_free(&key);
	buf_free(&value);
}

void store_batch_put_record(struct store *s, struct store_batch *b,
                            const uint8_t id[STEMEDB_HASH_LEN], const struct record *r,
                            const uint8_t *envelope, size_t envelope_len)
{
	uint8_t key[1 + STEMEDB_HASH_LEN];
	uint8_t vote_key[STORE_VOTE_KEY_LEN];
	uint8_t weight[4];

	record_key(r->type, id, key);
	batch_put(b, CF_RECORDS, key, sizeof(key), envelope, envelope_len);
	if (r->type == STEMEDB_RECORD_COSIGNATURE)
		batch_put_cosignature(s, b, r);
	if (r->type == STEMEDB_RECORD_EPOCH && r->u.epoch.has_supersedes)
		batch_put_superseded_by(b, r->u.epoch.supersedes, id);
	if (r->type == STEMEDB_RECORD_ALIAS) {
		batch_put_alias(b, r->u.alias.subject_a, r->u.alias.subject_a_len,
		                r->u.alias.subject_b, r->u.alias.subject_b_len);
		batch_put_alias(b, r->u.alias.subject_b, r->u.alias.subject_b_len,
		                r->u.alias.subject_a, r->u.alias.subject_a_len);
	}
	if (r->type == STEMEDB_RECORD_TRUST_OUTCOME)
		batch_put_trust_outcome(b, &r->u.trust_outcome);
	if (r->type != STEMEDB_RECORD_VOTE)
		return;

	memcpy(vote_key, r->u.vote.assertion_hash, STEMEDB_HASH_LEN);
	memcpy(vote_key + STEMEDB_HASH_LEN, r->u.vote.voter, STEMEDB_AGENT_ID_LEN);
	store_u64be(vote_key + 2 * STEMEDB_HASH_LEN, r->u.vote.timestamp);
	memcpy(vote_key + 2 * STEMEDB_HASH_LEN + 8, id, STEMEDB_HASH_LEN);
	store_u32le(weight, (uint32_t)r->u.vote.weight_micro);
	batch_put(b, CF_VOTES, vote_key, sizeof(vote_key), weight, sizeof(weight));
}

/* Reports the finished run of one voter's keys, whose last key is the counted vote. */
static bool report_voter(const uint8_t *key, const uint8_t *value, uint64_t superseded,
                         bool (*fn)(void *ctx, const struct store_vote *vote), void *ctx)
{
	struct store_vote vote;

	memcpy(vote.voter, key + STEMEDB_HASH_LEN, STEMEDB_AGENT_ID_LEN);
	vote.timestamp = load_u64be(key + 2 * STEMEDB_HASH_LEN);
	memcpy(vote.id, key + 2 * STEMEDB_HASH_LEN + 8, STEMEDB_HASH_LEN);
	vote.weight_micro = (int32_t)load_u32le(value);
	vote.superseded = superseded;
	return fn(ctx, &vote);
}

enum store_result store_scan_votes(struct store *s, const uint8_t assertion_hash[STEMEDB_HASH_LEN],
                                   bool (*fn)(void *ctx, const struct store_vote *vote), void *ctx)
{
	rocksdb_iterator_t *it =
	        rocksdb_create_iterator_cf(s->db, s->read_options, s->cf[CF_VOTES]);
	uint8_t last_key[STORE_VOTE_KEY_LEN];
	uint8_t last_value[4];
	uint64_t superseded = 0;
	bool have_last = false;
	bool go_on = true;
	char *error = NULL;

	rocksdb_iter_seek(it, (const char *)assertion_hash, STEMEDB_HASH_LEN);
	for (; go_on && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t key_len, value_len;
		const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &key_len);
		const uint8_t *value = (const uint8_t *)rocksdb_iter_value(it, &value_len);

		if (key_len != STORE_VOTE_KEY_LEN || value_len != 4 ||
		    memcmp(key, assertion_hash, STEMEDB_HASH_LEN) != 0)
			break;
		if (have_last && memcmp(last_key + STEMEDB_HASH_LEN, key + STEMEDB_HASH_LEN,
		                        STEMEDB_AGENT_ID_LEN) != 0) {
			go_on = report_voter(last_key, last_value, superseded, fn, ctx);
			superseded = 0;
		} else if (have_last) {
			superseded++;
		}
		memcpy(last_key, key, key_len);
		memcpy(last_value, value, value_len);
		have_last = true;
	}
	if (go_on && have_last)
		report_voter(last_key, last_value, superseded, fn, ctx);

	rocksdb_iter_get_error(it, &error);
	rocksdb_iter_destroy(it);
	if (error != NULL) {
		log_error("scanning the votes of an assertion in %s failed: %s", s->path, error);
		rocksdb_free(error);
		return STORE_ERROR;
	}
	return STORE_OK;
}

/* ---- subject prefix scans over sp_index ---- */

/* Splits an sp_index key into its subject and predicate; false when it has no two NULs. */
static bool split_index_key(const char *key, size_t key_len, size_t *subject_len,
                            const char **predicate, size_t *predicate_len)
{
	const char *first = memchr(key, 0, key_len);
	const char *second;

	if (first == NULL)
		return false;
	*subject_len = (size_t)(first - key);
	*predicate = first + 1;
	second = memchr(*predicate, 0, key_len - *subject_len - 1);
	if (second == NULL)
		return false;
	*predicate_len = (size_t)(second - *predicate);
	return true;
}

/* Seeks to the first key of the next pair to visit after the pair at the iterator:
 * the same subject's filter predicate when it sorts later, else the next subject. */
static void seek_next_pair(rocksdb_iterator_t *it, const char *key, size_t subject_len,
                           const char *predicate, size_t predicate_len,
                           const struct store_pair_filter *filter, struct buf *target)
{
	buf_reset(target);
	buf_append(target, key, subject_len);
	buf_put_u8(target, 0);
	if (filter->predicate == NULL) {
		buf_append(target, predicate, predicate_len);
		buf_put_u8(target, 1);
	} else if (strncmp(predicate, filter->predicate,
	                   predicate_len < filter->predicate_len ? predicate_len
	                                                         : filter->predicate_len) < 0 ||
	           (predicate_len < filter->predicate_len &&
	            memcmp(predicate, filter->predicate, predicate_len) == 0)) {
		buf_append(target, filter->predicate, filter->predicate_len);
		buf_put_u8(target, 0);
	} else {
		target->data[target->len - 1] = 1;
	}
	rocksdb_iter_seek(it, (const char *)target->data, target->len);
}

static bool pair_matches(const struct store_pair_filter *filter, const char *predicate,
                         size_t predicate_len)
{
	return filter->predicate == NULL ||
	       (predicate_len == filter->predicate_len &&
	        memcmp(predicate, filter->predicate, predicate_len) == 0);
}

enum store_result store_subject_prefix_pairs(struct store *s,
                                             const struct store_pair_filter *filter,
                                             store_pair_fn fn, void *ctx)
{
	rocksdb_readoptions_t *options = rocksdb_readoptions_create();
	enum store_result rc = STORE_OK;
	struct buf upper, target;
	rocksdb_iterator_t *it;
	char *error = NULL;

	buf_init(&upper);
	buf_init(&target);
	if (prefix_end((const uint8_t *)filter->subject_prefix, filter->subject_prefix_len, &upper))
		rocksdb_readoptions_set_iterate_upper_bound(options, (const char *)upper.data,
		                                            upper.len);
	it = rocksdb_create_iterator_cf(s->db, options, s->cf[CF_SP_INDEX]);
	if (filter->after != NULL) {
		buf_append(&target, filter->after, filter->after_len);
		buf_put_u8(&target, 1);
		rocksdb_iter_seek(it, (const char *)target.data, target.len);
	} else {
		rocksdb_iter_seek(it, filter->subject_prefix, filter->subject_prefix_len);
	}

	while (rocksdb_iter_valid(it)) {
		size_t key_len, subject_len, predicate_len;
		const char *key = rocksdb_iter_key(it, &key_len);
		const char *predicate;

		if (!split_index_key(key, key_len, &subject_len, &predicate, &predicate_len)) {
			log_error("an index key of %zu bytes in %s does not match the layout",
			          key_len, s->path);
			rc = STORE_ERROR;
			break;
		}
		if (pair_matches(filter, predicate, predicate_len) &&
		    !fn(ctx, key, subject_len, predicate, predicate_len))
			break;
		seek_next_pair(it, key, subject_len, predicate, predicate_len, filter, &target);
	}

	rocksdb_iter_get_error(it, &error);
	if (error != NULL) {
		log_error("scanning subjects under a prefix in %s failed: %s", s->path, error);
		rocksdb_free(error);
		rc = STORE_ERROR;
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(options);
	buf_free(&upper);
	buf_free(&target);
	return rc;
}

/* ---- protection state (column family "protect") ---- */

enum store_result store_protect_put(struct store *s, const void *key, size_t key_len,
                                    const void *value, size_t value_len)
{
	rocksdb_writeoptions_t *options = rocksdb_writeoptions_create();
	char *error = NULL;

	/* Protection state is in no StemeDB WAL: sync RocksDB's WAL before returning. */
	rocksdb_writeoptions_set_sync(options, 1);
	rocksdb_put_cf(s->db, options, s->cf[CF_PROTECT], key, key_len, value, value_len, &error);
	rocksdb_writeoptions_destroy(options);
	if (error != NULL) {
		log_error("rocksdb_put_cf() of protection state to %s failed: %s", s->path, error);
		rocksdb_free(error);
		return STORE_ERROR;
	}
	return STORE_OK;
}

enum store_result store_protect_delete(struct store *s, const void *key, size_t key_len)
{
	rocksdb_writeoptions_t *options = rocksdb_writeoptions_create();
	char *error = NULL;

	rocksdb_writeoptions_set_sync(options, 1);
	rocksdb_delete_cf(s->db, options, s->cf[CF_PROTECT], key, key_len, &error);
	rocksdb_writeoptions_destroy(options);
	if (error != NULL) {
		log_error("rocksdb_delete_cf() of protection state in %s failed: %s", s->path,
		          error);
		rocksdb_free(error);
		return STORE_ERROR;
	}
	return STORE_OK;
}

enum store_result store_protect_get(struct store *s, const void *key, size_t key_len,
                                    struct buf *value)
{
	rocksdb_pinnableslice_t *slice;
	enum store_result rc = get_pinned(s, CF_PROTECT, key, key_len, &slice);
	const char *data;
	size_t len;

	if (rc != STORE_OK)
		return rc;
	data = rocksdb_pinnableslice_value(slice, &len);
	buf_reset(value);
	buf_append(value, data, len);
	rocksdb_pinnableslice_destroy(slice);
	return STORE_OK;
}

enum store_result store_protect_scan(struct store *s, const void *prefix, size_t prefix_len,
                                     store_key_fn fn, void *ctx)
{
	rocksdb_readoptions_t *options = rocksdb_readoptions_create();
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, options, s->cf[CF_PROTECT]);
	enum store_result rc = STORE_OK;
	char *error = NULL;

	for (rocksdb_iter_seek(it, prefix, prefix_len); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it)) {
		size_t key_len, value_len;
		const char *key = rocksdb_iter_key(it, &key_len);
		const char *value = rocksdb_iter_value(it, &value_len);

		if (key_len < prefix_len || memcmp(key, prefix, prefix_len) != 0)
			break;
		if (!fn(ctx, (const uint8_t *)key, key_len, (const uint8_t *)value, value_len))
			break;
	}
	rocksdb_iter_get_error(it, &error);
	if (error != NULL) {
		log_error("scanning protection state in %s failed: %s", s->path, error);
		rocksdb_free(error);
		rc = STORE_ERROR;
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(options);
	return rc;
}

struct store_protect_view {
	struct store *store;
	rocksdb_readoptions_t *options;
	rocksdb_iterator_t *it;
};

struct store_protect_view *store_protect_view_new(struct store *s)
{
	struct store_protect_view *v = calloc(1, sizeof(*v));

	if (v == NULL)
		abort();
	v->store = s;
	v->options = rocksdb_readoptions_create();
	v->it = rocksdb_create_iterator_cf(s->db, v->options, s->cf[CF_PROTECT]);
	return v;
}

void store_protect_view_free(struct store_protect_view *v)
{
	if (v == NULL)
		return;
	rocksdb_iter_destroy(v->it);
	rocksdb_readoptions_destroy(v->options);
	free(v);
}

enum store_result store_protect_view_scan(struct store_protect_view *v, const void *prefix,
                                          size_t prefix_len, store_key_fn fn, void *ctx)
{
	char *error = NULL;

	for (rocksdb_iter_seek(v->it, prefix, prefix_len); rocksdb_iter_valid(v->it);
	     rocksdb_iter_next(v->it)) {
		size_t key_len, value_len;
		const char *key = rocksdb_iter_key(v->it, &key_len);
		const char *value = rocksdb_iter_value(v->it, &value_len);

		if (key_len < prefix_len || memcmp(key, prefix, prefix_len) != 0)
			break;
		if (!fn(ctx, (const uint8_t *)key, key_len, (const uint8_t *)value, value_len))
			break;
	}
	rocksdb_iter_get_error(v->it, &error);
	if (error != NULL) {
		log_error("scanning protection state in %s failed: %s", v->store->path, error);
		rocksdb_free(error);
		return STORE_ERROR;
	}
	return STORE_OK;
}
