#ifndef STEMEDB_ASSERTION_H
#define STEMEDB_ASSERTION_H

/* Assertions: the claim record, its canonical bytes, BLAKE2b-256 hash and Ed25519
 * signatures. docs/formats.md specifies every byte; tests/vectors holds fixed vectors
 * that an independent Python implementation reproduces. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stemedb/buf.h"

#define STEMEDB_HASH_LEN       32
#define STEMEDB_AGENT_ID_LEN   32
#define STEMEDB_SIGNATURE_LEN  64
#define STEMEDB_SEED_LEN       32
#define STEMEDB_SECRET_KEY_LEN 64

#define STEMEDB_SUBJECT_MAX      1024
#define STEMEDB_PREDICATE_MAX    256
#define STEMEDB_TEXT_MAX         65536
#define STEMEDB_SIGNATURES_MAX   16
#define STEMEDB_CONFIDENCE_SCALE 1000000u

#define STEMEDB_RECORD_ASSERTION 0x01
#define STEMEDB_RECORD_VERSION   0x01

/* Domain-separation prefix of the signed message (20 ASCII bytes, no NUL). */
#define STEMEDB_ASSERTION_SIG_DOMAIN "stemedb-assertion-v1"

enum object_type {
	OBJECT_TEXT = 1,
	OBJECT_NUMBER = 2,
	OBJECT_BOOLEAN = 3,
	OBJECT_REFERENCE = 4,
};

enum source_class {
	SOURCE_REGULATORY = 0,
	SOURCE_CLINICAL = 1,
	SOURCE_OBSERVATIONAL = 2,
	SOURCE_EXPERT = 3,
	SOURCE_COMMUNITY = 4,
	SOURCE_ANECDOTAL = 5,
};
#define SOURCE_CLASS_COUNT 6

enum lifecycle {
	LIFECYCLE_PROPOSED = 0,
	LIFECYCLE_UNDER_REVIEW = 1,
	LIFECYCLE_APPROVED = 2,
	LIFECYCLE_DEPRECATED = 3,
	LIFECYCLE_REJECTED = 4,
};
#define LIFECYCLE_COUNT 5

/* The claimed value. For text and reference, `text` points to text_len UTF-8 bytes
 * (not NUL-terminated in the encoding, but always NUL-terminated in memory). */
struct object_value {
	enum object_type type;
	char *text;
	size_t text_len;
	double number;
	bool boolean;
};

struct signature {
	uint8_t agent_id[STEMEDB_AGENT_ID_LEN];
	uint8_t signature[STEMEDB_SIGNATURE_LEN];
	uint64_t timestamp;
};

/* One assertion. Strings are owned by the struct (freed by assertion_free) and are
 * NUL-terminated in memory; lengths are byte lengths without the NUL. */
struct assertion {
	char *subject;
	size_t subject_len;
	char *predicate;
	size_t predicate_len;
	struct object_value object;
	uint32_t confidence_micro; /* confidence in millionths, 0..1,000,000 */
	uint8_t source_class;      /* enum source_class */
	uint8_t lifecycle;         /* enum lifecycle */
	uint8_t source_hash[STEMEDB_HASH_LEN];
	bool has_parent;
	uint8_t parent_hash[STEMEDB_HASH_LEN];
	bool has_epoch;
	uint8_t epoch[STEMEDB_HASH_LEN];
	uint64_t timestamp; /* Unix seconds */
	size_t signature_count;
	struct signature signatures[STEMEDB_SIGNATURES_MAX];
};

/* Hybrid logical clock stamp given to a record when it is ingested. */
struct hlc_stamp {
	uint64_t wall_ms;
	uint32_t logical;
	uint8_t node_id[16];
};

/* Zeroes a so that assertion_free is safe on it. */
void assertion_init(struct assertion *a);
void assertion_free(struct assertion *a);

/* Copies subject, predicate or text into freshly allocated NUL-terminated storage. */
void assertion_set_subject(struct assertion *a, const char *s, size_t len);
void assertion_set_predicate(struct assertion *a, const char *s, size_t len);
void object_set_text(struct object_value *o, enum object_type type, const char *s, size_t len);

/* Converts a confidence in 0..1 to millionths: floor(c * 1e6 + 0.5). The caller has
 * already checked the range. */
uint32_t confidence_to_micro(double confidence);

/* Checks every field rule of the assertion model except signatures (lengths, UTF-8,
 * no NUL, finite number, confidence range, enum ranges). On failure returns false and
 * points *field at the JSON path of the offending field and fills message. */
bool assertion_validate(const struct assertion *a, const char **field, char *message,
                        size_t message_size);

/* Appends the canonical bytes to out. Returns false only if a length does not fit its
 * prefix, which assertion_validate rules out. */
bool assertion_encode_canonical(const struct assertion *a, struct buf *out);

/* Decodes canonical bytes into a (which must be initialized), with no signatures.
 * Rejects trailing bytes, unknown type or version, and out-of-range enums. */
bool assertion_decode_canonical(const uint8_t *data, size_t len, struct assertion *a);

/* BLAKE2b-256 of the canonical bytes. */
bool assertion_hash(const struct assertion *a, uint8_t hash[STEMEDB_HASH_LEN]);

/* Builds the 60-byte signed message: domain (20 B) || hash (32 B) || timestamp (u64 LE). */
void assertion_signing_message(const uint8_t hash[STEMEDB_HASH_LEN], uint64_t timestamp,
                               uint8_t message[60]);

/* Signs hash with the 64-byte libsodium secret key and appends the signature. Returns
 * false when 16 signatures are present or the agent has signed already. */
bool assertion_sign(struct assertion *a, const uint8_t hash[STEMEDB_HASH_LEN],
                    const uint8_t secret_key[STEMEDB_SECRET_KEY_LEN], uint64_t timestamp);

enum signature_check {
	SIGNATURES_VALID = 0,
	SIGNATURES_MISSING,   /* no signature at all */
	SIGNATURES_INVALID,   /* one does not verify; *bad_index names it */
	SIGNATURES_DUPLICATE, /* two from the same agent; *bad_index names the second */
};

/* Verifies every signature over hash. */
enum signature_check assertion_verify_signatures(const struct assertion *a,
                                                 const uint8_t hash[STEMEDB_HASH_LEN],
                                                 size_t *bad_index);

/* Stored and logged form of an assertion: canonical bytes, signatures and HLC stamp.
 * docs/formats.md ("Assertion envelope") gives the layout:
 *   u32 canonical length, canonical bytes, u8 signature count,
 *   per signature: agent id 32 B, signature 64 B, timestamp u64,
 *   HLC: wall_ms u64, logical u32, node id 16 B. */
bool assertion_encode_envelope(const struct assertion *a, const struct hlc_stamp *hlc,
                               struct buf *out);
bool assertion_decode_envelope(const uint8_t *data, size_t len, struct assertion *a,
                               struct hlc_stamp *hlc);

/* Names on the wire. The parse functions accept lowercase, capitalized
 * ("Clinical") and the upstream CamelCase ("UnderReview") spellings. */
const char *source_class_name(uint8_t source_class);
bool source_class_parse(const char *text, uint8_t *out);
const char *lifecycle_name(uint8_t lifecycle);
bool lifecycle_parse(const char *text, uint8_t *out);
const char *object_type_name(enum object_type type);
bool object_type_parse(const char *text, enum object_type *out);

/* Checks that len bytes are well-formed UTF-8 with no NUL and no overlong forms or
 * surrogates. */
bool utf8_valid(const char *s, size_t len);

#endif
