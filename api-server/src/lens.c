/* Lenses and the skeptic conflict analysis. Every function here is pure: it reads a
 * candidate array and the query parameters and never changes a candidate, so decay
 * and grouping happen at read time only. docs/lenses.md gives every formula with a
 * worked example.
 *
 * Cost: grouping compares each candidate with the first member of every claim found so
 * far, O(candidates x claims). One query allocates at most three blocks (scratch,
 * claims with their member indices, scores) regardless of the candidate count. */

#include "lens.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stemedb/log.h"

#define SECONDS_PER_DAY     86400.0
#define DEFAULT_TRUST       0.5
#define CONTESTED_MIN_SCORE 0.5

/* Indexed by source class (tier) 0..5. A half-life of 0 days means the tier never decays. */
static const double half_life_days[SOURCE_CLASS_COUNT] = {0.0, 730.0, 365.0, 180.0, 90.0, 30.0};
static const double tier_weights[SOURCE_CLASS_COUNT] = {1.0, 0.8, 0.6, 0.4, 0.2, 0.1};

static const char *const lens_names[] = {
        [LENS_RECENCY] = "recency",     [LENS_CONFIDENCE] = "confidence",
        [LENS_CONSENSUS] = "consensus", [LENS_AUTHORITY] = "authority",
        [LENS_VOTE] = "vote",
};

struct lens_spelling {
	const char *text;
	enum lens_kind kind;
};

/* Wire names plus the upstream enum spellings. TrustAwareAuthority is the upstream name of
 * the same authority lens, which always weighs signer trust. */
static const struct lens_spelling lens_spellings[] = {
        {"recency", LENS_RECENCY},
        {"Recency", LENS_RECENCY},
        {"confidence", LENS_CONFIDENCE},
        {"Confidence", LENS_CONFIDENCE},
        {"consensus", LENS_CONSENSUS},
        {"Consensus", LENS_CONSENSUS},
        {"authority", LENS_AUTHORITY},
        {"Authority", LENS_AUTHORITY},
        {"TrustAwareAuthority", LENS_AUTHORITY},
        {"vote", LENS_VOTE},
        {"Vote", LENS_VOTE},
};

const char *lens_name(enum lens_kind kind)
{
	if ((size_t)kind >= sizeof(lens_names) / sizeof(lens_names[0]))
		return "unknown";
	return lens_names[kind];
}

bool lens_parse(const char *text, enum lens_kind *out)
{
	if (text == NULL)
		return false;

	for (size_t i = 0; i < sizeof(lens_spellings) / sizeof(lens_spellings[0]); i++) {
		if (strcmp(text, lens_spellings[i].text) == 0) {
			*out = lens_spellings[i].kind;
			return true;
		}
	}
	return false;
}

/* Stored records never carry a tier above 5 because the decoder rejects it. A corrupt
 * candidate counts as the least authoritative tier instead of indexing out of bounds. */
static uint8_t tier_index(uint8_t source_class)
{
	return source_class < SOURCE_CLASS_COUNT ? source_class : SOURCE_CLASS_COUNT - 1;
}

double lens_half_life_days(uint8_t source_class)
{
	return half_life_days[tier_index(source_class)];
}

double lens_tier_weight(uint8_t source_class)
{
	return tier_weights[tier_index(source_class)];
}

double lens_effective_confidence(const struct candidate *c, const struct lens_params *params)
{
	double confidence = (double)c->confidence_micro / (double)STEMEDB_CONFIDENCE_SCALE;
	if (confidence > 1.0)
		confidence = 1.0;

	double half_life = lens_half_life_days(c->source_class);
	if (!params->decay || half_life == 0.0 || params->reference_time <= c->timestamp)
		return confidence;

	double age_days = (double)(params->reference_time - c->timestamp) / SECONDS_PER_DAY;
	return confidence * exp2(-age_days / half_life);
}

/* Allocation failure aborts, as in struct buf, because no caller could serve a query
 * without the memory and the lens interface has no error path. */
static void *lens_alloc(size_t size, const char *purpose)
{
	void *p = malloc(size);
	if (p == NULL && size > 0) {
		log_error("malloc(%zu) for %s failed: out of memory", size, purpose);
		abort();
	}
	return p;
}

/* ---- Value comparison ---- */

/* The C locale's isspace set: space, tab, newline, vertical tab, form feed, return. */
static bool is_ascii_space(unsigned char ch)
{
	return ch == ' ' || (ch >= '\t' && ch <= '\r');
}

static unsigned char fold_ascii(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') ? (unsigned char)(ch + ('a' - 'A')) : ch;
}

/* Narrows [*start, *start + *len) to the text without leading and trailing ASCII space. */
static void trim_ascii_space(const unsigned char **start, size_t *len)
{
	while (*len > 0 && is_ascii_space((*start)[0])) {
		(*start)++;
		(*len)--;
	}
	while (*len > 0 && is_ascii_space((*start)[*len - 1]))
		(*len)--;
}

static bool texts_match(const struct object_value *a, const struct object_value *b)
{
	const unsigned char *pa = (const unsigned char *)(a->text != NULL ? a->text : "");
	const unsigned char *pb = (const unsigned char *)(b->text != NULL ? b->text : "");
	size_t la = a->text != NULL ? a->text_len : 0;
	size_t lb = b->text != NULL ? b->text_len : 0;

	trim_ascii_space(&pa, &la);
	trim_ascii_space(&pb, &lb);
	if (la != lb)
		return false;

	for (size_t i = 0; i < la; i++) {
		if (fold_ascii(pa[i]) != fold_ascii(pb[i]))
			return false;
	}
	return true;
}

/* A tolerance that is not a positive finite number means exact comparison. */
static bool numbers_match(double a, double b, double tolerance)
{
	if (!(tolerance > 0.0) || !isfinite(tolerance))
		return a == b;

	return fabs(a - b) <= tolerance * fmax(fabs(a), fabs(b));
}

static bool objects_match(const struct object_value *a, const struct object_value *b,
                          double tolerance)
{
	if (a->type != b->type)
		return false;

	switch (a->type) {
	case OBJECT_TEXT:
	case OBJECT_REFERENCE:
		return texts_match(a, b);
	case OBJECT_NUMBER:
		return numbers_match(a->number, b->number, tolerance);
	case OBJECT_BOOLEAN:
		return a->boolean == b->boolean;
	}
	return false;
}

/* ---- Orderings. Each returns > 0 when candidate a ranks above b, < 0 when below. ---- */

static int compare_u64(uint64_t a, uint64_t b)
{
	return (a > b) - (a < b);
}

static int compare_double(double a, double b)
{
	return (a > b) - (a < b);
}

/* The smaller hash ranks higher, so that every tie ends the same way on every node. */
static int compare_hash_smaller_first(const struct candidate *a, const struct candidate *b)
{
	return memcmp(b->hash, a->hash, STEMEDB_HASH_LEN);
}

/* Newer timestamp first, then the smaller hash. */
static int compare_newest_then_hash(const struct candidate *a, const struct candidate *b)
{
	int order = compare_u64(a->timestamp, b->timestamp);
	if (order != 0)
		return order;

	return compare_hash_smaller_first(a, b);
}

/* Newer timestamp, then higher HLC (wall clock, logical counter, node id), then the
 * smaller hash. */
static int compare_recency(const struct candidate *a, const struct candidate *b)
{
	int order = compare_u64(a->timestamp, b->timestamp);
	if (order == 0)
		order = compare_u64(a->hlc.wall_ms, b->hlc.wall_ms);
	if (order == 0)
		order = compare_u64(a->hlc.logical, b->hlc.logical);
	if (order == 0)
		order = memcmp(a->hlc.node_id, b->hlc.node_id, sizeof(a->hlc.node_id));
	if (order == 0)
		order = compare_hash_smaller_first(a, b);
	return order;
}

/* Higher score first (effective confidence or authority score), then newest, then the
 * smaller hash. */
static int compare_scored(const struct candidate *candidates, const double *scores, size_t a,
                          size_t b)
{
	int order = compare_double(scores[a], scores[b]);
	if (order != 0)
		return order;

	return compare_newest_then_hash(&candidates[a], &candidates[b]);
}

/* ---- Distinct agents ---- */

static size_t agent_count_of(const struct candidate *c)
{
	return c->agent_count < STEMEDB_SIGNATURES_MAX ? c->agent_count : STEMEDB_SIGNATURES_MAX;
}

static int compare_agent_ids(const void *a, const void *b)
{
	const uint8_t *const *ida = a;
	const uint8_t *const *idb = b;
	return memcmp(*ida, *idb, STEMEDB_AGENT_ID_LEN);
}

/* Counts the distinct signers of the listed candidates (all candidates when indices is
 * NULL). ids must have room for every signer of those candidates. */
static size_t count_distinct_agents(const struct candidate *candidates, const size_t *indices,
                                    size_t count, const uint8_t **ids)
{
	size_t total = 0;
	for (size_t i = 0; i < count; i++) {
		const struct candidate *c = &candidates[indices != NULL ? indices[i] : i];
		for (size_t k = 0; k < agent_count_of(c); k++)
			ids[total++] = c->agents[k];
	}
	if (total < 2)
		return total;

	qsort(ids, total, sizeof(ids[0]), compare_agent_ids);

	size_t distinct = 1;
	for (size_t i = 1; i < total; i++) {
		if (memcmp(ids[i - 1], ids[i], STEMEDB_AGENT_ID_LEN) != 0)
			distinct++;
	}
	return distinct;
}

/* ---- Grouping into claims ---- */

/* Working memory of one grouping, carved from a single allocation. */
struct grouping_scratch {
	double *effective;   /* effective confidence per candidate */
	size_t *claim_of;    /* claim index per candidate */
	size_t *founders;    /* first candidate of each claim: the value later candidates match */
	const uint8_t **ids; /* agent ids, for distinct counting */
	void *block;
};

static void scratch_init(struct grouping_scratch *s, const struct candidate *candidates,
                         size_t count)
{
	size_t agent_total = 0;
	for (size_t i = 0; i < count; i++)
		agent_total += agent_count_of(&candidates[i]);

	/* Doubles come first so that every part is aligned for its type. */
	size_t size = count * sizeof(double) + 2 * count * sizeof(size_t) +
	              agent_total * sizeof(const uint8_t *);
	s->block = lens_alloc(size, "claim grouping scratch");

	char *next = s->block;
	s->effective = (double *)(void *)next;
	next += count * sizeof(double);
	s->claim_of = (size_t *)(void *)next;
	next += count * sizeof(size_t);
	s->founders = (size_t *)(void *)next;
	next += count * sizeof(size_t);
	s->ids = (const uint8_t **)(void *)next;
}

/* Assigns each candidate to the first claim whose founder value matches, in candidate
 * order, and returns the number of claims. With a numeric tolerance this is greedy and
 * not transitive: 100, 100.9 and 101.8 at tolerance 0.01 give two claims, because
 * 101.8 is compared with the founder 100 only. */
static size_t assign_claims(const struct candidate *candidates, size_t count, double tolerance,
                            struct grouping_scratch *s)
{
	size_t claim_count = 0;

	for (size_t i = 0; i < count; i++) {
		size_t k = 0;
		while (k < claim_count && !objects_match(&candidates[s->founders[k]].object,
		                                         &candidates[i].object, tolerance))
			k++;

		if (k == claim_count)
			s->founders[claim_count++] = i;
		s->claim_of[i] = k;
	}
	return claim_count;
}

/* Allocates the claims and their member arrays in one block, so that claim_set_free
 * frees one pointer, and fills the member indices in candidate order. */
static void build_claims(size_t count, size_t claim_count, const size_t *claim_of,
                         struct claim_set *out)
{
	size_t size = claim_count * sizeof(struct claim) + count * sizeof(size_t);
	out->claims = lens_alloc(size, "claims");
	out->count = claim_count;
	memset(out->claims, 0, claim_count * sizeof(struct claim));

	for (size_t i = 0; i < count; i++)
		out->claims[claim_of[i]].member_count++;

	size_t *next = (size_t *)(out->claims + claim_count);
	for (size_t k = 0; k < claim_count; k++) {
		out->claims[k].members = next;
		next += out->claims[k].member_count;
		out->claims[k].member_count = 0;
	}

	for (size_t i = 0; i < count; i++) {
		struct claim *cl = &out->claims[claim_of[i]];
		cl->members[cl->member_count++] = i;
	}
}

/* Fills the derived fields of one claim. The representative is the member a confidence
 * ranking puts first: highest effective confidence, then newest, then smaller hash. */
static void summarize_claim(const struct candidate *candidates, const double *effective,
                            const uint8_t **ids, struct claim *cl)
{
	cl->representative = cl->members[0];
	cl->best_tier = candidates[cl->members[0]].source_class;

	for (size_t m = 0; m < cl->member_count; m++) {
		size_t i = cl->members[m];
		const struct candidate *c = &candidates[i];

		cl->effective_confidence_sum += effective[i];
		cl->weight += effective[i] * lens_tier_weight(c->source_class);
		if (c->source_class < cl->best_tier)
			cl->best_tier = c->source_class;
		if (c->timestamp > cl->newest_timestamp)
			cl->newest_timestamp = c->timestamp;
		if (compare_scored(candidates, effective, i, cl->representative) > 0)
			cl->representative = i;
	}

	cl->distinct_agents = count_distinct_agents(candidates, cl->members, cl->member_count, ids);
}

/* share = weight / total weight. When every claim weighs zero (every member decayed to
 * zero or has confidence 0) with two or more claims, the shares are equal instead, so
 * that the conflict score reports the disagreement (1.0) rather than dividing by zero. */
static void compute_shares(struct claim_set *set)
{
	double total = 0.0;
	for (size_t k = 0; k < set->count; k++)
		total += set->claims[k].weight;

	for (size_t k = 0; k < set->count; k++) {
		struct claim *cl = &set->claims[k];
		cl->share = total > 0.0 ? cl->weight / total : 1.0 / (double)set->count;
	}
}

/* Groups the candidates and, when all_agents is not NULL, counts the distinct signers
 * over every candidate. */
static void group_claims(const struct candidate *candidates, size_t count,
                         const struct lens_params *params, struct claim_set *out,
                         size_t *all_agents)
{
	struct grouping_scratch s;

	out->claims = NULL;
	out->count = 0;
	if (all_agents != NULL)
		*all_agents = 0;
	if (count == 0)
		return;

	scratch_init(&s, candidates, count);
	for (size_t i = 0; i < count; i++)
		s.effective[i] = lens_effective_confidence(&candidates[i], params);

	size_t claim_count = assign_claims(candidates, count, params->tolerance, &s);
	build_claims(count, claim_count, s.claim_of, out);
	for (size_t k = 0; k < claim_count; k++)
		summarize_claim(candidates, s.effective, s.ids, &out->claims[k]);
	compute_shares(out);

	if (all_agents != NULL)
		*all_agents = count_distinct_agents(candidates, NULL, count, s.ids);
	free(s.block);
}

void lens_group_claims(const struct candidate *candidates, size_t count,
                       const struct lens_params *params, struct claim_set *out)
{
	group_claims(candidates, count, params, out, NULL);
}

void claim_set_free(struct claim_set *set)
{
	/* The member arrays live in the same block as the claims. */
	free(set->claims);
	set->claims = NULL;
	set->count = 0;
}

/* ---- Lenses ---- */

static void resolve_recency(const struct candidate *candidates, size_t count,
                            const struct lens_params *params, struct lens_result *out)
{
	size_t best = 0;
	for (size_t i = 0; i < count; i++) {
		out->scores[i] = (double)candidates[i].timestamp;
		if (compare_recency(&candidates[i], &candidates[best]) > 0)
			best = i;
	}

	out->winner = best;
	out->confidence = lens_effective_confidence(&candidates[best], params);
}

static void resolve_confidence(const struct candidate *candidates, size_t count,
                               const struct lens_params *params, struct lens_result *out)
{
	size_t best = 0;
	for (size_t i = 0; i < count; i++) {
		out->scores[i] = lens_effective_confidence(&candidates[i], params);
		if (compare_scored(candidates, out->scores, i, best) > 0)
			best = i;
	}

	out->winner = best;
	out->confidence = out->scores[best];
}

/* More distinct agents first, then the larger effective confidence sum, then the newest
 * member, then the representative with the smaller hash so that the result never depends
 * on candidate order. */
static int compare_consensus_claims(const struct candidate *candidates, const struct claim *a,
                                    const struct claim *b)
{
	int order = compare_u64(a->distinct_agents, b->distinct_agents);
	if (order == 0)
		order = compare_double(a->effective_confidence_sum, b->effective_confidence_sum);
	if (order == 0)
		order = compare_u64(a->newest_timestamp, b->newest_timestamp);
	if (order == 0)
		order = compare_hash_smaller_first(&candidates[a->representative],
		                                   &candidates[b->representative]);
	return order;
}

/* Lens confidence = distinct agents of the winning claim / distinct agents overall. */
static void resolve_consensus(const struct candidate *candidates, size_t count,
                              const struct lens_params *params, struct lens_result *out)
{
	struct claim_set set;
	size_t all_agents;
	group_claims(candidates, count, params, &set, &all_agents);

	const struct claim *best = &set.claims[0];
	for (size_t k = 0; k < set.count; k++) {
		const struct claim *cl = &set.claims[k];
		for (size_t m = 0; m < cl->member_count; m++)
			out->scores[cl->members[m]] = (double)cl->distinct_agents;
		if (compare_consensus_claims(candidates, cl, best) > 0)
			best = cl;
	}

	out->winner = best->representative;
	out->confidence = all_agents > 0 ? (double)best->distinct_agents / (double)all_agents : 0.0;
	claim_set_free(&set);
}

/* Sum of the signers' trust. A lookup result outside 0..1 (or NaN) is clamped, so that
 * one bad trust record cannot outweigh a tier's other claims without bound. */
static double trust_sum(const struct candidate *c, const struct lens_params *params)
{
	double sum = 0.0;
	for (size_t k = 0; k < agent_count_of(c); k++) {
		double trust = DEFAULT_TRUST;
		if (params->trust != NULL)
			trust = params->trust(params->trust_ctx, c->agents[k]);
		if (!(trust >= 0.0))
			trust = 0.0;
		sum += trust > 1.0 ? 1.0 : trust;
	}
	return sum;
}

static uint8_t best_populated_tier(const struct candidate *candidates, size_t count)
{
	uint8_t best = candidates[0].source_class;
	for (size_t i = 1; i < count; i++) {
		if (candidates[i].source_class < best)
			best = candidates[i].source_class;
	}
	return best;
}

/* Only the most authoritative populated tier competes; its candidates score effective
 * confidence x the sum of their signers' trust, and the others score 0. */
static void resolve_authority(const struct candidate *candidates, size_t count,
                              const struct lens_params *params, struct lens_result *out)
{
	uint8_t tier = best_populated_tier(candidates, count);
	bool found = false;

	for (size_t i = 0; i < count; i++) {
		out->scores[i] = 0.0;
		if (candidates[i].source_class != tier)
			continue;

		out->scores[i] = lens_effective_confidence(&candidates[i], params) *
		                 trust_sum(&candidates[i], params);
		if (!found || compare_scored(candidates, out->scores, i, out->winner) > 0)
			out->winner = i;
		found = true;
	}

	out->confidence = lens_effective_confidence(&candidates[out->winner], params);
}

/* The newest member of a claim: the candidate that represents a vote lens winner. */
static size_t newest_member(const struct candidate *candidates, const struct claim *claim)
{
	size_t best = claim->members[0];
	for (size_t m = 1; m < claim->member_count; m++) {
		if (compare_recency(&candidates[claim->members[m]], &candidates[best]) > 0)
			best = claim->members[m];
	}
	return best;
}

/* Sums the counted vote weights of every member of each claim into sums. */
static void sum_claim_votes(const struct candidate *candidates, const struct claim_set *set,
                            const struct lens_params *params, double *sums)
{
	for (size_t k = 0; k < set->count; k++) {
		const struct claim *cl = &set->claims[k];

		sums[k] = 0.0;
		for (size_t m = 0; m < cl->member_count && params->votes != NULL; m++) {
			double sum =
			        params->votes(params->votes_ctx, candidates[cl->members[m]].hash);
			if (isfinite(sum))
				sums[k] += sum;
		}
	}
}

/* The claim with the highest sum of counted vote weights wins; ties go to the claim with
 * the newest member. Lens confidence = the winner's sum / the sum of the positive claim
 * sums, and 0 when no claim has a positive sum. */
static void resolve_vote(const struct candidate *candidates, size_t count,
                         const struct lens_params *params, struct lens_result *out)
{
	struct claim_set set;
	size_t all_agents;
	double *sums;
	double positive = 0.0;
	size_t best = 0;

	group_claims(candidates, count, params, &set, &all_agents);
	sums = lens_alloc(set.count * sizeof(double), "claim vote sums");
	sum_claim_votes(candidates, &set, params, sums);

	for (size_t k = 0; k < set.count; k++) {
		int order = compare_double(sums[k], sums[best]);
		if (order == 0)
			order = compare_recency(
			        &candidates[newest_member(candidates, &set.claims[k])],
			        &candidates[newest_member(candidates, &set.claims[best])]);
		if (order > 0)
			best = k;
		if (sums[k] > 0.0)
			positive += sums[k];
		for (size_t m = 0; m < set.claims[k].member_count; m++)
			out->scores[set.claims[k].members[m]] = sums[k];
	}

	out->winner = newest_member(candidates, &set.claims[best]);
	out->confidence = positive > 0.0 && sums[best] > 0.0 ? sums[best] / positive : 0.0;
	free(sums);
	claim_set_free(&set);
}

void lens_resolve(enum lens_kind kind, const struct candidate *candidates, size_t count,
                  const struct lens_params *params, struct lens_result *out)
{
	memset(out, 0, sizeof(*out));
	if (count == 0)
		return;

	out->scores = lens_alloc(count * sizeof(double), "lens scores");
	out->score_count = count;
	out->has_winner = true;

	switch (kind) {
	case LENS_RECENCY:
		resolve_recency(candidates, count, params, out);
		return;
	case LENS_CONFIDENCE:
		resolve_confidence(candidates, count, params, out);
		return;
	case LENS_CONSENSUS:
		resolve_consensus(candidates, count, params, out);
		return;
	case LENS_AUTHORITY:
		resolve_authority(candidates, count, params, out);
		return;
	case LENS_VOTE:
		resolve_vote(candidates, count, params, out);
		return;
	}

	/* Only a caller that skipped lens_parse gets here. */
	log_error("lens_resolve: invalid lens kind %d; obtain the kind from lens_parse", (int)kind);
	lens_result_free(out);
}

void lens_result_free(struct lens_result *result)
{
	free(result->scores);
	memset(result, 0, sizeof(*result));
}

/* ---- Skeptic ---- */

const char *skeptic_status_name(enum skeptic_status status)
{
	switch (status) {
	case SKEPTIC_NO_DATA:
		return "no_data";
	case SKEPTIC_UNANIMOUS:
		return "unanimous";
	case SKEPTIC_AGREED:
		return "agreed";
	case SKEPTIC_CONTESTED:
		return "contested";
	}
	return "unknown";
}

/* Normalized Shannon entropy of the shares: -sum p ln p / ln n, with 0 ln 0 = 0. The
 * result is clamped to 0..1 against rounding. */
static double normalized_entropy(const struct claim_set *set)
{
	if (set->count < 2)
		return 0.0;

	double entropy = 0.0;
	for (size_t k = 0; k < set->count; k++) {
		double p = set->claims[k].share;
		if (p > 0.0)
			entropy -= p * log(p);
	}

	double score = entropy / log((double)set->count);
	return score < 0.0 ? 0.0 : (score > 1.0 ? 1.0 : score);
}

/* Larger share first, then more members, then the newest member, then the representative
 * with the smaller hash. */
static int compare_skeptic_claims(const void *pa, const void *pb, void *ctx)
{
	const struct candidate *candidates = ctx;
	const struct claim *a = pa;
	const struct claim *b = pb;

	int order = compare_double(a->share, b->share);
	if (order == 0)
		order = compare_u64(a->member_count, b->member_count);
	if (order == 0)
		order = compare_u64(a->newest_timestamp, b->newest_timestamp);
	if (order == 0)
		order = compare_hash_smaller_first(&candidates[a->representative],
		                                   &candidates[b->representative]);

	/* qsort_r puts the smaller first, and the higher-ranked claim must come first. */
	return -order;
}

void skeptic_analyze(const struct candidate *candidates, size_t count,
                     const struct lens_params *params, struct skeptic_result *out)
{
	memset(out, 0, sizeof(*out));
	group_claims(candidates, count, params, &out->claims, NULL);

	if (out->claims.count == 0) {
		out->status = SKEPTIC_NO_DATA;
		return;
	}

	qsort_r(out->claims.claims, out->claims.count, sizeof(struct claim), compare_skeptic_claims,
	        (void *)candidates);
	out->conflict_score = normalized_entropy(&out->claims);

	if (out->claims.count == 1)
		out->status = SKEPTIC_UNANIMOUS;
	else if (out->conflict_score >= CONTESTED_MIN_SCORE)
		out->status = SKEPTIC_CONTESTED;
	else
		out->status = SKEPTIC_AGREED;
}

void skeptic_result_free(struct skeptic_result *result)
{
	claim_set_free(&result->claims);
	result->status = SKEPTIC_NO_DATA;
	result->conflict_score = 0.0;
}

/* ---- Layered ---- */

/* Copies the candidates of one tier into layer->items and analyzes them alone. The
 * copies share object text with the originals, so only the array is freed. */
static void analyze_tier(const struct candidate *candidates, const struct lens_params *params,
                         struct layered_tier *layer)
{
	layer->items = lens_alloc(layer->count * sizeof(*layer->items), "layered tier");
	for (size_t i = 0; i < layer->count; i++)
		layer->items[i] = candidates[layer->indices[i]];
	skeptic_analyze(layer->items, layer->count, params, &layer->skeptic);
}

void lens_layered(const struct candidate *candidates, size_t count,
                  const struct lens_params *params, struct layered_result *out)
{
	size_t per_tier[SOURCE_CLASS_COUNT] = {0};

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < count; i++)
		per_tier[tier_index(candidates[i].source_class)]++;

	for (uint8_t t = 0; t < SOURCE_CLASS_COUNT; t++) {
		struct layered_tier *layer;

		if (per_tier[t] == 0)
			continue;
		layer = &out->tiers[out->tier_count++];
		layer->tier = t;
		layer->indices = lens_alloc(per_tier[t] * sizeof(size_t), "layered tier indices");
		for (size_t i = 0; i < count; i++) {
			if (tier_index(candidates[i].source_class) == t)
				layer->indices[layer->count++] = i;
		}
		analyze_tier(candidates, params, layer);
	}

	skeptic_analyze(candidates, count, params, &out->overall);
}

void layered_result_free(struct layered_result *result)
{
	for (size_t k = 0; k < result->tier_count; k++) {
		free(result->tiers[k].indices);
		free(result->tiers[k].items);
		skeptic_result_free(&result->tiers[k].skeptic);
	}
	result->tier_count = 0;
	skeptic_result_free(&result->overall);
}
