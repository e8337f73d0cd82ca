#ifndef STEMEDB_LENS_H
#define STEMEDB_LENS_H

/* Lenses: read-time resolution of the candidates of one (subject, predicate).
 * Pure functions over a candidate array; nothing here touches storage, and decay
 * never changes a candidate. docs/lenses.md gives every formula. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "candidate.h"

enum lens_kind {
	LENS_RECENCY = 0,
	LENS_CONFIDENCE,
	LENS_CONSENSUS,
	LENS_AUTHORITY,
	LENS_VOTE,
};

const char *lens_name(enum lens_kind kind);
bool lens_parse(const char *text, enum lens_kind *out);

/* Trust of an agent in 0..1; lenses use 0.5 for every agent when no lookup is given. */
typedef double (*lens_trust_fn)(void *ctx, const uint8_t agent_id[STEMEDB_AGENT_ID_LEN]);

/* Sum of the counted vote weights (-1..1 each, the latest vote per voter) on one
 * assertion; the vote lens treats every candidate as unvoted when no lookup is given. */
typedef double (*lens_vote_fn)(void *ctx, const uint8_t hash[STEMEDB_HASH_LEN]);

struct lens_params {
	uint64_t reference_time; /* Unix seconds that ages are measured from: as_of or now */
	bool decay;              /* false turns decay off */
	double tolerance;        /* relative tolerance for grouping numbers; 0 = exact */
	lens_trust_fn trust;     /* NULL: every agent has trust 0.5 */
	void *trust_ctx;
	lens_vote_fn votes; /* NULL: no candidate has votes */
	void *votes_ctx;
};

/* Half-life in days of a source class; 0 means the class never decays. */
double lens_half_life_days(uint8_t source_class);
/* Weight of a tier when tiers are weighed together: 1.0, 0.8, 0.6, 0.4, 0.2, 0.1. */
double lens_tier_weight(uint8_t source_class);
/* confidence * 0.5^(age_days / half_life); age is clamped at 0 for future timestamps. */
double lens_effective_confidence(const struct candidate *c, const struct lens_params *params);

/* A claim: the candidates that assert the same value (after text trimming and ASCII
 * case folding, or numeric tolerance). members are indices into the candidate array. */
struct claim {
	size_t *members;
	size_t member_count;
	size_t representative;  /* index of the candidate whose value represents the claim */
	size_t distinct_agents; /* distinct signers over all members */
	double effective_confidence_sum;
	double weight;     /* skeptic weight: sum of effective confidence x tier weight */
	double share;      /* weight / total weight */
	uint8_t best_tier; /* lowest tier number among members */
	uint64_t newest_timestamp;
};

struct claim_set {
	struct claim *claims;
	size_t count;
};

/* Groups candidates into claims, in order of first appearance. */
void lens_group_claims(const struct candidate *candidates, size_t count,
                       const struct lens_params *params, struct claim_set *out);
void claim_set_free(struct claim_set *set);

struct lens_result {
	bool has_winner;
	size_t winner;     /* index into the candidate array */
	double confidence; /* lens confidence in 0..1 */
	/* Per-candidate score that decided the lens, for responses and audit. */
	double *scores;
	size_t score_count;
};

/* Resolves one lens over the candidates. An empty array yields no winner. */
void lens_resolve(enum lens_kind kind, const struct candidate *candidates, size_t count,
                  const struct lens_params *params, struct lens_result *out);
void lens_result_free(struct lens_result *result);

enum skeptic_status { SKEPTIC_NO_DATA = 0, SKEPTIC_UNANIMOUS, SKEPTIC_AGREED, SKEPTIC_CONTESTED };
const char *skeptic_status_name(enum skeptic_status status);

struct skeptic_result {
	enum skeptic_status status;
	double conflict_score;   /* normalized Shannon entropy of claim shares, 0..1 */
	struct claim_set claims; /* sorted by share, largest first */
};

/* Conflict analysis: W_i = sum of effective confidence x tier weight per claim,
 * p_i = W_i / sum W, score = -sum p_i ln p_i / ln n for n >= 2 claims. */
void skeptic_analyze(const struct candidate *candidates, size_t count,
                     const struct lens_params *params, struct skeptic_result *out);
void skeptic_result_free(struct skeptic_result *result);

/* One populated tier of a layered view. The member indices of skeptic.claims point into
 * items, shallow copies of the tier's candidates; indices maps them to the full array. */
struct layered_tier {
	uint8_t tier;
	struct candidate *items;
	size_t *indices;
	size_t count;
	struct skeptic_result skeptic; /* claims[0] is the tier's leading claim */
};

struct layered_result {
	struct layered_tier tiers[SOURCE_CLASS_COUNT]; /* populated tiers, lowest number first */
	size_t tier_count;
	struct skeptic_result overall; /* skeptic over every candidate: the cross-tier score */
};

/* Runs the skeptic analysis inside each populated tier and over all candidates. The
 * overall answer is the leading claim of tiers[0], the most authoritative populated
 * tier; an empty array yields no tiers. */
void lens_layered(const struct candidate *candidates, size_t count,
                  const struct lens_params *params, struct layered_result *out);
void layered_result_free(struct layered_result *result);

#endif
