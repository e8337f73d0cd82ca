/* Unit tests for the per-agent circuit breaker state machine, driven by an explicit
 * clock in Unix milliseconds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "breaker.h"

#define T0 1700000000000ull

static const struct breaker_config config = {
        .failure_threshold = 5, .window_ms = 60000, .open_ms = 30000, .max_agents = 16};

static void agent_id(uint8_t agent[BREAKER_AGENT_ID_LEN], int n)
{
	memset(agent, n, BREAKER_AGENT_ID_LEN);
}

static enum breaker_transition fail_at(struct breaker_table *t, const uint8_t *agent, uint64_t now)
{
	struct breaker_snapshot snap;

	return breaker_record(t, agent, true, now, &snap);
}

static void five_failures_open(void **state)
{
	struct breaker_table *t = breaker_table_new(&config);
	uint8_t agent[BREAKER_AGENT_ID_LEN];
	uint64_t retry = 0;

	(void)state;
	agent_id(agent, 1);
	for (int i = 0; i < 4; i++)
		assert_int_equal(fail_at(t, agent, T0 + (uint64_t)i * 1000), BREAKER_UNCHANGED);
	assert_int_equal(breaker_check(t, agent, T0 + 4000, &retry), BREAKER_ALLOW);
	assert_int_equal(fail_at(t, agent, T0 + 4000), BREAKER_OPENED);

	assert_int_equal(breaker_check(t, agent, T0 + 5000, &retry), BREAKER_REJECT_OPEN);
	assert_int_equal(retry, 29000);
	breaker_table_free(t);
}

static void failures_outside_window_do_not_count(void **state)
{
	struct breaker_table *t = breaker_table_new(&config);
	uint8_t agent[BREAKER_AGENT_ID_LEN];
	uint64_t retry = 0;

	(void)state;
	agent_id(agent, 2);
	/* Five failures spread over more than 60 s never open the breaker. */
	for (int i = 0; i < 10; i++)
		assert_int_equal(fail_at(t, agent, T0 + (uint64_t)i * 16000), BREAKER_UNCHANGED);
	assert_int_equal(breaker_check(t, agent, T0 + 200000, &retry), BREAKER_ALLOW);
	breaker_table_free(t);
}

static void half_open_success_closes(void **state)
{
	struct breaker_table *t = breaker_table_new(&config);
	uint8_t agent[BREAKER_AGENT_ID_LEN];
	struct breaker_snapshot snap;
	uint64_t retry = 0, counts[3];

	(void)state;
	agent_id(agent, 3);
	for (int i = 0; i < 5; i++)
		fail_at(t, agent, T0 + (uint64_t)i);
	breaker_count_states(t, T0 + 10, counts);
	assert_int_equal(counts[BREAKER_OPEN], 1);

	assert_int_equal(breaker_check(t, agent, T0 + 30004, &retry), BREAKER_ALLOW);
	breaker_count_states(t, T0 + 30004, counts);
	assert_int_equal(counts[BREAKER_HALF_OPEN], 1);
	assert_int_equal(breaker_record(t, agent, false, T0 + 30005, &snap), BREAKER_CLOSED_AGAIN);
	assert_int_equal(snap.state, BREAKER_CLOSED);
	/* The failures before the opening are forgotten. */
	assert_int_equal(fail_at(t, agent, T0 + 30006), BREAKER_UNCHANGED);
	breaker_table_free(t);
}

static void half_open_failure_reopens(void **state)
{
	struct breaker_table *t = breaker_table_new(&config);
	uint8_t agent[BREAKER_AGENT_ID_LEN];
	struct breaker_snapshot snap;
	uint64_t retry = 0;

	(void)state;
	agent_id(agent, 4);
	for (int i = 0; i < 5; i++)
		fail_at(t, agent, T0);
	assert_int_equal(breaker_check(t, agent, T0 + 30000, &retry), BREAKER_ALLOW);
	assert_int_equal(breaker_record(t, agent, true, T0 + 30001, &snap), BREAKER_OPENED);
	assert_int_equal(snap.open_until_ms, T0 + 60001);
	assert_int_equal(breaker_check(t, agent, T0 + 30002, &retry), BREAKER_REJECT_OPEN);
	breaker_table_free(t);
}

static void ban_and_reset(void **state)
{
	struct breaker_table *t = breaker_table_new(&config);
	uint8_t agent[BREAKER_AGENT_ID_LEN];
	struct breaker_snapshot snap;
	uint64_t retry = 0;

	(void)state;
	agent_id(agent, 5);
	breaker_ban(t, agent, 600000, "abuse", T0, &snap);
	assert_true(snap.banned);
	assert_string_equal(snap.reason, "abuse");
	assert_int_equal(breaker_check(t, agent, T0 + 1000, &retry), BREAKER_REJECT_BANNED);
	assert_int_equal(retry, 599000);
	assert_true(breaker_reset(t, agent));
	assert_int_equal(breaker_check(t, agent, T0 + 1000, &retry), BREAKER_ALLOW);
	agent_id(agent, 6);
	assert_false(breaker_reset(t, agent));
	breaker_table_free(t);
}

static void restore_keeps_deadline(void **state)
{
	struct breaker_table *t = breaker_table_new(&config);
	struct breaker_snapshot snap = {.state = BREAKER_OPEN, .open_until_ms = T0 + 5000};
	uint64_t retry = 0;

	(void)state;
	agent_id(snap.agent, 7);
	breaker_restore(t, &snap);
	assert_int_equal(breaker_check(t, snap.agent, T0, &retry), BREAKER_REJECT_OPEN);
	assert_int_equal(retry, 5000);
	assert_int_equal(breaker_check(t, snap.agent, T0 + 5000, &retry), BREAKER_ALLOW);
	breaker_table_free(t);
}

static void full_table_evicts_idle(void **state)
{
	struct breaker_table *t = breaker_table_new(&config);
	uint8_t agent[BREAKER_AGENT_ID_LEN];
	struct breaker_snapshot *list = NULL;

	(void)state;
	for (int i = 0; i < 16; i++) {
		agent_id(agent, 100 + i);
		fail_at(t, agent, T0);
	}
	assert_int_equal(breaker_tracked(t), 16);
	/* After the window the old failures are idle and make room for a new agent. */
	agent_id(agent, 200);
	fail_at(t, agent, T0 + 61000);
	assert_int_equal(breaker_tracked(t), 1);
	assert_int_equal(breaker_list(t, T0 + 61000, &list), 1);
	assert_memory_equal(list[0].agent, agent, BREAKER_AGENT_ID_LEN);
	free(list);
	breaker_table_free(t);
}

static void full_table_drops_new_failures(void **state)
{
	struct breaker_table *t = breaker_table_new(&config);
	uint8_t agent[BREAKER_AGENT_ID_LEN];

	(void)state;
	for (int i = 0; i < 16; i++) {
		agent_id(agent, 100 + i);
		fail_at(t, agent, T0);
	}
	agent_id(agent, 201);
	assert_int_equal(fail_at(t, agent, T0 + 1000), BREAKER_UNCHANGED);
	assert_int_equal(breaker_tracked(t), 16);
	breaker_table_free(t);
}

static void peek_reports_untracked_closed(void **state)
{
	struct breaker_table *t = breaker_table_new(&config);
	uint8_t agent[BREAKER_AGENT_ID_LEN];
	struct breaker_snapshot snap;

	(void)state;
	agent_id(agent, 8);
	breaker_peek(t, agent, T0, &snap);
	assert_int_equal(snap.state, BREAKER_CLOSED);
	assert_int_equal(snap.recent_failures, 0);
	fail_at(t, agent, T0);
	fail_at(t, agent, T0 + 1);
	breaker_peek(t, agent, T0 + 2, &snap);
	assert_int_equal(snap.recent_failures, 2);
	breaker_peek(t, agent, T0 + 60000, &snap);
	assert_int_equal(snap.recent_failures, 1);
	breaker_table_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(five_failures_open),
	        cmocka_unit_test(failures_outside_window_do_not_count),
	        cmocka_unit_test(half_open_success_closes),
	        cmocka_unit_test(half_open_failure_reopens),
	        cmocka_unit_test(ban_and_reset),
	        cmocka_unit_test(restore_keeps_deadline),
	        cmocka_unit_test(full_table_evicts_idle),
	        cmocka_unit_test(full_table_drops_new_failures),
	        cmocka_unit_test(peek_reports_untracked_closed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
