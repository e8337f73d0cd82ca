#ifndef STEMEDB_ADMISSION_H
#define STEMEDB_ADMISSION_H

/* Admission of writing agents: the tier that trust puts an agent in, the proof-of-work
 * difficulty it must meet, and the set of proofs already used. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stemedb/pow.h"

enum admission_tier {
	TIER_UNTRUSTED = 0, /* trust < 0.3: 0.1x quota, proof of work on every write */
	TIER_LIMITED,       /* trust < 0.5: 0.5x quota, proof of work on every write */
	TIER_VERIFIED,      /* trust < 0.7: 1x quota */
	TIER_TRUSTED,       /* trust < 0.9: 2x quota */
	TIER_AUTHORITY      /* otherwise: 10x quota */
};

/* The proof-of-work thresholds, all configurable. */
struct admission_rules {
	uint64_t new_agent_bits;         /* 16: for agents below new_agent_assertions */
	uint64_t growing_agent_bits;     /* 1: below established_assertions */
	uint64_t new_agent_assertions;   /* 10 */
	uint64_t established_assertions; /* 50 */
	double exempt_trust;             /* 0.6: no proof from this trust upward */
};

enum admission_tier admission_tier_of(double trust);
const char *admission_tier_name(enum admission_tier tier);
double admission_quota_multiplier(enum admission_tier tier);

/* Returns the leading zero bits that a write by this agent must prove, picked from the
 * rules by its assertion count and trust. Untrusted and limited agents need at least
 * growing_agent_bits even where the rules give 0, because their tier always requires a
 * proof. */
unsigned admission_difficulty(const struct admission_rules *rules, uint64_t assertions,
                              double trust);

/* Returns how many more stored assertions lower the agent's difficulty, or 0 when
 * more assertions change nothing. */
uint64_t admission_assertions_until_easier(const struct admission_rules *rules, uint64_t assertions,
                                           double trust);

/* Bounded memory of used proofs, keyed by their digest (which covers the nonce, the
 * agent and the timestamp). Safe to use from many threads. */
struct pow_replay_set;

struct pow_replay_set *pow_replay_set_new(size_t capacity);
void pow_replay_set_free(struct pow_replay_set *set);

/* Adds the digest with its expiry (Unix seconds). Returns false when the digest is
 * present and not expired, which means the proof is a replay. When the set is full,
 * the oldest entry is dropped first. */
bool pow_replay_set_add(struct pow_replay_set *set, const uint8_t digest[POW_DIGEST_LEN],
                        uint64_t expires_at, uint64_t now);

#endif
