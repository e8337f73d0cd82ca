/* Unit tests of the lenses and the skeptic analysis, on candidates built by hand and
 * expected values computed by hand (the decay factors are 0.5^(200 / half-life) written
 * out to four or more digits). */

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lens.h"

#define NOW 1700000000ull
#define DAY 86400ull

/* Fills c with a Boolean candidate whose hash and single signer are derived from id, so
 * that a smaller id means a smaller hash and distinct ids mean distinct agents. */
static void fill(struct candidate *c, uint16_t id, double confidence, uint8_t tier,
                 uint64_t timestamp)
{
	memset(c, 0, sizeof(*c));
	c->hash[0] = (uint8_t)(id >> 8);
	c->hash[1] = (uint8_t)id;
	c->confidence_micro = (uint32_t)(confidence * 1e6 + 0.5);
	c->source_class = tier;
	c->timestamp = timestamp;
	c->hlc.wall_ms = timestamp * 1000;
	c->agent_count = 1;
	c->agents[0][0] = (uint8_t)(id >> 8);
	c->agents[0][1] = (uint8_t)id;
	c->object.type = OBJECT_BOOLEAN;
}

static void set_boolean(struct candidate *c, bool value)
{
	c->object.type = OBJECT_BOOLEAN;
	c->object.boolean = value;
}

static void set_number(struct candidate *c, double value)
{
	c->object.type = OBJECT_NUMBER;
	c->object.number = value;
}

static void set_text(struct candidate *c, enum object_type type, const char *value)
{
	c->object.type = type;
	c->object.text = strdup(value);
	assert_non_null(c->object.text);
	c->object.text_len = strlen(value);
}

/* Gives c the signers first_id, first_id + 1, ... (count of them). */
static void set_agents(struct candidate *c, uint16_t first_id, size_t count)
{
	c->agent_count = count;
	for (size_t k = 0; k < count; k++) {
		uint16_t id = (uint16_t)(first_id + k);
		memset(c->agents[k], 0, STEMEDB_AGENT_ID_LEN);
		c->agents[k][0] = (uint8_t)(id >> 8);
		c->agents[k][1] = (uint8_t)id;
	}
}

static void free_texts(struct candidate *c, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(c[i].object.text);
}

static struct lens_params default_params(void)
{
	struct lens_params p = {
	        .reference_time = NOW, .decay = true, .tolerance = 0.0, .trust = NULL};
	return p;
}

static void assert_near(double seen, double expected, double epsilon, const char *what)
{
	if (fabs(seen - expected) > epsilon)
		fail_msg("%s: saw %.6f, expected %.6f within %g", what, seen, expected, epsilon);
}

static void assert_winner(const struct lens_result *r, size_t expected, const char *what)
{
	if (!r->has_winner)
		fail_msg("%s: no winner, expected candidate %zu", what, expected);
	if (r->winner != expected)
		fail_msg("%s: winner %zu, expected %zu", what, r->winner, expected);
}

/* Index of the claim that contains candidate, or SIZE_MAX. */
static size_t claim_of(const struct claim_set *set, size_t candidate)
{
	for (size_t k = 0; k < set->count; k++) {
		for (size_t m = 0; m < set->claims[k].member_count; m++) {
			if (set->claims[k].members[m] == candidate)
				return k;
		}
	}
	return SIZE_MAX;
}

/* ---- Effective confidence and tables ---- */

static void test_decay_every_tier_at_200_days(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	/* 0.5^(200 / half-life) for half-lives none, 730, 365, 180, 90, 30 days. */
	const double factor[SOURCE_CLASS_COUNT] = {1.0,      0.827039, 0.683994,
	                                           0.462937, 0.214311, 0.009843};
	struct candidate c;

	for (uint8_t tier = 0; tier < SOURCE_CLASS_COUNT; tier++) {
		fill(&c, 1, 1.0, tier, NOW - 200 * DAY);
		double seen = lens_effective_confidence(&c, &p);
		if (fabs(seen - factor[tier]) > 1e-5)
			fail_msg("tier %u at 200 days: saw %.6f, expected %.6f", tier, seen,
			         factor[tier]);
	}

	fill(&c, 1, 0.95, SOURCE_REGULATORY, NOW - 200 * DAY);
	assert_near(lens_effective_confidence(&c, &p), 0.95, 1e-9, "regulatory 0.95");

	fill(&c, 1, 1.0, SOURCE_CLINICAL, NOW - 200 * DAY);
	assert_near(lens_effective_confidence(&c, &p), 0.8270, 1e-4, "clinical factor");

	fill(&c, 1, 1.0, SOURCE_ANECDOTAL, NOW - 200 * DAY);
	assert_near(lens_effective_confidence(&c, &p), 0.00984, 1e-5, "anecdotal factor");
}

static void test_decay_off_keeps_confidence(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	p.decay = false;
	struct candidate c;

	fill(&c, 1, 0.7, SOURCE_ANECDOTAL, NOW - 200 * DAY);
	assert_near(lens_effective_confidence(&c, &p), 0.7, 1e-9, "decay off, anecdotal 0.7");
}

static void test_future_timestamp_not_boosted(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c;

	fill(&c, 1, 0.6, SOURCE_ANECDOTAL, NOW + 90 * DAY);
	assert_near(lens_effective_confidence(&c, &p), 0.6, 1e-9, "timestamp 90 days ahead");
}

static void test_half_life_and_weight_tables(void **state)
{
	(void)state;
	const double half_life[SOURCE_CLASS_COUNT] = {0, 730, 365, 180, 90, 30};
	const double weight[SOURCE_CLASS_COUNT] = {1.0, 0.8, 0.6, 0.4, 0.2, 0.1};

	for (uint8_t tier = 0; tier < SOURCE_CLASS_COUNT; tier++) {
		if (lens_half_life_days(tier) != half_life[tier])
			fail_msg("half-life of tier %u: %g", tier, lens_half_life_days(tier));
		if (lens_tier_weight(tier) != weight[tier])
			fail_msg("weight of tier %u: %g", tier, lens_tier_weight(tier));
	}
}

/* ---- Acceptance cases ---- */

static void test_skeptic_contested_booleans(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[2];
	struct skeptic_result r;

	fill(&c[0], 1, 0.85, SOURCE_CLINICAL, NOW - DAY);
	set_boolean(&c[0], false);
	fill(&c[1], 2, 0.85, SOURCE_CLINICAL, NOW - DAY);
	set_boolean(&c[1], true);

	skeptic_analyze(c, 2, &p, &r);
	assert_int_equal(r.status, SKEPTIC_CONTESTED);
	if (r.conflict_score < 0.88)
		fail_msg("conflict score %.6f is below 0.88", r.conflict_score);
	assert_near(r.conflict_score, 1.0, 1e-12, "conflict score of two equal claims");
	assert_int_equal(r.claims.count, 2);
	assert_int_equal(r.claims.claims[0].member_count, 1);
	assert_int_equal(r.claims.claims[1].member_count, 1);
	assert_near(r.claims.claims[0].share, 0.5, 1e-12, "share of first claim");

	/* No averaged value: each claim keeps its own Boolean. */
	bool first = c[r.claims.claims[0].representative].object.boolean;
	bool second = c[r.claims.claims[1].representative].object.boolean;
	assert_true(first != second);
	skeptic_result_free(&r);
}

/* One regulatory claim against 100 anecdotal ones from distinct agents: authority ranks
 * tier first and picks the regulatory claim, while consensus counts agents and picks
 * the anecdotal claim. */
static void test_authority_and_consensus_contrast(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	const size_t n = 101;
	struct candidate *c = calloc(n, sizeof(*c));
	assert_non_null(c);
	struct lens_result r;

	fill(&c[0], 1000, 0.95, SOURCE_REGULATORY, NOW - DAY);
	set_boolean(&c[0], true);
	for (size_t i = 1; i < n; i++) {
		fill(&c[i], (uint16_t)i, 0.8, SOURCE_ANECDOTAL, NOW - DAY);
		set_boolean(&c[i], false);
	}

	lens_resolve(LENS_AUTHORITY, c, n, &p, &r);
	assert_winner(&r, 0, "authority");
	assert_near(r.confidence, 0.95, 1e-9, "authority lens confidence");
	assert_near(r.scores[0], 0.95 * 0.5, 1e-9, "authority score of the regulatory claim");
	assert_near(r.scores[1], 0.0, 0.0, "authority score outside the top tier");
	lens_result_free(&r);

	lens_resolve(LENS_CONSENSUS, c, n, &p, &r);
	assert_true(r.has_winner);
	if (r.winner == 0)
		fail_msg("consensus picked the regulatory candidate, expected an anecdotal one");
	assert_winner(&r, 1, "consensus, anecdotal member with the smallest hash");
	assert_false(c[r.winner].object.boolean);
	assert_near(r.confidence, 100.0 / 101.0, 1e-12, "consensus lens confidence");
	assert_near(r.scores[0], 1.0, 0.0, "consensus score of the regulatory claim");
	assert_near(r.scores[50], 100.0, 0.0, "consensus score of an anecdotal claim");
	lens_result_free(&r);

	free(c);
}

/* The store filters candidates by as_of, so here only the reference time changes. The
 * decay it implies can change the winner. */
static void test_reference_time_changes_winner(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[2];
	struct lens_result r;

	fill(&c[0], 1, 0.9, SOURCE_ANECDOTAL, NOW);
	fill(&c[1], 2, 0.6, SOURCE_CLINICAL, NOW);

	p.reference_time = NOW;
	lens_resolve(LENS_CONFIDENCE, c, 2, &p, &r);
	assert_winner(&r, 0, "confidence at age 0");
	assert_near(r.confidence, 0.9, 1e-9, "lens confidence at age 0");
	lens_result_free(&r);

	/* 60 days later: 0.9 x 0.5^(60/30) = 0.225 against 0.6 x 0.5^(60/730) = 0.56677. */
	p.reference_time = NOW + 60 * DAY;
	lens_resolve(LENS_CONFIDENCE, c, 2, &p, &r);
	assert_winner(&r, 1, "confidence at age 60 days");
	assert_near(r.confidence, 0.56677, 1e-5, "lens confidence at age 60 days");
	assert_near(r.scores[0], 0.225, 1e-9, "decayed anecdotal score");
	lens_result_free(&r);

	/* Same timestamp and HLC: the smaller hash, candidate 0, is the newest. */
	lens_resolve(LENS_RECENCY, c, 2, &p, &r);
	assert_winner(&r, 0, "recency at age 60 days");
	assert_near(r.confidence, 0.225, 1e-9, "recency lens confidence");
	lens_result_free(&r);
}

/* ---- Recency ---- */

static void test_recency_newest_timestamp(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[3];
	struct lens_result r;

	fill(&c[0], 1, 0.9, SOURCE_CLINICAL, NOW - 30 * DAY);
	fill(&c[1], 2, 0.5, SOURCE_ANECDOTAL, NOW - DAY);
	fill(&c[2], 3, 0.9, SOURCE_REGULATORY, NOW - 10 * DAY);
	/* An HLC that is ahead must not beat a newer timestamp. */
	c[2].hlc.wall_ms = (NOW + DAY) * 1000;

	lens_resolve(LENS_RECENCY, c, 3, &p, &r);
	assert_winner(&r, 1, "recency");
	assert_near(r.confidence, 0.5 * exp2(-1.0 / 30.0), 1e-9, "recency lens confidence");
	assert_near(r.scores[0], (double)(NOW - 30 * DAY), 0.0, "recency score is the timestamp");
	assert_int_equal(r.score_count, 3);
	lens_result_free(&r);
}

static void test_recency_tie_breaks(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[2];
	struct lens_result r;

	fill(&c[0], 1, 0.5, SOURCE_CLINICAL, NOW);
	fill(&c[1], 2, 0.5, SOURCE_CLINICAL, NOW);
	c[0].hlc.wall_ms = NOW * 1000 + 5;
	c[1].hlc.wall_ms = NOW * 1000 + 7;
	lens_resolve(LENS_RECENCY, c, 2, &p, &r);
	assert_winner(&r, 1, "higher HLC wall clock");
	lens_result_free(&r);

	c[1].hlc.wall_ms = c[0].hlc.wall_ms;
	c[0].hlc.logical = 2;
	c[1].hlc.logical = 3;
	lens_resolve(LENS_RECENCY, c, 2, &p, &r);
	assert_winner(&r, 1, "higher HLC logical counter");
	lens_result_free(&r);

	c[0].hlc.logical = 3;
	c[1].hlc.node_id[15] = 1;
	lens_resolve(LENS_RECENCY, c, 2, &p, &r);
	assert_winner(&r, 1, "higher HLC node id");
	lens_result_free(&r);

	c[1].hlc.node_id[15] = 0;
	c[0].hash[5] = 0xff; /* c[0] still has the smaller hash: byte 1 decides first */
	lens_resolve(LENS_RECENCY, c, 2, &p, &r);
	assert_winner(&r, 0, "equal HLC, smaller hash");
	lens_result_free(&r);

	c[0].hash[1] = 9;
	lens_resolve(LENS_RECENCY, c, 2, &p, &r);
	assert_winner(&r, 1, "equal HLC, smaller hash after swap");
	lens_result_free(&r);
}

/* ---- Confidence ---- */

static void test_confidence_tie_breaks(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[3];
	struct lens_result r;

	fill(&c[0], 3, 0.7, SOURCE_REGULATORY, NOW - 5 * DAY);
	fill(&c[1], 2, 0.7, SOURCE_REGULATORY, NOW - 2 * DAY);
	fill(&c[2], 1, 0.6, SOURCE_REGULATORY, NOW - DAY);

	lens_resolve(LENS_CONFIDENCE, c, 3, &p, &r);
	assert_winner(&r, 1, "equal confidence, newest");
	assert_near(r.confidence, 0.7, 1e-9, "confidence lens confidence");
	assert_near(r.scores[2], 0.6, 1e-9, "confidence score of the third candidate");
	lens_result_free(&r);

	c[0].timestamp = c[1].timestamp;
	lens_resolve(LENS_CONFIDENCE, c, 3, &p, &r);
	assert_winner(&r, 1, "equal confidence and timestamp, smaller hash");
	lens_result_free(&r);
}

/* ---- Consensus ---- */

static void test_consensus_counts_distinct_agents(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[5];
	struct lens_result r;

	/* Claim true: three candidates, all signed by agent 7 (one distinct agent). */
	for (size_t i = 0; i < 3; i++) {
		fill(&c[i], (uint16_t)(10 + i), 0.9, SOURCE_REGULATORY, NOW - DAY);
		set_agents(&c[i], 7, 1);
		set_boolean(&c[i], true);
	}
	/* Claim false: two candidates by agents 20 and 21, the second co-signed by 21..22. */
	fill(&c[3], 20, 0.3, SOURCE_REGULATORY, NOW - DAY);
	fill(&c[4], 21, 0.4, SOURCE_REGULATORY, NOW - 2 * DAY);
	set_agents(&c[4], 21, 2);

	lens_resolve(LENS_CONSENSUS, c, 5, &p, &r);
	assert_winner(&r, 4, "claim with three distinct agents, highest member confidence");
	assert_near(r.confidence, 3.0 / 4.0, 1e-12, "consensus confidence 3 of 4 agents");
	assert_near(r.scores[0], 1.0, 0.0, "score of the single-agent claim");
	assert_near(r.scores[3], 3.0, 0.0, "score of the three-agent claim");
	lens_result_free(&r);
}

static void test_consensus_tie_breaks(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[3];
	struct lens_result r;

	/* One agent per claim. Claim "false" has the larger confidence sum (0.5 + 0.4). */
	fill(&c[0], 1, 0.75, SOURCE_REGULATORY, NOW - DAY);
	set_boolean(&c[0], true);
	fill(&c[1], 2, 0.5, SOURCE_REGULATORY, NOW - 3 * DAY);
	set_agents(&c[1], 9, 1);
	fill(&c[2], 3, 0.4, SOURCE_REGULATORY, NOW - 2 * DAY);
	set_agents(&c[2], 9, 1);

	lens_resolve(LENS_CONSENSUS, c, 3, &p, &r);
	assert_winner(&r, 1, "tie on agents, larger confidence sum");
	assert_near(r.confidence, 0.5, 1e-12, "consensus confidence 1 of 2 agents");
	lens_result_free(&r);

	/* Equal sums (0.75 against 0.5 + 0.25): the claim with the newest member wins. */
	c[2].confidence_micro = 250000;
	lens_resolve(LENS_CONSENSUS, c, 3, &p, &r);
	assert_winner(&r, 0, "tie on agents and sum, newest member");
	lens_result_free(&r);

	/* Full tie: the claim whose representative has the smaller hash wins, even though
	 * it appears second. */
	c[0].timestamp = NOW - 2 * DAY;
	c[0].hash[1] = 0x50;
	lens_resolve(LENS_CONSENSUS, c, 3, &p, &r);
	assert_winner(&r, 1, "full tie, representative with the smaller hash");
	lens_result_free(&r);
}

/* ---- Authority ---- */

static void test_authority_cosignatures_add_weight(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[2];
	struct lens_result r;

	fill(&c[0], 1, 0.8, SOURCE_CLINICAL, NOW - DAY);
	set_boolean(&c[0], false);
	fill(&c[1], 2, 0.8, SOURCE_CLINICAL, NOW - DAY);
	set_agents(&c[1], 10, 3);

	lens_resolve(LENS_AUTHORITY, c, 2, &p, &r);
	assert_winner(&r, 1, "three signers against one");
	if (!(r.scores[1] > 2.0 * r.scores[0]))
		fail_msg("co-signed score %.6f is not more than twice %.6f", r.scores[1],
		         r.scores[0]);
	assert_near(r.scores[1] / r.scores[0], 3.0, 1e-9, "score ratio of 3 to 1 signers");
	assert_near(r.confidence, lens_effective_confidence(&c[1], &p), 1e-12,
	            "authority lens confidence is the winner's effective confidence");
	lens_result_free(&r);
}

struct trust_table {
	size_t calls;
};

/* Agent 1 is trusted 0.9, agent 2 only 0.1, every other agent 0.5. */
static double trust_by_agent(void *ctx, const uint8_t agent_id[STEMEDB_AGENT_ID_LEN])
{
	struct trust_table *t = ctx;
	t->calls++;
	if (agent_id[1] == 1)
		return 0.9;
	if (agent_id[1] == 2)
		return 0.1;
	return 0.5;
}

static void test_authority_uses_trust_callback(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct trust_table table = {0};
	struct candidate c[3];
	struct lens_result r;

	fill(&c[0], 1, 0.6, SOURCE_EXPERT, NOW);
	fill(&c[1], 2, 0.9, SOURCE_EXPERT, NOW);
	fill(&c[2], 3, 1.0, SOURCE_COMMUNITY, NOW);

	lens_resolve(LENS_AUTHORITY, c, 3, &p, &r);
	assert_winner(&r, 1, "default trust, higher confidence");
	lens_result_free(&r);

	p.trust = trust_by_agent;
	p.trust_ctx = &table;
	lens_resolve(LENS_AUTHORITY, c, 3, &p, &r);
	assert_winner(&r, 0, "trust 0.9 x 0.6 beats 0.1 x 0.9");
	assert_near(r.scores[0], 0.54, 1e-9, "score of the trusted agent");
	assert_near(r.scores[1], 0.09, 1e-9, "score of the distrusted agent");
	assert_near(r.scores[2], 0.0, 0.0, "score outside the top tier");
	if (table.calls < 2)
		fail_msg("trust callback called %zu times, expected at least 2", table.calls);
	lens_result_free(&r);
}

/* ---- Grouping ---- */

static void test_tolerance_grouping(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[3];
	struct claim_set set;

	fill(&c[0], 1, 0.5, SOURCE_CLINICAL, NOW);
	set_number(&c[0], 100.0);
	fill(&c[1], 2, 0.5, SOURCE_CLINICAL, NOW);
	set_number(&c[1], 100.5);
	fill(&c[2], 3, 0.5, SOURCE_CLINICAL, NOW);
	set_number(&c[2], 102.0);

	p.tolerance = 0.01;
	lens_group_claims(c, 3, &p, &set);
	assert_int_equal(set.count, 2);
	assert_int_equal(claim_of(&set, 0), claim_of(&set, 1));
	assert_int_not_equal(claim_of(&set, 0), claim_of(&set, 2));
	claim_set_free(&set);

	p.tolerance = 0.0;
	lens_group_claims(c, 3, &p, &set);
	assert_int_equal(set.count, 3);
	claim_set_free(&set);

	/* The bound is relative to the larger magnitude: |101.01 - 100| = 1.01 is within
	 * 0.01 x 101.01 = 1.0101 but not within 0.01 x 100. */
	set_number(&c[2], 101.01);
	p.tolerance = 0.01;
	lens_group_claims(c, 3, &p, &set);
	assert_int_equal(set.count, 1);
	claim_set_free(&set);
}

/* Greedy grouping is not transitive: 101.8 is within 1% of 100.9 but is compared only
 * with the claim's first value, 100, and so starts a claim of its own. */
static void test_tolerance_grouping_is_greedy(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[3];
	struct claim_set set;

	fill(&c[0], 1, 0.5, SOURCE_CLINICAL, NOW);
	set_number(&c[0], 100.0);
	fill(&c[1], 2, 0.5, SOURCE_CLINICAL, NOW);
	set_number(&c[1], 100.9);
	fill(&c[2], 3, 0.5, SOURCE_CLINICAL, NOW);
	set_number(&c[2], 101.8);

	p.tolerance = 0.01;
	lens_group_claims(c, 3, &p, &set);
	assert_int_equal(set.count, 2);
	assert_int_equal(claim_of(&set, 1), 0);
	assert_int_equal(claim_of(&set, 2), 1);
	claim_set_free(&set);
}

static void test_text_folding(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[5];
	struct claim_set set;

	const char *values[] = {"  Paris ", "paris", "PARIS\t\n", "Pa ris", "Lyon"};
	for (size_t i = 0; i < 5; i++) {
		fill(&c[i], (uint16_t)(i + 1), 0.5, SOURCE_CLINICAL, NOW);
		set_text(&c[i], OBJECT_TEXT, values[i]);
	}

	lens_group_claims(c, 5, &p, &set);
	assert_int_equal(set.count, 3);
	assert_int_equal(claim_of(&set, 1), 0);
	assert_int_equal(claim_of(&set, 2), 0);
	assert_int_equal(claim_of(&set, 3), 1);
	assert_int_equal(claim_of(&set, 4), 2);
	assert_int_equal(set.claims[0].member_count, 3);
	claim_set_free(&set);

	free_texts(c, 5);
}

static void test_types_never_group(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[4];
	struct claim_set set;

	fill(&c[0], 1, 0.5, SOURCE_CLINICAL, NOW);
	set_text(&c[0], OBJECT_TEXT, "1");
	fill(&c[1], 2, 0.5, SOURCE_CLINICAL, NOW);
	set_number(&c[1], 1.0);
	fill(&c[2], 3, 0.5, SOURCE_CLINICAL, NOW);
	set_text(&c[2], OBJECT_REFERENCE, "1");
	fill(&c[3], 4, 0.5, SOURCE_CLINICAL, NOW);
	set_boolean(&c[3], true);

	p.tolerance = 0.5;
	lens_group_claims(c, 4, &p, &set);
	assert_int_equal(set.count, 4);
	claim_set_free(&set);

	free_texts(c, 4);
}

static void test_claim_fields(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[3];
	struct claim_set set;

	fill(&c[0], 1, 0.5, SOURCE_ANECDOTAL, NOW - 30 * DAY);
	fill(&c[1], 2, 0.6, SOURCE_CLINICAL, NOW - 20 * DAY);
	set_agents(&c[1], 1, 2);
	fill(&c[2], 3, 0.4, SOURCE_EXPERT, NOW - 10 * DAY);

	lens_group_claims(c, 3, &p, &set);
	assert_int_equal(set.count, 1);
	const struct claim *cl = &set.claims[0];
	assert_int_equal(cl->member_count, 3);
	assert_int_equal(cl->distinct_agents, 3); /* agents 1, 2 and 3; 1 signs twice */
	assert_int_equal(cl->best_tier, SOURCE_CLINICAL);
	assert_int_equal(cl->newest_timestamp, NOW - 10 * DAY);
	assert_int_equal(cl->representative, 1);

	/* 0.5 x 0.5 = 0.25; 0.6 x 0.5^(20/730) = 0.588713; 0.4 x 0.5^(10/180) = 0.384890. */
	assert_near(cl->effective_confidence_sum, 0.25 + 0.588713 + 0.384890, 1e-5,
	            "effective confidence sum");
	assert_near(cl->weight, 0.25 * 0.1 + 0.588713 * 0.8 + 0.384890 * 0.4, 1e-5,
	            "skeptic weight");
	assert_near(cl->share, 1.0, 1e-12, "share of the only claim");
	claim_set_free(&set);
}

/* ---- Empty input and skeptic statuses ---- */

static void test_empty_input(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct lens_result r;
	struct skeptic_result s;

	for (int kind = LENS_RECENCY; kind <= LENS_AUTHORITY; kind++) {
		lens_resolve((enum lens_kind)kind, NULL, 0, &p, &r);
		if (r.has_winner)
			fail_msg("lens %s has a winner on empty input", lens_name(kind));
		assert_null(r.scores);
		assert_int_equal(r.score_count, 0);
		lens_result_free(&r);
	}

	skeptic_analyze(NULL, 0, &p, &s);
	assert_int_equal(s.status, SKEPTIC_NO_DATA);
	assert_int_equal(s.claims.count, 0);
	assert_near(s.conflict_score, 0.0, 0.0, "conflict score without data");
	skeptic_result_free(&s);
}

static void test_skeptic_single_claim_unanimous(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[3];
	struct skeptic_result s;

	for (size_t i = 0; i < 3; i++) {
		fill(&c[i], (uint16_t)(i + 1), 0.3 * (double)(i + 1), (uint8_t)i, NOW);
		set_text(&c[i], OBJECT_TEXT, i == 0 ? "Yes" : "yes");
	}

	skeptic_analyze(c, 3, &p, &s);
	assert_int_equal(s.status, SKEPTIC_UNANIMOUS);
	assert_near(s.conflict_score, 0.0, 0.0, "conflict score of one claim");
	assert_int_equal(s.claims.count, 1);
	assert_int_equal(s.claims.claims[0].member_count, 3);
	skeptic_result_free(&s);

	free_texts(c, 3);
}

/* Nine agreeing candidates against one of equal weight: shares 0.9 and 0.1,
 * score -(0.9 ln 0.9 + 0.1 ln 0.1) / ln 2 = 0.468996. */
static void test_skeptic_agreed(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[10];
	struct skeptic_result s;

	for (size_t i = 0; i < 10; i++) {
		fill(&c[i], (uint16_t)(i + 1), 0.7, SOURCE_CLINICAL, NOW - DAY);
		set_number(&c[i], i == 0 ? 4.0 : 2.0);
	}

	skeptic_analyze(c, 10, &p, &s);
	assert_int_equal(s.status, SKEPTIC_AGREED);
	assert_near(s.conflict_score, 0.468996, 1e-6, "conflict score of 9 against 1");
	assert_int_equal(s.claims.count, 2);
	assert_near(s.claims.claims[0].share, 0.9, 1e-12, "share of the larger claim");
	assert_int_equal(s.claims.claims[0].member_count, 9);
	assert_near(c[s.claims.claims[1].representative].object.number, 4.0, 0.0,
	            "value of the smaller claim");
	skeptic_result_free(&s);
}

/* When every claim weighs zero the shares are equal, so the score is 1 and the status
 * contested, whether the weight is zero by confidence or by decay. */
static void test_skeptic_zero_weight(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[3];
	struct skeptic_result s;

	fill(&c[0], 1, 0.0, SOURCE_CLINICAL, NOW);
	set_number(&c[0], 1.0);
	fill(&c[1], 2, 0.9, SOURCE_ANECDOTAL, NOW);
	set_number(&c[1], 2.0);
	fill(&c[2], 3, 0.0, SOURCE_REGULATORY, NOW);
	set_number(&c[2], 3.0);

	/* At 40,000 days the anecdotal factor 0.5^1333 underflows to 0. */
	p.reference_time = NOW + 40000 * DAY;
	skeptic_analyze(c, 3, &p, &s);
	assert_int_equal(s.claims.count, 3);
	for (size_t k = 0; k < 3; k++) {
		if (s.claims.claims[k].weight != 0.0)
			fail_msg("claim %zu weighs %g, expected 0", k, s.claims.claims[k].weight);
		assert_near(s.claims.claims[k].share, 1.0 / 3.0, 1e-12, "equal share");
	}
	assert_near(s.conflict_score, 1.0, 1e-12, "conflict score of zero weights");
	assert_int_equal(s.status, SKEPTIC_CONTESTED);
	skeptic_result_free(&s);
}

/* Claims with equal shares are listed by member count, then by their newest member. */
static void test_skeptic_claim_order(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[4];
	struct skeptic_result s;

	fill(&c[0], 1, 0.8, SOURCE_REGULATORY, NOW - 9 * DAY);
	set_number(&c[0], 1.0);
	fill(&c[1], 2, 0.8, SOURCE_REGULATORY, NOW - 3 * DAY);
	set_number(&c[1], 2.0);
	fill(&c[2], 3, 0.4, SOURCE_REGULATORY, NOW - 5 * DAY);
	set_number(&c[2], 3.0);
	fill(&c[3], 4, 0.4, SOURCE_REGULATORY, NOW - 5 * DAY);
	set_number(&c[3], 3.0);

	skeptic_analyze(c, 4, &p, &s);
	assert_int_equal(s.claims.count, 3);
	assert_int_equal(s.claims.claims[0].member_count, 2);
	assert_int_equal(s.claims.claims[1].representative, 1);
	assert_int_equal(s.claims.claims[2].representative, 0);
	assert_near(s.conflict_score, 1.0, 1e-12, "conflict score of three equal shares");
	skeptic_result_free(&s);
}

/* ---- Names ---- */

static void test_lens_parse_spellings(void **state)
{
	(void)state;
	const struct {
		const char *text;
		enum lens_kind kind;
	} accepted[] = {
	        {"recency", LENS_RECENCY},
	        {"Recency", LENS_RECENCY},
	        {"confidence", LENS_CONFIDENCE},
	        {"Confidence", LENS_CONFIDENCE},
	        {"consensus", LENS_CONSENSUS},
	        {"Consensus", LENS_CONSENSUS},
	        {"authority", LENS_AUTHORITY},
	        {"Authority", LENS_AUTHORITY},
	        {"TrustAwareAuthority", LENS_AUTHORITY},
	};
	const char *rejected[] = {"", "RECENCY", "votes", "recency ", "skeptic"};
	enum lens_kind kind;

	for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		if (!lens_parse(accepted[i].text, &kind))
			fail_msg("lens_parse rejected \"%s\"", accepted[i].text);
		if (kind != accepted[i].kind)
			fail_msg("lens_parse(\"%s\") gave %d", accepted[i].text, (int)kind);
	}
	for (size_t i = 0; i < sizeof(rejected) / sizeof(rejected[0]); i++) {
		if (lens_parse(rejected[i], &kind))
			fail_msg("lens_parse accepted \"%s\"", rejected[i]);
	}
	assert_false(lens_parse(NULL, &kind));

	assert_string_equal(lens_name(LENS_AUTHORITY), "authority");
	assert_string_equal(lens_name(LENS_RECENCY), "recency");
	assert_string_equal(skeptic_status_name(SKEPTIC_CONTESTED), "contested");
	assert_string_equal(skeptic_status_name(SKEPTIC_NO_DATA), "no_data");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_decay_every_tier_at_200_days),
	        cmocka_unit_test(test_decay_off_keeps_confidence),
	        cmocka_unit_test(test_future_timestamp_not_boosted),
	        cmocka_unit_test(test_half_life_and_weight_tables),
	        cmocka_unit_test(test_skeptic_contested_booleans),
	        cmocka_unit_test(test_authority_and_consensus_contrast),
	        cmocka_unit_test(test_reference_time_changes_winner),
	        cmocka_unit_test(test_recency_newest_timestamp),
	        cmocka_unit_test(test_recency_tie_breaks),
	        cmocka_unit_test(test_confidence_tie_breaks),
	        cmocka_unit_test(test_consensus_counts_distinct_agents),
	        cmocka_unit_test(test_consensus_tie_breaks),
	        cmocka_unit_test(test_authority_cosignatures_add_weight),
	        cmocka_unit_test(test_authority_uses_trust_callback),
	        cmocka_unit_test(test_tolerance_grouping),
	        cmocka_unit_test(test_tolerance_grouping_is_greedy),
	        cmocka_unit_test(test_text_folding),
	        cmocka_unit_test(test_types_never_group),
	        cmocka_unit_test(test_claim_fields),
	        cmocka_unit_test(test_empty_input),
	        cmocka_unit_test(test_skeptic_single_claim_unanimous),
	        cmocka_unit_test(test_skeptic_agreed),
	        cmocka_unit_test(test_skeptic_zero_weight),
	        cmocka_unit_test(test_skeptic_claim_order),
	        cmocka_unit_test(test_lens_parse_spellings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
