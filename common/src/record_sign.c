/* Ids, field rules and Ed25519 signatures of the records in records.h. A record's
 * signers sign "stemedb-<type>-v1" || id, except co-signatures, whose signature is an
 * assertion signature over "stemedb-assertion-v1" || assertion hash || timestamp. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "stemedb/records.h"

#define COSIGNATURE_MESSAGE_LEN 60

bool record_id(const struct record *r, uint8_t id[STEMEDB_HASH_LEN])
{
	struct buf canonical;
	bool ok = false;

	buf_init(&canonical);
	if (sodium_init() < 0 || !record_encode_canonical(r, &canonical))
		goto done;
	ok = crypto_generichash(id, STEMEDB_HASH_LEN, canonical.data, canonical.len, NULL, 0) == 0;

done:
	buf_free(&canonical);
	return ok;
}

size_t record_signing_message(const struct record *r, const uint8_t id[STEMEDB_HASH_LEN],
                              uint8_t *out)
{
	int prefix_len;

	if (r->type == STEMEDB_RECORD_COSIGNATURE) {
		assertion_signing_message(r->u.cosignature.assertion_hash,
		                          r->u.cosignature.timestamp, out);
		return COSIGNATURE_MESSAGE_LEN;
	}

	/* The maximum-length domain prefix, "stemedb-trust-outcome-v1" (24 bytes), leaves room for
	 * the id in 64 bytes. */
	prefix_len = snprintf((char *)out, 32, "stemedb-%s-v1", record_type_name(r->type));
	memcpy(out + prefix_len, id, STEMEDB_HASH_LEN);
	return (size_t)prefix_len + STEMEDB_HASH_LEN;
}

static long find_signer(const struct record *r, const uint8_t *agent_id, size_t limit)
{
	for (size_t i = 0; i < limit; i++) {
		if (memcmp(r->signers[i].agent_id, agent_id, STEMEDB_AGENT_ID_LEN) == 0)
			return (long)i;
	}
	return -1;
}

bool record_sign(struct record *r, const uint8_t id[STEMEDB_HASH_LEN],
                 const uint8_t secret_key[STEMEDB_SECRET_KEY_LEN])
{
	/* A libsodium Ed25519 secret key is the 32-byte seed followed by the public key. */
	const uint8_t *agent_id = secret_key + STEMEDB_SEED_LEN;
	uint8_t message[64 + STEMEDB_HASH_LEN];
	size_t message_len;
	struct record_signer *s;

	if (sodium_init() < 0 || r->signer_count >= STEMEDB_RECORD_SIGNERS_MAX ||
	    find_signer(r, agent_id, r->signer_count) >= 0)
		return false;

	s = &r->signers[r->signer_count];
	message_len = record_signing_message(r, id, message);
	if (crypto_sign_detached(s->signature, NULL, message, message_len, secret_key) != 0)
		return false;
	memcpy(s->agent_id, agent_id, STEMEDB_AGENT_ID_LEN);
	r->signer_count++;
	return true;
}

/* The agent that must be the only signer of a vote or co-signature, else NULL. */
static const uint8_t *required_signer(const struct record *r)
{
	if (r->type == STEMEDB_RECORD_VOTE)
		return r->u.vote.voter;
	if (r->type == STEMEDB_RECORD_COSIGNATURE)
		return r->u.cosignature.agent_id;
	return NULL;
}

enum record_check record_verify(const struct record *r, const uint8_t id[STEMEDB_HASH_LEN],
                                size_t *bad_index)
{
	const uint8_t *required = required_signer(r);
	uint8_t message[64 + STEMEDB_HASH_LEN];
	size_t message_len = record_signing_message(r, id, message);

	*bad_index = 0;
	if (sodium_init() < 0 || r->signer_count == 0)
		return RECORD_UNSIGNED;
	if (required != NULL && (r->signer_count != 1 || memcmp(r->signers[0].agent_id, required,
	                                                        STEMEDB_AGENT_ID_LEN) != 0))
		return RECORD_WRONG_SIGNER;

	for (size_t i = 0; i < r->signer_count; i++) {
		*bad_index = i;
		if (find_signer(r, r->signers[i].agent_id, i) >= 0)
			return RECORD_DUPLICATE;
		if (crypto_sign_verify_detached(r->signers[i].signature, message, message_len,
		                                r->signers[i].agent_id) != 0)
			return RECORD_BAD_SIGNATURE;
	}
	*bad_index = 0;
	return RECORD_VALID;
}

static bool check_text(const char *s, size_t len, size_t min, size_t max, const char *name,
                       const char **field, char *message, size_t message_size)
{
	if (len < min || len > max) {
		*field = name;
		snprintf(message, message_size, "%s is %zu bytes long; use %zu to %zu bytes.", name,
		         len, min, max);
		return false;
	}
	if (!utf8_valid(s, len)) {
		*field = name;
		snprintf(message, message_size,
		         "%s is not valid UTF-8 or contains a NUL byte; send UTF-8 text.", name);
		return false;
	}
	return true;
}

bool record_validate(const struct record *r, const char **field, char *message, size_t message_size)
{
	switch (r->type) {
	case STEMEDB_RECORD_VOTE:
		if (r->u.vote.weight_micro < -STEMEDB_VOTE_WEIGHT_MAX ||
		    r->u.vote.weight_micro > STEMEDB_VOTE_WEIGHT_MAX) {
			*field = "weight";
			snprintf(message, message_size,
			         "weight is out of range; use a number from -1.0 to 1.0.");
			return false;
		}
		return true;
	case STEMEDB_RECORD_EPOCH:
		return check_text(r->u.epoch.name, r->u.epoch.name_len, 1, STEMEDB_EPOCH_NAME_MAX,
		                  "name", field, message, message_size) &&
		       check_text(r->u.epoch.description, r->u.epoch.description_len, 0,
		                  STEMEDB_EPOCH_DESC_MAX, "description", field, message,
		                  message_size);
	case STEMEDB_RECORD_SOURCE:
		if (r->u.source.has_content &&
		    r->u.source.content_len > STEMEDB_SOURCE_CONTENT_MAX) {
			*field = "content";
			snprintf(message, message_size,
			         "content is %zu bytes long; send at most 1 MiB (1048576 bytes).",
			         r->u.source.content_len);
			return false;
		}
		return check_text(r->u.source.uri, r->u.source.uri_len, 1, STEMEDB_SOURCE_URI_MAX,
		                  "uri", field, message, message_size) &&
		       check_text(r->u.source.title, r->u.source.title_len, 0,
		                  STEMEDB_SOURCE_TITLE_MAX, "title", field, message, message_size);
	case STEMEDB_RECORD_ALIAS:
		return check_text(r->u.alias.subject_a, r->u.alias.subject_a_len, 1,
		                  STEMEDB_SUBJECT_MAX, "subject_a", field, message, message_size) &&
		       check_text(r->u.alias.subject_b, r->u.alias.subject_b_len, 1,
		                  STEMEDB_SUBJECT_MAX, "subject_b", field, message, message_size);
	case STEMEDB_RECORD_TRUST_OUTCOME:
		return check_text(r->u.trust_outcome.note, r->u.trust_outcome.note_len, 0,
		                  STEMEDB_TRUST_NOTE_MAX, "note", field, message, message_size);
	default:
		return true;
	}
}
