#ifndef STEMEDB_RECORDS_H
#define STEMEDB_RECORDS_H

/* Signed records other than assertions: votes, epochs, co-signatures, sources,
 * aliases and trust outcomes. Each has a type byte, a version byte and fixed-order fields; its id
 * is the BLAKE2b-256 of those canonical bytes. docs/formats.md gives every byte and
 * tests/vectors/records.json contains vectors that the Python implementation reproduces. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stemedb/assertion.h"
#include "stemedb/buf.h"

#define STEMEDB_RECORD_VOTE          0x02
#define STEMEDB_RECORD_EPOCH         0x03
#define STEMEDB_RECORD_COSIGNATURE   0x04
#define STEMEDB_RECORD_SOURCE        0x05
#define STEMEDB_RECORD_ALIAS         0x06
#define STEMEDB_RECORD_TRUST_OUTCOME 0x07

#define STEMEDB_VOTE_WEIGHT_MAX    1000000
#define STEMEDB_EPOCH_NAME_MAX     256
#define STEMEDB_EPOCH_DESC_MAX     65536
#define STEMEDB_SOURCE_URI_MAX     4096
#define STEMEDB_SOURCE_TITLE_MAX   1024
#define STEMEDB_SOURCE_CONTENT_MAX (1024u * 1024u)
#define STEMEDB_RECORD_SIGNERS_MAX 16
#define STEMEDB_TRUST_NOTE_MAX     1024

struct vote {
	uint8_t assertion_hash[STEMEDB_HASH_LEN];
	uint8_t voter[STEMEDB_AGENT_ID_LEN];
	int32_t weight_micro; /* -1,000,000..1,000,000; negative disputes */
	uint64_t timestamp;
};

struct epoch {
	char *name; /* owned, NUL-terminated in memory */
	size_t name_len;
	char *description;
	size_t description_len;
	bool has_supersedes;
	uint8_t supersedes[STEMEDB_HASH_LEN];
	uint64_t timestamp;
};

/* A signature that one more agent adds to a stored assertion. The signature in the
 * record's single signer slot is over the assertion signing message, so the stored
 * assertion can list it next to its own signatures. */
struct cosignature {
	uint8_t assertion_hash[STEMEDB_HASH_LEN];
	uint8_t agent_id[STEMEDB_AGENT_ID_LEN];
	uint64_t timestamp;
};

struct source_record {
	char *uri;
	size_t uri_len;
	char *title;
	size_t title_len;
	uint8_t source_class;
	bool has_content;
	char *content; /* raw bytes, any value; NUL-terminated in memory */
	size_t content_len;
	uint64_t timestamp;
};

struct alias {
	char *subject_a;
	size_t subject_a_len;
	char *subject_b;
	size_t subject_b_len;
	uint64_t timestamp;
};

/* An admin's verdict on the claims of an agent. Exactly one signer, a trust authority
 * key of the node, signs it. */
struct trust_outcome_record {
	uint8_t agent_id[STEMEDB_AGENT_ID_LEN];
	bool accurate; /* encoded as u8 1; inaccurate as 0 */
	uint64_t timestamp;
	char *note; /* UTF-8, 0..1024 bytes, NUL-terminated in memory */
	size_t note_len;
};

struct record_signer {
	uint8_t agent_id[STEMEDB_AGENT_ID_LEN];
	uint8_t signature[STEMEDB_SIGNATURE_LEN];
};

/* One record of any of the types above, with its signers. Strings and content are
 * owned and released by record_free. */
struct record {
	uint8_t type;
	union {
		struct vote vote;
		struct epoch epoch;
		struct cosignature cosignature;
		struct source_record source;
		struct alias alias;
		struct trust_outcome_record trust_outcome;
	} u;
	size_t signer_count;
	struct record_signer signers[STEMEDB_RECORD_SIGNERS_MAX];
};

/* Zeroes r and sets its type, so that record_free is safe on it. */
void record_init(struct record *r, uint8_t type);
void record_free(struct record *r);

/* Copies len bytes into owned NUL-terminated storage at *dst. */
void record_set_string(char **dst, size_t *dst_len, const char *s, size_t len);

/* Returns the lowercase name used in signing domains and messages ("vote", ...,
 * "trust-outcome"), or NULL for an unknown type. */
const char *record_type_name(uint8_t type);

/* Checks the field rules of r (lengths, UTF-8, ranges). On failure points *field at
 * the JSON name of the offending field and fills message. */
bool record_validate(const struct record *r, const char **field, char *message,
                     size_t message_size);

/* Appends the canonical bytes; false only when a length does not fit its prefix. */
bool record_encode_canonical(const struct record *r, struct buf *out);

/* Decodes canonical bytes into r (initialized with any type). Rejects trailing bytes,
 * unknown types, versions and flags. */
bool record_decode_canonical(const uint8_t *data, size_t len, struct record *r);

/* BLAKE2b-256 of the canonical bytes. */
bool record_id(const struct record *r, uint8_t id[STEMEDB_HASH_LEN]);

/* Builds the signed message "stemedb-<type>-v1" || id into out (at least 64 bytes)
 * and returns its length. Co-signatures sign the assertion message instead
 * (assertion_signing_message over the assertion hash and the record timestamp). */
size_t record_signing_message(const struct record *r, const uint8_t id[STEMEDB_HASH_LEN],
                              uint8_t *out);

/* Signs with a 64-byte libsodium secret key and appends the signer. Returns false
 * when the agent has signed already or 16 signers are present. */
bool record_sign(struct record *r, const uint8_t id[STEMEDB_HASH_LEN],
                 const uint8_t secret_key[STEMEDB_SECRET_KEY_LEN]);

enum record_check {
	RECORD_VALID = 0,
	RECORD_UNSIGNED,      /* no signer */
	RECORD_BAD_SIGNATURE, /* *bad_index does not verify */
	RECORD_DUPLICATE,     /* *bad_index repeats an agent */
	RECORD_WRONG_SIGNER,  /* a vote or co-signature signed by another agent */
};

/* Verifies every signer. Votes and co-signatures need exactly one signer, the voter
 * or the co-signing agent. */
enum record_check record_verify(const struct record *r, const uint8_t id[STEMEDB_HASH_LEN],
                                size_t *bad_index);

/* Stored and logged form: u32 canonical length, canonical bytes, u8 signer count,
 * per signer agent id 32 B and signature 64 B, then the HLC stamp (wall_ms u64,
 * logical u32, node id 16 B). */
bool record_encode_envelope(const struct record *r, const struct hlc_stamp *hlc, struct buf *out);
bool record_decode_envelope(const uint8_t *data, size_t len, struct record *r,
                            struct hlc_stamp *hlc);

#endif
