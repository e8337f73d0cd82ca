/* Unit tests of the token bucket and the bounded client table of the rate limiter. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rate_limit.h"

#define SECOND_NS 1000000000ull

static void test_bucket_burst_then_empty(void **state)
{
	struct rate_limit_class c = {.rate = 2, .burst = 3};
	double tokens = 3;
	uint64_t last = 0, retry = 0;

	(void)state;
	for (int i = 0; i < 3; i++)
		assert_true(rate_limit_take(&c, &tokens, &last, 0, &retry));
	assert_false(rate_limit_take(&c, &tokens, &last, 0, &retry));
	assert_int_equal(retry, 1);
}

static void test_bucket_refills_at_rate(void **state)
{
	struct rate_limit_class c = {.rate = 2, .burst = 3};
	double tokens = 0;
	uint64_t last = 0, retry = 0;

	(void)state;
	/* 0.4 s at 2 tokens/s gives 0.8 tokens: not enough. */
	assert_false(rate_limit_take(&c, &tokens, &last, 4 * SECOND_NS / 10, &retry));
	/* 0.2 s more gives 1.2 tokens. */
	assert_true(rate_limit_take(&c, &tokens, &last, 6 * SECOND_NS / 10, &retry));
	/* A long pause refills only up to the burst. */
	for (int i = 0; i < 3; i++)
		assert_true(rate_limit_take(&c, &tokens, &last, 100 * SECOND_NS, &retry));
	assert_false(rate_limit_take(&c, &tokens, &last, 100 * SECOND_NS, &retry));
}

static void test_retry_after_whole_seconds(void **state)
{
	struct rate_limit_class c = {.rate = 0.1, .burst = 1};
	double tokens = 0;
	uint64_t last = 0, retry = 0;

	(void)state;
	/* One token at 0.1 per second takes 10 s. */
	assert_false(rate_limit_take(&c, &tokens, &last, 0, &retry));
	assert_int_equal(retry, 10);
	/* 7.5 s later, 0.25 tokens are missing: 2.5 s, rounded up to 3. */
	assert_false(rate_limit_take(&c, &tokens, &last, 75 * SECOND_NS / 10, &retry));
	assert_int_equal(retry, 3);
}

static struct rate_limit_settings small_settings(uint64_t max_clients)
{
	struct rate_limit_settings s = {.enabled = true, .max_clients = max_clients};

	for (int c = 0; c < HTTP_ROUTE_CLASS_COUNT; c++)
		s.classes[c] = (struct rate_limit_class){.rate = 1, .burst = 2};
	return s;
}

static void test_clients_are_separate(void **state)
{
	struct rate_limit_settings s = small_settings(1000);
	struct rate_limiter *l = rate_limiter_new(&s);
	uint64_t retry;

	(void)state;
	assert_true(rate_limiter_allow(l, "a", 1, HTTP_ROUTE_CLASS_READ, 0, &retry));
	assert_true(rate_limiter_allow(l, "a", 1, HTTP_ROUTE_CLASS_READ, 0, &retry));
	assert_false(rate_limiter_allow(l, "a", 1, HTTP_ROUTE_CLASS_READ, 0, &retry));
	/* Another client and another class of the same client have their own buckets. */
	assert_true(rate_limiter_allow(l, "b", 1, HTTP_ROUTE_CLASS_READ, 0, &retry));
	assert_true(rate_limiter_allow(l, "a", 1, HTTP_ROUTE_CLASS_WRITE, 0, &retry));
	rate_limiter_free(l);
}

static void test_table_stays_bounded(void **state)
{
	struct rate_limit_settings s = small_settings(128);
	struct rate_limiter *l = rate_limiter_new(&s);
	char client[32];
	uint64_t retry;

	(void)state;
	for (int i = 0; i < 10000; i++) {
		snprintf(client, sizeof(client), "10.0.%d.%d", i / 256, i % 256);
		assert_true(rate_limiter_allow(l, client, strlen(client), HTTP_ROUTE_CLASS_READ,
		                               (uint64_t)i * 1000, &retry));
	}
	/* 64 shards of ceil(128 / 64) = 2 entries each. */
	assert_true(rate_limiter_clients(l) <= 128);
	rate_limiter_free(l);
}

/* Returns true when clients x and y fall into the same shard: in a table of one entry
 * per shard, adding y then leaves one client. */
static bool same_shard(const char *x, const char *y)
{
	struct rate_limit_settings s = small_settings(64);
	struct rate_limiter *l = rate_limiter_new(&s);
	uint64_t retry;
	bool same;

	rate_limiter_allow(l, x, strlen(x), HTTP_ROUTE_CLASS_READ, 0, &retry);
	rate_limiter_allow(l, y, strlen(y), HTTP_ROUTE_CLASS_READ, 0, &retry);
	same = rate_limiter_clients(l) == 1;
	rate_limiter_free(l);
	return same;
}

/* Writes into out a client name that falls into the shard of x and differs from it. */
static void find_shard_mate(const char *x, int start, char *out, size_t size)
{
	for (int i = start; i < 100000; i++) {
		snprintf(out, size, "client-%d", i);
		if (same_shard(x, out))
			return;
	}
	fail_msg("no client in the shard of %s", x);
}

static void test_idle_clients_evicted_first(void **state)
{
	struct rate_limit_settings s = small_settings(128); /* two entries per shard */
	struct rate_limiter *l;
	char b[32], c[32];
	uint64_t retry;

	(void)state;
	find_shard_mate("a", 0, b, sizeof(b));
	find_shard_mate("a", atoi(b + 7) + 1, c, sizeof(c));
	s.classes[HTTP_ROUTE_CLASS_WRITE].rate = 0.01; /* 200 s to refill 2 tokens */
	l = rate_limiter_new(&s);

	/* b spends its write bucket at t = 0 and stays limited for 200 s. */
	assert_true(rate_limiter_allow(l, b, strlen(b), HTTP_ROUTE_CLASS_WRITE, 0, &retry));
	assert_true(rate_limiter_allow(l, b, strlen(b), HTTP_ROUTE_CLASS_WRITE, 0, &retry));
	/* a reads once at t = 5 s; at 1 token/s its bucket is full again at t = 6 s. */
	assert_true(rate_limiter_allow(l, "a", 1, HTTP_ROUTE_CLASS_READ, 5 * SECOND_NS, &retry));
	assert_int_equal(rate_limiter_clients(l), 2);

	/* At t = 10 s, c needs a slot in the full shard. a is idle though seen later than
	 * b, so a goes and b keeps its empty bucket. */
	assert_true(
	        rate_limiter_allow(l, c, strlen(c), HTTP_ROUTE_CLASS_READ, 10 * SECOND_NS, &retry));
	assert_int_equal(rate_limiter_clients(l), 2);
	assert_false(rate_limiter_allow(l, b, strlen(b), HTTP_ROUTE_CLASS_WRITE, 10 * SECOND_NS,
	                                &retry));
	rate_limiter_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_bucket_burst_then_empty),
	        cmocka_unit_test(test_bucket_refills_at_rate),
	        cmocka_unit_test(test_retry_after_whole_seconds),
	        cmocka_unit_test(test_clients_are_separate),
	        cmocka_unit_test(test_table_stays_bounded),
	        cmocka_unit_test(test_idle_clients_evicted_first),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
