#include "stemedb/pow.h"

#include <sodium.h>
#include <string.h>

static void put_u64_be(uint8_t *out, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		out[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
}

void pow_digest(uint64_t nonce, const uint8_t agent[POW_AGENT_ID_LEN], uint64_t timestamp,
                uint8_t digest[POW_DIGEST_LEN])
{
	uint8_t input[8 + POW_AGENT_ID_LEN + 8];

	put_u64_be(input, nonce);
	memcpy(input + 8, agent, POW_AGENT_ID_LEN);
	put_u64_be(input + 8 + POW_AGENT_ID_LEN, timestamp);
	crypto_generichash(digest, POW_DIGEST_LEN, input, sizeof(input), NULL, 0);
}

unsigned pow_leading_zero_bits(const uint8_t digest[POW_DIGEST_LEN])
{
	unsigned bits = 0;

	for (size_t i = 0; i < POW_DIGEST_LEN; i++) {
		uint8_t byte = digest[i];

		if (byte == 0) {
			bits += 8;
			continue;
		}
		while ((byte & 0x80) == 0) {
			bits++;
			byte = (uint8_t)(byte << 1);
		}
		break;
	}
	return bits;
}

bool pow_check(uint64_t nonce, const uint8_t agent[POW_AGENT_ID_LEN], uint64_t timestamp,
               unsigned difficulty)
{
	uint8_t digest[POW_DIGEST_LEN];

	if (difficulty == 0)
		return true;
	pow_digest(nonce, agent, timestamp, digest);
	return pow_leading_zero_bits(digest) >= difficulty;
}

bool pow_solve(const uint8_t agent[POW_AGENT_ID_LEN], uint64_t timestamp, unsigned difficulty,
               uint64_t start, uint64_t max_attempts, uint64_t *nonce)
{
	for (uint64_t i = 0; i < max_attempts; i++) {
		if (pow_check(start + i, agent, timestamp, difficulty)) {
			*nonce = start + i;
			return true;
		}
	}
	return false;
}
