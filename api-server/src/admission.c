#include "admission.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "stemedb/log.h"

enum admission_tier admission_tier_of(double trust)
{
	if (trust < 0.3)
		return TIER_UNTRUSTED;
	if (trust < 0.5)
		return TIER_LIMITED;
	if (trust < 0.7)
		return TIER_VERIFIED;
	if (trust < 0.9)
		return TIER_TRUSTED;
	return TIER_AUTHORITY;
}

const char *admission_tier_name(enum admission_tier tier)
{
	static const char *const names[] = {"untrusted", "limited", "verified", "trusted",
	                                    "authority"};

	return names[tier];
}

double admission_quota_multiplier(enum admission_tier tier)
{
	static const double multipliers[] = {0.1, 0.5, 1.0, 2.0, 10.0};

	return multipliers[tier];
}

static bool tier_requires_proof(double trust)
{
	enum admission_tier tier = admission_tier_of(trust);

	return tier == TIER_UNTRUSTED || tier == TIER_LIMITED;
}

unsigned admission_difficulty(const struct admission_rules *rules, uint64_t assertions,
                              double trust)
{
	unsigned bits = 0;

	if (trust < rules->exempt_trust && assertions < rules->new_agent_assertions)
		bits = (unsigned)rules->new_agent_bits;
	else if (trust < rules->exempt_trust && assertions < rules->established_assertions)
		bits = (unsigned)rules->growing_agent_bits;
	if (bits == 0 && tier_requires_proof(trust))
		bits = (unsigned)rules->growing_agent_bits;
	return bits;
}

uint64_t admission_assertions_until_easier(const struct admission_rules *rules, uint64_t assertions,
                                           double trust)
{
	unsigned now = admission_difficulty(rules, assertions, trust);

	if (now == 0 || trust >= rules->exempt_trust)
		return 0;
	if (assertions < rules->new_agent_assertions &&
	    admission_difficulty(rules, rules->new_agent_assertions, trust) < now)
		return rules->new_agent_assertions - assertions;
	if (assertions < rules->established_assertions &&
	    admission_difficulty(rules, rules->established_assertions, trust) < now)
		return rules->established_assertions - assertions;
	return 0;
}

struct replay_entry {
	uint8_t digest[POW_DIGEST_LEN];
	uint64_t expires_at;
	struct replay_entry *next; /* hash chain */
	bool used;
};

/* Entries live in a ring in insertion order, so the oldest is dropped first when the
 * ring is full. A hash of chains over the same entries finds a digest. */
struct pow_replay_set {
	pthread_mutex_t lock;
	struct replay_entry *ring;
	size_t capacity;
	size_t next; /* ring slot of the next insertion */
	struct replay_entry **buckets;
	size_t bucket_mask;
	uint64_t dropped_live; /* unexpired entries dropped because the ring was full */
};

struct pow_replay_set *pow_replay_set_new(size_t capacity)
{
	struct pow_replay_set *set = calloc(1, sizeof(*set));
	size_t buckets = 64;

	if (set == NULL)
		abort();
	set->capacity = capacity > 0 ? capacity : 1;
	while (buckets < set->capacity)
		buckets *= 2;
	set->ring = calloc(set->capacity, sizeof(*set->ring));
	set->buckets = calloc(buckets, sizeof(*set->buckets));
	if (set->ring == NULL || set->buckets == NULL)
		abort();
	set->bucket_mask = buckets - 1;
	pthread_mutex_init(&set->lock, NULL);
	return set;
}

void pow_replay_set_free(struct pow_replay_set *set)
{
	if (set == NULL)
		return;
	free(set->ring);
	free(set->buckets);
	pthread_mutex_destroy(&set->lock);
	free(set);
}

static size_t digest_bucket(const struct pow_replay_set *set, const uint8_t *digest)
{
	uint64_t h;

	memcpy(&h, digest, sizeof(h));
	return (size_t)h & set->bucket_mask;
}

static void unlink_entry(struct pow_replay_set *set, struct replay_entry *entry)
{
	struct replay_entry **link = &set->buckets[digest_bucket(set, entry->digest)];

	while (*link != NULL && *link != entry)
		link = &(*link)->next;
	if (*link != NULL)
		*link = entry->next;
	entry->used = false;
	entry->next = NULL;
}

bool pow_replay_set_add(struct pow_replay_set *set, const uint8_t digest[POW_DIGEST_LEN],
                        uint64_t expires_at, uint64_t now)
{
	struct replay_entry *slot;
	size_t bucket = digest_bucket(set, digest);

	pthread_mutex_lock(&set->lock);
	for (struct replay_entry *e = set->buckets[bucket]; e != NULL; e = e->next) {
		if (memcmp(e->digest, digest, POW_DIGEST_LEN) == 0 && e->expires_at >= now) {
			pthread_mutex_unlock(&set->lock);
			return false;
		}
	}

	slot = &set->ring[set->next];
	if (slot->used) {
		if (slot->expires_at >= now && set->dropped_live++ % 1000 == 0)
			log_warn(
			        "proof-of-work replay set: dropped an unexpired proof because all "
			        "%zu "
			        "slots are in use (%llu so far); raise STEMEDB_POW_REPLAY_CAPACITY",
			        set->capacity, (unsigned long long)set->dropped_live);
		unlink_entry(set, slot);
	}
	memcpy(slot->digest, digest, POW_DIGEST_LEN);
	slot->expires_at = expires_at;
	slot->used = true;
	slot->next = set->buckets[bucket];
	set->buckets[bucket] = slot;
	set->next = (set->next + 1) % set->capacity;
	pthread_mutex_unlock(&set->lock);
	return true;
}
