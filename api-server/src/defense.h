#ifndef STEMEDB_DEFENSE_H
#define STEMEDB_DEFENSE_H

/* Content defense: the checks that decide whether a new assertion is indexed or kept
 * in quarantine. The HTTP worker computes the MinHash signature and the content part
 * of the quality score (defense_prepare). The commit writer thread then looks for
 * near-duplicates in WAL order and applies the trust rule (defense_decide), so WAL
 * replay after a crash reaches the same decision. docs/protection.md defines every
 * formula and the stored layout. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stemedb/assertion.h"
#include "stemedb/buf.h"
#include "store.h"

#define DEFENSE_HASHES         128
#define DEFENSE_BANDS          16
#define DEFENSE_ROWS           8
#define DEFENSE_SIGNATURE_SIZE (DEFENSE_HASHES * 4)
/* Stored assertions read per LSH bucket; a bucket with more is only partly compared. */
#define DEFENSE_BUCKET_SCAN_MAX 64

enum defense_reason {
	DEFENSE_NONE = 0,
	DEFENSE_DUPLICATE = 1,
	DEFENSE_LOW_QUALITY = 2,
	DEFENSE_UNTRUSTED_HIGH_CONFIDENCE = 3,
};
#define DEFENSE_REASON_COUNT 4

enum quarantine_status {
	QUARANTINE_PENDING = 0,
	QUARANTINE_APPROVED = 1,
	QUARANTINE_REJECTED = 2,
};

struct defense_config {
	bool enabled;
	double duplicate_similarity; /* estimated Jaccard at or above it: duplicate */
	double min_quality;          /* quality score below it: low_quality */
	double untrusted_below;      /* signer trust below it counts as untrusted */
	double high_confidence;      /* confidence above it counts as high */
};

/* The part of the checks that needs only the assertion, computed on the HTTP worker. */
struct defense_input {
	uint32_t signature[DEFENSE_HASHES];
	double entropy_score;   /* 0..1 */
	double length_score;    /* 0..1 */
	double structure_score; /* 0 or 1 */
};

/* The writer's decision on one assertion. */
struct defense_verdict {
	enum defense_reason reason;
	double quality;
	double similarity; /* estimated Jaccard to resembled, 0 without a match */
	bool has_resembled;
	uint8_t resembled[STEMEDB_HASH_LEN];
	/* The store had a quarantine entry for it already (a replay after an admin
	 * decision): reason and status come from that entry, which is kept. */
	bool existing;
	enum quarantine_status status;
};

/* One quarantine entry (kind 'q' in the protect family). */
struct quarantine_entry {
	enum defense_reason reason;
	enum quarantine_status status;
	double quality;
	double similarity;
	bool has_resembled;
	uint8_t resembled[STEMEDB_HASH_LEN];
	uint8_t agent[STEMEDB_AGENT_ID_LEN];
	uint64_t created_ms; /* Unix milliseconds of the HLC stamp of the assertion */
	uint64_t decided_ms; /* Unix milliseconds of the approval or rejection, else 0 */
};

#define QUARANTINE_KIND      'q'
#define LSH_KIND             'l'
#define MINHASH_KIND         'm'
#define QUARANTINE_KEY_LEN   (1 + STEMEDB_HASH_LEN)
#define QUARANTINE_VALUE_LEN 92

const char *defense_reason_name(enum defense_reason reason);
bool defense_reason_parse(const char *name, enum defense_reason *out);
const char *quarantine_status_name(enum quarantine_status status);
bool quarantine_status_parse(const char *name, enum quarantine_status *out);

/* Appends the text that MinHash reads: subject, 0x1F, predicate, 0x1F, object. */
void defense_render_text(const struct assertion *a, struct buf *out);

/* Fills signature with the 128 MinHash minima over the 3-byte shingles of text. */
void defense_minhash(const uint8_t *text, size_t len, uint32_t signature[DEFENSE_HASHES]);

/* Fraction of equal minima: the estimated Jaccard similarity of the shingle sets. */
double defense_similarity(const uint32_t *a, const uint32_t *b);

/* The LSH bucket of one band (rows band * 8 .. band * 8 + 7). */
uint64_t defense_band_hash(const uint32_t signature[DEFENSE_HASHES], size_t band);

/* Adds the LSH band keys of an approved quarantined assertion to batch, from its
 * stored MinHash signature, so that later assertions are compared with it. */
enum store_result defense_batch_put_approved(struct store *s, struct store_batch *batch,
                                             const uint8_t hash[STEMEDB_HASH_LEN]);

/* Shannon entropy of bytes in bits, divided by log2(min(len, 64)); 0 below 2 bytes. */
double defense_normalized_entropy(const uint8_t *bytes, size_t len);

/* Computes the signature and the content scores of a (the HTTP worker's part). */
void defense_prepare(const struct assertion *a, struct defense_input *out);

/* Weighted score in 0..1: 0.4 entropy + 0.2 length + 0.2 structure + 0.2 trust, where
 * the trust part is 0 when untrusted_high_confidence is true, else 1. */
double defense_quality(const struct defense_input *in, bool untrusted_high_confidence);

/* Encodes and decodes entry as the QUARANTINE_VALUE_LEN-byte value of a 'q' key. */
void quarantine_entry_encode(const struct quarantine_entry *entry,
                             uint8_t out[QUARANTINE_VALUE_LEN]);
bool quarantine_entry_decode(const uint8_t *value, size_t len, struct quarantine_entry *out);

/* Reads the quarantine entry of hash; STORE_NOT_FOUND when it has none, STORE_ERROR
 * also for an entry that does not decode. */
enum store_result quarantine_get(struct store *s, const uint8_t hash[STEMEDB_HASH_LEN],
                                 struct quarantine_entry *entry);

/* Returns {"status", "reason", "quality", "agent_id", "created_ms", ...} of entry. */
json_t *quarantine_entry_json(const struct quarantine_entry *entry);

/* Signatures of the assertions put in the current store batch, which the store does
 * not show yet, so that two near-duplicates in one group still match. The window also
 * keeps one read view of the store for the LSH lookups of the batch. Clear it after
 * each applied batch, so that the next view shows that batch. */
struct defense_window {
	struct defense_window_item *items;
	size_t count;
	size_t cap;
	struct store_protect_view *view; /* created at the first lookup of a batch */
};

void defense_window_init(struct defense_window *w);
void defense_window_clear(struct defense_window *w);
void defense_window_free(struct defense_window *w);

/* Decides on one new assertion on the writer thread, in WAL order, and adds to batch
 * its MinHash ('m') and LSH band ('l') keys and, when quarantined, its 'q' entry with
 * status pending. With replay set it first reads the store's entry for hash, and when
 * there is one keeps it (verdict->existing). Outside replay the assertion is new, so it
 * cannot have one. hlc_wall_ms is the assertion's HLC time, at which the signer's trust
 * is read. Returns false on a storage error. */
bool defense_decide(struct store *s, const struct defense_config *config,
                    struct defense_window *window, const struct assertion *a,
                    const uint8_t hash[STEMEDB_HASH_LEN], const struct defense_input *in,
                    uint64_t hlc_wall_ms, bool replay, struct store_batch *batch,
                    struct defense_verdict *verdict);

/* Allocates the 32 MiB filter of non-empty LSH buckets and fills it from the stored
 * 'l' keys, one pass over them. Call once at start, before WAL replay, when content
 * defense is on. Without it every lookup seeks in RocksDB. */
enum store_result defense_filter_load(struct store *s);

/* Counts and metrics of the quarantine, shared by the writer, IPC and HTTP threads. */
void defense_metrics_register(void);
/* Counts the pending entries in the store; call once at start before any write. */
enum store_result defense_count_pending(struct store *s);
void defense_pending_add(int64_t delta);
uint64_t defense_pending(void);
void defense_count_quarantined(enum defense_reason reason);

#endif
