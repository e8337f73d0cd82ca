#ifndef STEMEDB_STORE_H
#define STEMEDB_STORE_H

/* RocksDB storage of stemedb-api: assertions by hash, the subject/predicate index that
 * lenses scan, and the WAL cursor. docs/storage.md lists every column family and key.
 * Writes come only from the commit thread; reads from any thread. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "candidate.h"
#include "stemedb/assertion.h"
#include "stemedb/buf.h"

enum store_result { STORE_OK = 0, STORE_NOT_FOUND, STORE_ERROR };

struct store;
struct store_batch;

/* Opens (creating if needed) the database in path. On failure returns NULL and writes
 * a message that names the path and RocksDB's error into err. */
struct store *store_open(const char *path, char *err, size_t err_size);
void store_close(struct store *s);

/* Global WAL offset just past the last record applied, 0 for a new database. */
enum store_result store_get_cursor(struct store *s, uint64_t *cursor);

enum store_result store_has_assertion(struct store *s, const uint8_t hash[STEMEDB_HASH_LEN]);

/* Reads one assertion with its signatures and HLC stamp into a (initialized). */
enum store_result store_get_assertion(struct store *s, const uint8_t hash[STEMEDB_HASH_LEN],
                                      struct assertion *a, struct hlc_stamp *hlc);

/* Appends to out the candidates of one (subject, predicate) with timestamp <= as_of,
 * oldest first. The scan stops at the first later key. limit 0 means no limit. */
enum store_result store_scan_candidates(struct store *s, const char *subject, size_t subject_len,
                                        const char *predicate, size_t predicate_len, uint64_t as_of,
                                        size_t limit, struct candidate_list *out);

/* Calls fn once per predicate of subject, in byte order, with the number of stored
 * assertions for it. Stops early when fn returns false. */
enum store_result store_subject_predicates(struct store *s, const char *subject, size_t subject_len,
                                           bool (*fn)(void *ctx, const char *predicate,
                                                      size_t predicate_len, uint64_t count),
                                           void *ctx);

/* Number of stored assertions, counted at open and kept up to date by commits. */
uint64_t store_assertion_count(struct store *s);

/* Approximate on-disk size of the live data, from RocksDB properties. */
uint64_t store_disk_bytes(struct store *s);

/* A write batch: records, index keys and the WAL cursor, applied atomically. */
struct store_batch *store_batch_new(void);
void store_batch_free(struct store_batch *b);
void store_batch_clear(struct store_batch *b);
/* envelope: the encoded assertion envelope (assertion_encode_envelope). */
void store_batch_put_assertion(struct store_batch *b, const uint8_t hash[STEMEDB_HASH_LEN],
                               const struct assertion *a, const struct hlc_stamp *hlc,
                               const uint8_t *envelope, size_t envelope_len);
void store_batch_set_cursor(struct store_batch *b, uint64_t cursor);
/* Applies the batch. new_assertions is how many of the put assertions were not stored
 * before; the caller (the single writer) has checked that, and it updates the count. */
enum store_result store_batch_commit(struct store *s, struct store_batch *b,
                                     uint64_t new_assertions, char *err, size_t err_size);

/* Flushes memtables so that everything applied so far survives without the WAL. */
enum store_result store_flush(struct store *s, char *err, size_t err_size);

/* Archived WAL watermark (key "wal_archived" in the default column family): the global
 * offset up to which sealed segments are archived. 0 when never set. The put skips
 * RocksDB's own WAL like every other write, so a crash can lose a recent value.
 * The watermark then moves back, which only keeps segments longer. */
enum store_result store_get_archived_watermark(struct store *s, uint64_t *watermark);
enum store_result store_set_archived_watermark(struct store *s, uint64_t watermark, char *err,
                                               size_t err_size);

/* Appends the stored envelope of one assertion to out. */
enum store_result store_get_envelope(struct store *s, const uint8_t hash[STEMEDB_HASH_LEN],
                                     struct buf *out);

/* Compacts the whole key range of every column family; blocks until done. */
enum store_result store_compact(struct store *s);

/* Flushes, then writes a RocksDB checkpoint into dir (which must not exist; hard links
 * need the same file system). Reads back the WAL cursor and assertion count that the
 * checkpoint contains. */
enum store_result store_checkpoint(struct store *s, const char *dir, uint64_t *cursor,
                                   uint64_t *count, char *err, size_t err_size);

/* Rewrites the sp_index entry of every stored assertion in batches, then deletes every
 * index key that no stored assertion produces. Concurrent commits stay correct, because
 * they write an assertion and its index key in one batch and both phases only write
 * what the stored assertions imply. *done counts the assertions indexed so far. */
enum store_result store_rebuild_index(struct store *s, _Atomic uint64_t *done, char *err,
                                      size_t err_size);

#endif
