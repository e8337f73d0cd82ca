/* Assertion hash (BLAKE2b-256 of the canonical bytes) and Ed25519 signatures over
 * "stemedb-assertion-v1" || hash || u64 LE signature timestamp. */
#include "stemedb/assertion.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_DOMAIN_LEN  (sizeof(STEMEDB_ASSERTION_SIG_DOMAIN) - 1)
#define SIG_MESSAGE_LEN (SIG_DOMAIN_LEN + STEMEDB_HASH_LEN + 8)

_Static_assert(SIG_MESSAGE_LEN == 60, "the signed message is 60 bytes");

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

/* sodium_init returns -1 when libsodium cannot initialize. Hashing, signing and
 * verification all need it, so the process stops. */
static void sodium_setup(void)
{
	if (sodium_init() < 0) {
		fprintf(stderr, "sodium_init failed: libsodium could not initialize\n");
		abort();
	}
}

static void ensure_sodium(void)
{
	pthread_once(&sodium_once, sodium_setup);
}

bool assertion_hash(const struct assertion *a, uint8_t hash[STEMEDB_HASH_LEN])
{
	struct buf canonical;
	bool ok = false;

	ensure_sodium();
	buf_init(&canonical);
	if (!assertion_encode_canonical(a, &canonical))
		goto done;

	ok = crypto_generichash(hash, STEMEDB_HASH_LEN, canonical.data, canonical.len, NULL, 0) ==
	     0;
done:
	buf_free(&canonical);
	return ok;
}

void assertion_signing_message(const uint8_t hash[STEMEDB_HASH_LEN], uint64_t timestamp,
                               uint8_t message[60])
{
	memcpy(message, STEMEDB_ASSERTION_SIG_DOMAIN, SIG_DOMAIN_LEN);
	memcpy(message + SIG_DOMAIN_LEN, hash, STEMEDB_HASH_LEN);
	store_u64le(message + SIG_DOMAIN_LEN + STEMEDB_HASH_LEN, timestamp);
}

/* Returns the index of the first signature by agent_id before index limit, or -1. */
static long find_agent(const struct assertion *a, const uint8_t *agent_id, size_t limit)
{
	for (size_t i = 0; i < limit; i++) {
		if (memcmp(a->signatures[i].agent_id, agent_id, STEMEDB_AGENT_ID_LEN) == 0)
			return (long)i;
	}
	return -1;
}

bool assertion_sign(struct assertion *a, const uint8_t hash[STEMEDB_HASH_LEN],
                    const uint8_t secret_key[STEMEDB_SECRET_KEY_LEN], uint64_t timestamp)
{
	/* A libsodium Ed25519 secret key is the 32-byte seed followed by the public key. */
	const uint8_t *agent_id = secret_key + STEMEDB_SEED_LEN;

	ensure_sodium();
	if (a->signature_count >= STEMEDB_SIGNATURES_MAX)
		return false;
	if (find_agent(a, agent_id, a->signature_count) >= 0)
		return false;

	struct signature *s = &a->signatures[a->signature_count];
	uint8_t message[SIG_MESSAGE_LEN];
	assertion_signing_message(hash, timestamp, message);
	if (crypto_sign_detached(s->signature, NULL, message, sizeof(message), secret_key) != 0)
		return false;

	memcpy(s->agent_id, agent_id, STEMEDB_AGENT_ID_LEN);
	s->timestamp = timestamp;
	a->signature_count++;
	return true;
}

enum signature_check assertion_verify_signatures(const struct assertion *a,
                                                 const uint8_t hash[STEMEDB_HASH_LEN],
                                                 size_t *bad_index)
{
	size_t unused_index;

	if (bad_index == NULL)
		bad_index = &unused_index;
	*bad_index = 0;

	ensure_sodium();
	if (a->signature_count == 0)
		return SIGNATURES_MISSING;
	if (a->signature_count > STEMEDB_SIGNATURES_MAX) {
		*bad_index = STEMEDB_SIGNATURES_MAX;
		return SIGNATURES_INVALID;
	}

	for (size_t i = 0; i < a->signature_count; i++) {
		const struct signature *s = &a->signatures[i];
		uint8_t message[SIG_MESSAGE_LEN];

		*bad_index = i;
		if (find_agent(a, s->agent_id, i) >= 0)
			return SIGNATURES_DUPLICATE;

		assertion_signing_message(hash, s->timestamp, message);
		if (crypto_sign_verify_detached(s->signature, message, sizeof(message),
		                                s->agent_id) != 0)
			return SIGNATURES_INVALID;
	}

	*bad_index = 0;
	return SIGNATURES_VALID;
}
