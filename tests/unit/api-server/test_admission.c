/* Unit tests for admission tiers, the proof-of-work difficulty table, the replay set
 * and the quota arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "admission.h"
#include "quota.h"

static const struct admission_rules rules = {.new_agent_bits = 16,
                                             .growing_agent_bits = 1,
                                             .new_agent_assertions = 10,
                                             .established_assertions = 50,
                                             .exempt_trust = 0.6};

static void tiers_follow_trust(void **state)
{
	(void)state;
	assert_int_equal(admission_tier_of(0.0), TIER_UNTRUSTED);
	assert_int_equal(admission_tier_of(0.29), TIER_UNTRUSTED);
	assert_int_equal(admission_tier_of(0.3), TIER_LIMITED);
	assert_int_equal(admission_tier_of(0.49), TIER_LIMITED);
	assert_int_equal(admission_tier_of(0.5), TIER_VERIFIED);
	assert_int_equal(admission_tier_of(0.7), TIER_TRUSTED);
	assert_int_equal(admission_tier_of(0.9), TIER_AUTHORITY);
	assert_int_equal(admission_tier_of(1.0), TIER_AUTHORITY);
	assert_true(admission_quota_multiplier(TIER_UNTRUSTED) == 0.1);
	assert_true(admission_quota_multiplier(TIER_LIMITED) == 0.5);
	assert_true(admission_quota_multiplier(TIER_VERIFIED) == 1.0);
	assert_true(admission_quota_multiplier(TIER_TRUSTED) == 2.0);
	assert_true(admission_quota_multiplier(TIER_AUTHORITY) == 10.0);
	assert_string_equal(admission_tier_name(TIER_LIMITED), "limited");
}

static void difficulty_table(void **state)
{
	(void)state;
	assert_int_equal(admission_difficulty(&rules, 0, 0.5), 16);
	assert_int_equal(admission_difficulty(&rules, 9, 0.5), 16);
	assert_int_equal(admission_difficulty(&rules, 10, 0.5), 1);
	assert_int_equal(admission_difficulty(&rules, 49, 0.5), 1);
	assert_int_equal(admission_difficulty(&rules, 50, 0.5), 0);
	assert_int_equal(admission_difficulty(&rules, 0, 0.6), 0);
	assert_int_equal(admission_difficulty(&rules, 0, 0.95), 0);
}

static void low_tiers_always_prove(void **state)
{
	(void)state;
	/* Limited and untrusted agents keep at least the growing bits past 50. */
	assert_int_equal(admission_difficulty(&rules, 1000, 0.4), 1);
	assert_int_equal(admission_difficulty(&rules, 1000, 0.1), 1);
	assert_int_equal(admission_difficulty(&rules, 5, 0.1), 16);
}

static void assertions_until_easier(void **state)
{
	(void)state;
	assert_int_equal(admission_assertions_until_easier(&rules, 3, 0.5), 7);
	assert_int_equal(admission_assertions_until_easier(&rules, 10, 0.5), 40);
	assert_int_equal(admission_assertions_until_easier(&rules, 50, 0.5), 0);
	assert_int_equal(admission_assertions_until_easier(&rules, 3, 0.4), 7);
	/* A limited agent past 10 stays at 1 bit, so more assertions change nothing. */
	assert_int_equal(admission_assertions_until_easier(&rules, 10, 0.4), 0);
	assert_int_equal(admission_assertions_until_easier(&rules, 3, 0.8), 0);
}

static void replay_set_rejects_repeats(void **state)
{
	struct pow_replay_set *set = pow_replay_set_new(4);
	uint8_t digest[POW_DIGEST_LEN];

	(void)state;
	memset(digest, 7, sizeof(digest));
	assert_true(pow_replay_set_add(set, digest, 1300, 1000));
	assert_false(pow_replay_set_add(set, digest, 1300, 1200));
	/* After its expiry the digest is no replay; the timestamp check rejects it then. */
	assert_true(pow_replay_set_add(set, digest, 1700, 1301));
	pow_replay_set_free(set);
}

static void replay_set_drops_oldest(void **state)
{
	struct pow_replay_set *set = pow_replay_set_new(2);
	uint8_t a[POW_DIGEST_LEN], b[POW_DIGEST_LEN], c[POW_DIGEST_LEN];

	(void)state;
	memset(a, 1, sizeof(a));
	memset(b, 2, sizeof(b));
	memset(c, 3, sizeof(c));
	assert_true(pow_replay_set_add(set, a, 2000, 1000));
	assert_true(pow_replay_set_add(set, b, 2000, 1000));
	assert_true(pow_replay_set_add(set, c, 2000, 1000));
	assert_false(pow_replay_set_add(set, c, 2000, 1000));
	assert_false(pow_replay_set_add(set, b, 2000, 1000));
	pow_replay_set_free(set);
}

static const struct quota_costs costs = {.assert_tokens = 10,
                                         .vote_tokens = 1,
                                         .query_tokens = 5,
                                         .lens_tokens = 1,
                                         .read_tokens = 1,
                                         .tokens_per_kib = 1};

static void quota_costs_per_kind(void **state)
{
	(void)state;
	assert_int_equal(quota_cost(&costs, QUOTA_ASSERT, 0, 0), 10);
	assert_int_equal(quota_cost(&costs, QUOTA_ASSERT, 0, 1), 11);
	assert_int_equal(quota_cost(&costs, QUOTA_ASSERT, 0, 1024), 11);
	assert_int_equal(quota_cost(&costs, QUOTA_ASSERT, 0, 1025), 12);
	assert_int_equal(quota_cost(&costs, QUOTA_VOTE, 0, 300), 2);
	assert_int_equal(quota_cost(&costs, QUOTA_QUERY, 1, 0), 6);
	assert_int_equal(quota_cost(&costs, QUOTA_QUERY, 5, 0), 10);
	assert_int_equal(quota_cost(&costs, QUOTA_READ, 0, 0), 1);
	assert_int_equal(quota_limit(10000, 0.1), 1000);
	assert_int_equal(quota_limit(10000, 10.0), 100000);
	assert_int_equal(quota_limit(1, 0.1), 1);
}

static void quota_window_charges_and_resets(void **state)
{
	struct quota_table *t = quota_table_new(3600, 16);
	struct quota_status status;
	uint8_t agent[QUOTA_AGENT_ID_LEN], other[QUOTA_AGENT_ID_LEN];

	(void)state;
	memset(agent, 1, sizeof(agent));
	memset(other, 2, sizeof(other));
	assert_true(quota_charge(t, agent, 100, 60, 1000, &status));
	assert_int_equal(status.remaining, 40);
	assert_int_equal(status.reset_at, 4600);
	assert_true(quota_charge(t, agent, 100, 40, 2000, &status));
	assert_int_equal(status.remaining, 0);
	assert_false(quota_charge(t, agent, 100, 1, 2000, &status));
	assert_int_equal(status.used, 100);

	assert_true(quota_charge(t, other, 100, 1, 2000, &status));
	assert_int_equal(status.remaining, 99);

	assert_true(quota_charge(t, agent, 100, 1, 4600, &status));
	assert_int_equal(status.remaining, 99);
	assert_int_equal(status.reset_at, 8200);
	quota_peek(t, agent, 100, 4601, &status);
	assert_int_equal(status.used, 1);
	quota_table_free(t);
}

static void quota_rejects_cost_above_limit(void **state)
{
	struct quota_table *t = quota_table_new(3600, 16);
	struct quota_status status;
	uint8_t agent[QUOTA_AGENT_ID_LEN];

	(void)state;
	memset(agent, 3, sizeof(agent));
	assert_false(quota_charge(t, agent, 10, 11, 1000, &status));
	assert_int_equal(status.used, 0);
	quota_table_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(tiers_follow_trust),
	        cmocka_unit_test(difficulty_table),
	        cmocka_unit_test(low_tiers_always_prove),
	        cmocka_unit_test(assertions_until_easier),
	        cmocka_unit_test(replay_set_rejects_repeats),
	        cmocka_unit_test(replay_set_drops_oldest),
	        cmocka_unit_test(quota_costs_per_kind),
	        cmocka_unit_test(quota_window_charges_and_resets),
	        cmocka_unit_test(quota_rejects_cost_above_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
