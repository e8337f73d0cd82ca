/* Offline reads and checks of a RocksDB directory written by stemedb-api. The key
 * layout is the one in docs/storage.md: "default" contains wal_cursor (u64 LE),
 * "assertions" maps hash -> envelope, and "sp_index" keys are subject, 0x00, predicate,
 * 0x00, timestamp u64 BE and hash. */

#include <inttypes.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_backup.h"
#include "stemedb/assertion.h"
#include "stemedb/buf.h"
#include "stemedb/hex.h"

#define CURSOR_KEY "wal_cursor"

enum known_cf { CF_DEFAULT = 0, CF_ASSERTIONS, CF_SP_INDEX, CF_KNOWN };
static const char *const KNOWN_NAMES[CF_KNOWN] = {"default", "assertions", "sp_index"};

struct ctl_db {
	char *path;
	rocksdb_t *db;
	rocksdb_options_t *options;
	rocksdb_readoptions_t *read_options;
	char **cf_names;
	size_t cf_count;
	rocksdb_column_family_handle_t **handles;
	rocksdb_column_family_handle_t *cf[CF_KNOWN];
};

/* Opens every column family of the database, so that one added by a later version
 * does not make the open fail. The three known ones are looked up by name. */
static bool open_families(struct ctl_db *d, const char *secondary_dir)
{
	const rocksdb_options_t **cf_options = calloc(d->cf_count, sizeof(*cf_options));
	char *error = NULL;

	if (cf_options == NULL)
		abort();
	for (size_t i = 0; i < d->cf_count; i++)
		cf_options[i] = d->options;
	d->handles = calloc(d->cf_count, sizeof(*d->handles));
	if (d->handles == NULL)
		abort();

	if (secondary_dir != NULL)
		d->db = rocksdb_open_as_secondary_column_families(
		        d->options, d->path, secondary_dir, (int)d->cf_count,
		        (const char *const *)d->cf_names, cf_options, d->handles, &error);
	else
		d->db = rocksdb_open_for_read_only_column_families(
		        d->options, d->path, (int)d->cf_count, (const char *const *)d->cf_names,
		        cf_options, d->handles, 0, &error);
	free(cf_options);
	if (error != NULL) {
		ctl_error("opening the RocksDB database %s %s failed: %s", d->path,
		          secondary_dir != NULL ? "as a secondary instance" : "read-only", error);
		rocksdb_free(error);
		return false;
	}
	return true;
}

static bool find_known(struct ctl_db *d)
{
	for (size_t k = 0; k < CF_KNOWN; k++) {
		for (size_t i = 0; i < d->cf_count; i++) {
			if (strcmp(d->cf_names[i], KNOWN_NAMES[k]) == 0)
				d->cf[k] = d->handles[i];
		}
		if (d->cf[k] == NULL) {
			ctl_error("%s has no column family \"%s\"; it is not a StemeDB database",
			          d->path, KNOWN_NAMES[k]);
			return false;
		}
	}
	return true;
}

struct ctl_db *ctl_db_open(const char *path, const char *secondary_dir, const char *log_dir)
{
	struct ctl_db *d = calloc(1, sizeof(*d));
	char *error = NULL;

	if (d == NULL)
		abort();
	d->path = strdup(path);
	d->options = rocksdb_options_create();
	rocksdb_options_set_db_log_dir(d->options, log_dir);
	/* A secondary instance must keep every table file open to follow the primary. */
	rocksdb_options_set_max_open_files(d->options, -1);
	d->read_options = rocksdb_readoptions_create();
	rocksdb_readoptions_set_fill_cache(d->read_options, 0);

	d->cf_names = rocksdb_list_column_families(d->options, path, &d->cf_count, &error);
	if (error != NULL) {
		ctl_error("listing the column families of %s failed: %s", path, error);
		rocksdb_free(error);
		ctl_db_close(d);
		return NULL;
	}
	if (!open_families(d, secondary_dir) || !find_known(d)) {
		ctl_db_close(d);
		return NULL;
	}
	return d;
}

void ctl_db_close(struct ctl_db *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; d->handles != NULL && i < d->cf_count; i++) {
		if (d->handles[i] != NULL)
			rocksdb_column_family_handle_destroy(d->handles[i]);
	}
	if (d->db != NULL)
		rocksdb_close(d->db);
	if (d->cf_names != NULL)
		rocksdb_list_column_families_destroy(d->cf_names, d->cf_count);
	rocksdb_readoptions_destroy(d->read_options);
	rocksdb_options_destroy(d->options);
	free(d->handles);
	free(d->path);
	free(d);
}

static bool read_cursor(struct ctl_db *d, uint64_t *cursor)
{
	char *error = NULL;
	size_t len = 0;
	char *value = rocksdb_get_cf(d->db, d->read_options, d->cf[CF_DEFAULT], CURSOR_KEY,
	                             strlen(CURSOR_KEY), &len, &error);

	*cursor = 0;
	if (error != NULL) {
		ctl_error("reading the WAL cursor of %s failed: %s", d->path, error);
		rocksdb_free(error);
		return false;
	}
	if (value != NULL && len == 8)
		*cursor = load_u64le((const uint8_t *)value);
	else if (value != NULL)
		ctl_error("the WAL cursor of %s is %zu bytes long instead of 8", d->path, len);
	rocksdb_free(value);
	return value == NULL || len == 8;
}

/* Calls fn for every key of a column family; stops early when fn returns false. */
static bool scan_family(struct ctl_db *d, enum known_cf cf,
                        bool (*fn)(void *ctx, const uint8_t *key, size_t key_len,
                                   const uint8_t *value, size_t value_len),
                        void *ctx)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(d->db, d->read_options, d->cf[cf]);
	char *error = NULL;
	bool more = true;

	for (rocksdb_iter_seek_to_first(it); more && rocksdb_iter_valid(it);
	     rocksdb_iter_next(it)) {
		size_t key_len, value_len;
		const char *key = rocksdb_iter_key(it, &key_len);
		const char *value = rocksdb_iter_value(it, &value_len);

		more = fn(ctx, (const uint8_t *)key, key_len, (const uint8_t *)value, value_len);
	}
	rocksdb_iter_get_error(it, &error);
	rocksdb_iter_destroy(it);
	if (error != NULL) {
		ctl_error("reading column family %s of %s failed: %s", KNOWN_NAMES[cf], d->path,
		          error);
		rocksdb_free(error);
		return false;
	}
	return true;
}

/* The HLC wall time is at the end of the envelope: wall_ms u64, logical u32, node
 * id 16 bytes. */
static uint64_t envelope_wall_ms(const uint8_t *value, size_t len)
{
	return len >= 28 ? load_u64le(value + len - 28) : 0;
}

static bool count_assertion(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                            size_t value_len)
{
	struct ctl_db_summary *s = ctx;
	uint64_t wall = envelope_wall_ms(value, value_len);

	(void)key;
	(void)key_len;
	s->assertions++;
	if (wall > s->max_hlc_wall_ms)
		s->max_hlc_wall_ms = wall;
	return true;
}

bool ctl_db_summarize(struct ctl_db *d, struct ctl_db_summary *out)
{
	memset(out, 0, sizeof(*out));
	return read_cursor(d, &out->cursor) && scan_family(d, CF_ASSERTIONS, count_assertion, out);
}

struct check_ctx {
	struct ctl_db *d;
	struct ctl_db_summary *summary;
	struct ctl_problems *problems;
	struct buf key;
};

/* Builds the sp_index key that the assertion with these bytes must have. */
static bool expected_index_key(const uint8_t *envelope, size_t len, const uint8_t hash[32],
                               struct buf *key)
{
	struct assertion a;
	struct hlc_stamp hlc;
	bool ok;

	assertion_init(&a);
	ok = assertion_decode_envelope(envelope, len, &a, &hlc);
	if (ok) {
		buf_reset(key);
		buf_append(key, a.subject, a.subject_len);
		buf_put_u8(key, 0);
		buf_append(key, a.predicate, a.predicate_len);
		buf_put_u8(key, 0);
		buf_put_u64be(key, a.timestamp);
		buf_append(key, hash, STEMEDB_HASH_LEN);
	}
	assertion_free(&a);
	return ok;
}

static bool key_exists(struct ctl_db *d, enum known_cf cf, const uint8_t *key, size_t len)
{
	char *error = NULL;
	size_t value_len = 0;
	char *value = rocksdb_get_cf(d->db, d->read_options, d->cf[cf], (const char *)key, len,
	                             &value_len, &error);
	bool found = value != NULL;

	if (error != NULL) {
		ctl_error("reading column family %s of %s failed: %s", KNOWN_NAMES[cf], d->path,
		          error);
		rocksdb_free(error);
	}
	rocksdb_free(value);
	return found;
}

static bool check_assertion(void *arg, const uint8_t *key, size_t key_len, const uint8_t *value,
                            size_t value_len)
{
	struct check_ctx *c = arg;
	char key_hex[65] = "(malformed key)", why[256];
	uint8_t hash[32];
	uint64_t wall = 0;

	count_assertion(c->summary, key, key_len, value, value_len);
	if (key_len == STEMEDB_HASH_LEN)
		hex_encode(key, key_len, key_hex);
	if (key_len != STEMEDB_HASH_LEN) {
		ctl_problem(c->problems, "assertions has a key of %zu bytes instead of 32",
		            key_len);
		return true;
	}
	if (!ctl_check_envelope(value, value_len, hash, &wall, why, sizeof(why))) {
		ctl_problem(c->problems, "stored assertion %s: %s", key_hex, why);
		return true;
	}
	if (memcmp(hash, key, STEMEDB_HASH_LEN) != 0) {
		ctl_problem(c->problems, "stored assertion %s: its bytes hash to a different value",
		            key_hex);
		return true;
	}
	if (!expected_index_key(value, value_len, hash, &c->key) ||
	    !key_exists(c->d, CF_SP_INDEX, c->key.data, c->key.len))
		ctl_problem(c->problems, "stored assertion %s has no sp_index entry", key_hex);
	return true;
}

static bool check_index_entry(void *arg, const uint8_t *key, size_t key_len, const uint8_t *value,
                              size_t value_len)
{
	struct check_ctx *c = arg;
	const uint8_t *hash = key + key_len - STEMEDB_HASH_LEN;
	char hash_hex[65];
	char *envelope;
	size_t envelope_len = 0;
	char *error = NULL;

	(void)value;
	(void)value_len;
	c->summary->index_entries++;
	if (key_len < 2 + 2 + 8 + STEMEDB_HASH_LEN) {
		ctl_problem(c->problems, "sp_index has a key of %zu bytes, too short", key_len);
		return true;
	}
	hex_encode(hash, STEMEDB_HASH_LEN, hash_hex);
	envelope = rocksdb_get_cf(c->d->db, c->d->read_options, c->d->cf[CF_ASSERTIONS],
	                          (const char *)hash, STEMEDB_HASH_LEN, &envelope_len, &error);
	rocksdb_free(error);
	if (envelope == NULL) {
		ctl_problem(c->problems, "sp_index entry for %s points to no stored assertion",
		            hash_hex);
		return true;
	}
	if (!expected_index_key((const uint8_t *)envelope, envelope_len, hash, &c->key) ||
	    c->key.len != key_len || memcmp(c->key.data, key, key_len) != 0)
		ctl_problem(c->problems,
		            "sp_index entry for %s does not match the stored assertion's subject, "
		            "predicate or timestamp",
		            hash_hex);
	rocksdb_free(envelope);
	return true;
}

bool ctl_db_check(struct ctl_db *d, struct ctl_db_summary *out, struct ctl_problems *problems)
{
	struct check_ctx c = {.d = d, .summary = out, .problems = problems};
	bool ok;

	memset(out, 0, sizeof(*out));
	buf_init(&c.key);
	ok = read_cursor(d, &out->cursor) && scan_family(d, CF_ASSERTIONS, check_assertion, &c) &&
	     scan_family(d, CF_SP_INDEX, check_index_entry, &c);
	buf_free(&c.key);
	return ok;
}
