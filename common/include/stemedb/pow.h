#ifndef STEMEDB_POW_H
#define STEMEDB_POW_H

/* Proof of work for admission. The digest is BLAKE2b-256 over 48 bytes: the nonce as
 * u64 big-endian, the agent id (32 raw bytes), then the timestamp (Unix seconds) as
 * u64 big-endian. A proof is valid when the digest starts with at least `difficulty`
 * zero bits and the timestamp is within POW_VALIDITY_SECONDS of the server's clock.
 * docs/formats.md gives the same layout with a test vector. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POW_AGENT_ID_LEN     32
#define POW_DIGEST_LEN       32
#define POW_VALIDITY_SECONDS 300
#define POW_DIFFICULTY_MAX   64

/* Computes the BLAKE2b-256 digest of nonce ‖ agent ‖ timestamp. */
void pow_digest(uint64_t nonce, const uint8_t agent[POW_AGENT_ID_LEN], uint64_t timestamp,
                uint8_t digest[POW_DIGEST_LEN]);

/* Counts the leading zero bits of a digest (0..256). */
unsigned pow_leading_zero_bits(const uint8_t digest[POW_DIGEST_LEN]);

/* Returns true when the proof has at least difficulty leading zero bits. It does not
 * check the timestamp's age; callers compare it with their clock. */
bool pow_check(uint64_t nonce, const uint8_t agent[POW_AGENT_ID_LEN], uint64_t timestamp,
               unsigned difficulty);

/* Searches nonces from start upward for a proof of the given difficulty. Returns true
 * with the nonce in *nonce, or false when max_attempts nonces all failed. A difficulty
 * of 16 needs about 65,536 attempts on average. */
bool pow_solve(const uint8_t agent[POW_AGENT_ID_LEN], uint64_t timestamp, unsigned difficulty,
               uint64_t start, uint64_t max_attempts, uint64_t *nonce);

#endif
