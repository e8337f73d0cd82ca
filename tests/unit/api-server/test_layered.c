/* Unit tests of the layered view: per-tier leading claims and conflict scores, the
 * overall answer from the most authoritative populated tier, and the cross-tier score. */

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

/* Fills c with a Boolean candidate whose hash and single signer derive from id. */
static void fill(struct candidate *c, uint16_t id, double confidence, uint8_t tier, bool value)
{
	memset(c, 0, sizeof(*c));
	c->hash[0] = (uint8_t)(id >> 8);
	c->hash[1] = (uint8_t)id;
	c->confidence_micro = (uint32_t)(confidence * 1e6 + 0.5);
	c->source_class = tier;
	c->timestamp = NOW;
	c->hlc.wall_ms = NOW * 1000;
	c->agent_count = 1;
	c->agents[0][0] = (uint8_t)(id >> 8);
	c->agents[0][1] = (uint8_t)id;
	c->object.type = OBJECT_BOOLEAN;
	c->object.boolean = value;
}

static struct lens_params default_params(void)
{
	struct lens_params p = {.reference_time = NOW, .decay = true, .tolerance = 0.0};
	return p;
}

/* The value of the leading claim of a tier, through its representative candidate. */
static bool leading_value(const struct layered_tier *layer)
{
	const struct claim *lead = &layer->skeptic.claims.claims[0];

	return layer->items[lead->representative].object.boolean;
}

static void test_clinical_conflict_over_anecdotal(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[52];
	struct layered_result r;

	fill(&c[0], 1, 0.9, SOURCE_CLINICAL, true);
	fill(&c[1], 2, 0.9, SOURCE_CLINICAL, false);
	for (uint16_t i = 0; i < 50; i++)
		fill(&c[2 + i], (uint16_t)(100 + i), 0.8, SOURCE_ANECDOTAL, true);

	lens_layered(c, 52, &p, &r);
	if (r.tier_count != 2)
		fail_msg("tier count %zu, expected 2 (clinical and anecdotal only)", r.tier_count);
	if (r.tiers[0].tier != SOURCE_CLINICAL)
		fail_msg("first tier %u, expected clinical (1)", r.tiers[0].tier);
	if (r.tiers[1].tier != SOURCE_ANECDOTAL)
		fail_msg("second tier %u, expected anecdotal (5)", r.tiers[1].tier);
	if (!(r.tiers[0].skeptic.conflict_score > 0.5))
		fail_msg("clinical conflict %.4f, expected > 0.5",
		         r.tiers[0].skeptic.conflict_score);
	if (fabs(r.tiers[1].skeptic.conflict_score) > 1e-9)
		fail_msg("anecdotal conflict %.4f, expected 0", r.tiers[1].skeptic.conflict_score);
	if (r.tiers[1].count != 50)
		fail_msg("anecdotal candidate count %zu, expected 50", r.tiers[1].count);
	if (r.overall.claims.count != 2)
		fail_msg("cross-tier claim count %zu, expected 2", r.overall.claims.count);
	layered_result_free(&r);
}

static void test_regulatory_answer_over_many_anecdotal(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct candidate c[101];
	struct layered_result r;

	fill(&c[0], 1, 0.9, SOURCE_REGULATORY, false);
	for (uint16_t i = 0; i < 100; i++)
		fill(&c[1 + i], (uint16_t)(100 + i), 0.9, SOURCE_ANECDOTAL, true);

	lens_layered(c, 101, &p, &r);
	if (r.tier_count != 2)
		fail_msg("tier count %zu, expected 2", r.tier_count);
	if (r.tiers[0].tier != SOURCE_REGULATORY)
		fail_msg("first tier %u, expected regulatory (0)", r.tiers[0].tier);
	if (leading_value(&r.tiers[0]) != false)
		fail_msg("regulatory leading value true, expected false");
	if (leading_value(&r.tiers[1]) != true)
		fail_msg("anecdotal leading value false, expected true");
	if (r.tiers[1].indices[0] != 1)
		fail_msg("anecdotal first index %zu, expected 1", r.tiers[1].indices[0]);
	if (!(r.overall.conflict_score > 0.0))
		fail_msg("cross-tier conflict %.4f, expected > 0", r.overall.conflict_score);
	layered_result_free(&r);
}

static void test_empty_input_has_no_tiers(void **state)
{
	(void)state;
	struct lens_params p = default_params();
	struct layered_result r;

	lens_layered(NULL, 0, &p, &r);
	if (r.tier_count != 0)
		fail_msg("tier count %zu for no candidates, expected 0", r.tier_count);
	if (r.overall.status != SKEPTIC_NO_DATA)
		fail_msg("overall status %s, expected no_data",
		         skeptic_status_name(r.overall.status));
	layered_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_clinical_conflict_over_anecdotal),
	        cmocka_unit_test(test_regulatory_answer_over_many_anecdotal),
	        cmocka_unit_test(test_empty_input_has_no_tiers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
