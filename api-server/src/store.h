#ifndef STEMEDB_STORE_H
#define STEMEDB_STORE_H

/* RocksDB storage of stemedb-api: assertions by hash, the subject/predicate index that
 * lenses scan, and the WAL cursor. docs/storage.md lists every column family and key.
 * Writes come only from the commit thread, except audit records (store_audit_write);
 * reads from any thread. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "candidate.h"
#include "stemedb/assertion.h"
#include "stemedb/buf.h"
#include "stemedb/records.h"

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
/* Puts only the assertion record, without its sp_index and view keys, so that no lens,
 * feed or trace finds it (a quarantined assertion). */
void store_batch_put_assertion_unindexed(struct store_batch *b,
                                         const uint8_t hash[STEMEDB_HASH_LEN],
                                         const uint8_t *envelope, size_t envelope_len);
/* Puts the sp_index and view keys of a stored assertion, read from s, but not its
 * record: after a crash that loses the record, WAL replay stores it again. */
enum store_result store_batch_put_index(struct store *s, struct store_batch *b,
                                        const uint8_t hash[STEMEDB_HASH_LEN]);
/* Puts one key of the protect column family, applied with the rest of the batch. */
void store_batch_put_protect(struct store_batch *b, const void *key, size_t key_len,
                             const void *value, size_t value_len);
void store_batch_set_cursor(struct store_batch *b, uint64_t cursor);
/* Applies the batch. new_assertions is how many of the put assertions were not stored
 * before; the caller (the single writer) has checked that, and it updates the count. */
enum store_result store_batch_commit(struct store *s, struct store_batch *b,
                                     uint64_t new_assertions, char *err, size_t err_size);

/* Applies the batch through RocksDB's WAL and syncs it before returning, for changes
 * that no StemeDB WAL record carries (quarantine decisions). */
enum store_result store_batch_commit_durable(struct store *s, struct store_batch *b, char *err,
                                             size_t err_size);

/* Quarantine state that the store itself reads: 'q' || hash in the protect family,
 * whose value has the status at byte STORE_QUARANTINE_STATUS_AT (0 pending,
 * 1 approved, 2 rejected). defense.h defines the rest of the value. */
#define STORE_PROTECT_QUARANTINE   'q'
#define STORE_QUARANTINE_STATUS_AT 2
#define STORE_QUARANTINE_APPROVED  1
/* STORE_OK with *indexable false when hash has a pending or rejected quarantine entry. */
enum store_result store_quarantine_indexable(struct store *s, const uint8_t hash[STEMEDB_HASH_LEN],
                                             bool *indexable);

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

/* Rewrites the sp_index entry of every stored assertion that is not in quarantine
 * (pending or rejected) in batches, then deletes every
 * index key that no stored assertion produces. Concurrent commits stay correct, because
 * they write an assertion and its index key in one batch and both phases only write
 * what the stored assertions imply. *done counts the assertions indexed so far. */
enum store_result store_rebuild_index(struct store *s, _Atomic uint64_t *done, char *err,
                                      size_t err_size);

/* ---- views ----
 * Secondary indexes in column family "views", written with each assertion in the same
 * batch. Values are empty. The first key byte names the index:
 *   'c' parent hash (32 B), child hash (32 B): assertions that revise parent
 *   'a' agent id (32 B), timestamp u64 BE, hash (32 B): one key per signer
 *   'f' HLC wall ms u64 BE, HLC logical u32 BE, hash (32 B): ingest order
 * Assertions stored before these indexes existed get their view keys from
 * store_rebuild_index. */
#define STORE_VIEW_CHILDREN 'c'
#define STORE_VIEW_AGENT    'a'
#define STORE_VIEW_FEED     'f'

/* Appends the ingest-order key of an assertion. */
void store_feed_key(struct buf *out, uint64_t wall_ms, uint32_t logical,
                    const uint8_t hash[STEMEDB_HASH_LEN]);

enum store_index { STORE_INDEX_VIEWS = 0, STORE_INDEX_AUDIT, STORE_INDEX_RECORDS };

/* A range scan over the keys of one family that start with prefix. Without after, it
 * starts at the first key (or the last when reverse); with after, just past that key
 * in the scan direction, so a page can resume from the last key it returned. */
struct store_scan {
	enum store_index family;
	const uint8_t *prefix;
	size_t prefix_len;
	const uint8_t *after;
	size_t after_len;
	bool reverse;
};

/* Called once per key in scan order; returning false stops the scan. */
typedef bool (*store_key_fn)(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                             size_t value_len);

enum store_result store_index_scan(struct store *s, const struct store_scan *scan, store_key_fn fn,
                                   void *ctx);

/* Audit records: buffered in a store_batch and written with store_audit_write, outside
 * the commit thread. Those writes go through RocksDB's WAL without syncing it. */
void store_batch_put_audit(struct store_batch *b, const void *key, size_t key_len,
                           const void *value, size_t value_len);
void store_batch_delete_audit(struct store_batch *b, const void *key, size_t key_len);
enum store_result store_audit_write(struct store *s, const struct store_batch *b);

/* ---- signed records other than assertions (records.h) ----
 * Column family "records": type byte (0x02..0x06) || id -> record envelope, plus index
 * keys with empty values whose first byte is not a record type:
 *   0x83 superseded epoch id (32 B), superseding epoch id (32 B)
 *   0x86 subject length u16 BE, subject, aliased subject: one key each way per alias
 * store_index_scan with STORE_INDEX_RECORDS reads them. */
#define STORE_RECORDS_SUPERSEDED_BY 0x83
#define STORE_RECORDS_ALIAS         0x86

/* Appends 0x86, the subject length (u16 BE) and the subject: the prefix of the alias
 * keys of one subject, followed in each key by the aliased subject. */
void store_alias_prefix(struct buf *out, const char *subject, size_t subject_len);

enum store_result store_has_record(struct store *s, uint8_t type,
                                   const uint8_t id[STEMEDB_HASH_LEN]);
/* Reads one record with its signers and HLC stamp into r (initialized). */
enum store_result store_get_record(struct store *s, uint8_t type,
                                   const uint8_t id[STEMEDB_HASH_LEN], struct record *r,
                                   struct hlc_stamp *hlc);
/* Puts the record envelope and, for a vote, its key in the votes column family. A
 * co-signature also adds its signature to the stored assertion's envelope and sp_index
 * entry (read from s, or from an earlier co-signature in the same batch), so the
 * assertion must be stored before the batch that carries the co-signature. */
void store_batch_put_record(struct store *s, struct store_batch *b,
                            const uint8_t id[STEMEDB_HASH_LEN], const struct record *r,
                            const uint8_t *envelope, size_t envelope_len);

/* The counted vote of one voter on an assertion: the latest by timestamp, then by the
 * larger vote id. superseded counts that voter's earlier votes. */
struct store_vote {
	uint8_t voter[STEMEDB_AGENT_ID_LEN];
	uint8_t id[STEMEDB_HASH_LEN];
	int32_t weight_micro;
	uint64_t timestamp;
	uint64_t superseded;
};

/* Calls fn with the counted vote of every voter on assertion_hash, in voter byte order.
 * Stops early when fn returns false. */
enum store_result store_scan_votes(struct store *s, const uint8_t assertion_hash[STEMEDB_HASH_LEN],
                                   bool (*fn)(void *ctx, const struct store_vote *vote), void *ctx);

/* A scan over the (subject, predicate) pairs of sp_index whose subject starts with
 * subject_prefix (bytes, not path segments). predicate, when not NULL, keeps only that
 * predicate. after, when not NULL, is "subject 0x00 predicate" of the last pair already
 * returned, and the scan resumes after it. */
struct store_pair_filter {
	const char *subject_prefix;
	size_t subject_prefix_len;
	const char *predicate;
	size_t predicate_len;
	const uint8_t *after;
	size_t after_len;
};

/* Called once per pair in key order; the strings are not NUL-terminated and live only
 * during the call. Returning false stops the scan. */
typedef bool (*store_pair_fn)(void *ctx, const char *subject, size_t subject_len,
                              const char *predicate, size_t predicate_len);

/* Visits each pair once, seeking past the rest of its keys instead of reading them. */
enum store_result store_subject_prefix_pairs(struct store *s,
                                             const struct store_pair_filter *filter,
                                             store_pair_fn fn, void *ctx);

/* Views key of a trust outcome: 'o', agent id, timestamp u64 BE, then the first 16 bytes
 * of BLAKE2b-128 over agent id, timestamp u64 BE, outcome u8 and note. The value is the
 * outcome byte (1 accurate, 0 inaccurate) and the note. Stores written before outcomes
 * became WAL records hold the same keys, so an outcome recorded both before and after
 * an upgrade is counted once. */
#define STORE_VIEW_TRUST_OUTCOME       'o'
#define STORE_TRUST_OUTCOME_KEY_ID_LEN 16
void store_trust_outcome_view_key(const struct trust_outcome_record *t, struct buf *key);

/* Column family "protect" contains the state of the protection layers (API keys, circuit
 * breakers, quarantine). Each key starts with a one-byte kind listed in
 * docs/storage.md. Writes sync RocksDB's WAL before returning, because no StemeDB WAL
 * carries them. */
enum store_result store_protect_put(struct store *s, const void *key, size_t key_len,
                                    const void *value, size_t value_len);
enum store_result store_protect_delete(struct store *s, const void *key, size_t key_len);
/* Copies the value into value (cleared first); STORE_NOT_FOUND when absent. */
enum store_result store_protect_get(struct store *s, const void *key, size_t key_len,
                                    struct buf *value);
/* Visits the keys that start with prefix, in key order, until fn returns false. */
enum store_result store_protect_scan(struct store *s, const void *prefix, size_t prefix_len,
                                     store_key_fn fn, void *ctx);

/* A read view of the protect family for many prefix scans in a row: one RocksDB
 * iterator, created once, so each scan costs a seek instead of an iterator. It shows
 * the family as it was at store_protect_view_new, not later writes. */
struct store_protect_view;
struct store_protect_view *store_protect_view_new(struct store *s);
void store_protect_view_free(struct store_protect_view *v);
enum store_result store_protect_view_scan(struct store_protect_view *v, const void *prefix,
                                          size_t prefix_len, store_key_fn fn, void *ctx);

#endif
