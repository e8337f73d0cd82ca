/* Unit tests for the metrics registry and its text exposition output. Each test
 * registers its own metric names, because the registry lives for the whole process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stemedb/metrics.h"

/* Renders every metric into a NUL-terminated string that the caller frees. */
static char *render(void)
{
	struct buf out;

	buf_init(&out);
	metrics_render(&out);
	buf_put_u8(&out, 0);
	return (char *)out.data;
}

static void expect_line(const char *text, const char *line)
{
	char *wanted = malloc(strlen(line) + 3);
	const char *found;

	sprintf(wanted, "\n%s\n", line);
	found = strstr(text, wanted);
	if (found == NULL && strncmp(text, line, strlen(line)) == 0 && text[strlen(line)] == '\n')
		found = text;
	if (found == NULL)
		fail_msg("line \"%s\" missing from output:\n%s", line, text);
	free(wanted);
}

static void counter_and_gauge_render(void **state)
{
	(void)state;
	struct metric *counter = metrics_counter("test_events_total", "Events seen by the test");
	struct metric *gauge = metrics_gauge("test_queue_depth", "Items waiting");

	metric_inc(counter);
	metric_add(counter, 2.5);
	metric_add(counter, -10);
	assert_true(metric_value(counter) == 3.5);
	metric_set(gauge, -4);
	metric_add(gauge, 1);
	assert_true(metric_value(gauge) == -3);

	char *text = render();
	expect_line(text, "# HELP test_events_total Events seen by the test");
	expect_line(text, "# TYPE test_events_total counter");
	expect_line(text, "test_events_total 3.5");
	expect_line(text, "# TYPE test_queue_depth gauge");
	expect_line(text, "test_queue_depth -3");
	free(text);
}

static void histogram_buckets_cumulative(void **state)
{
	(void)state;
	static const double bounds[] = {0.1, 1, 10};
	struct histogram *h = metrics_histogram("test_latency_seconds", "Test latency", bounds, 3);

	histogram_observe(h, 0.05);
	histogram_observe(h, 0.1);
	histogram_observe(h, 0.5);
	histogram_observe(h, 5);
	histogram_observe(h, 50);
	histogram_observe(h, NAN);

	char *text = render();
	expect_line(text, "# TYPE test_latency_seconds histogram");
	expect_line(text, "test_latency_seconds_bucket{le=\"0.1\"} 2");
	expect_line(text, "test_latency_seconds_bucket{le=\"1\"} 3");
	expect_line(text, "test_latency_seconds_bucket{le=\"10\"} 4");
	expect_line(text, "test_latency_seconds_bucket{le=\"+Inf\"} 5");
	expect_line(text, "test_latency_seconds_sum 55.65");
	expect_line(text, "test_latency_seconds_count 5");
	free(text);
}

static void labelled_family_escapes(void **state)
{
	(void)state;
	static const char *const names[] = {"method", "path", NULL};
	struct metric_family *family = metrics_counter_family(
	        "test_requests_total", "Requests with \\ and\nnewline", names);
	const char *plain[] = {"GET", "/v1/query"};
	const char *odd[] = {"POST", "a\"b\\c\nd"};

	struct metric *first = metrics_family_child(family, plain);
	assert_ptr_equal(metrics_family_child(family, plain), first);
	metric_inc(first);
	metric_inc(metrics_family_child(family, plain));
	metric_add(metrics_family_child(family, odd), 7);

	char *text = render();
	expect_line(text, "# HELP test_requests_total Requests with \\\\ and\\nnewline");
	expect_line(text, "test_requests_total{method=\"GET\",path=\"/v1/query\"} 2");
	expect_line(text, "test_requests_total{method=\"POST\",path=\"a\\\"b\\\\c\\nd\"} 7");
	free(text);
}

static void histogram_family_labels(void **state)
{
	(void)state;
	static const char *const names[] = {"endpoint", NULL};
	static const double bounds[] = {0.5};
	struct metric_family *family =
	        metrics_histogram_family("test_query_seconds", "Query time", names, bounds, 1);
	const char *query[] = {"query"};

	histogram_observe(metrics_family_histogram(family, query), 0.25);
	histogram_observe(metrics_family_histogram(family, query), 0.75);

	char *text = render();
	expect_line(text, "test_query_seconds_bucket{endpoint=\"query\",le=\"0.5\"} 1");
	expect_line(text, "test_query_seconds_bucket{endpoint=\"query\",le=\"+Inf\"} 2");
	expect_line(text, "test_query_seconds_sum{endpoint=\"query\"} 1");
	expect_line(text, "test_query_seconds_count{endpoint=\"query\"} 2");
	free(text);
}

static void latency_buckets_ascending(void **state)
{
	(void)state;
	assert_true(METRICS_LATENCY_BUCKET_COUNT >= 10);
	assert_true(METRICS_LATENCY_BUCKETS[0] == 0.00005);
	assert_true(METRICS_LATENCY_BUCKETS[METRICS_LATENCY_BUCKET_COUNT - 1] == 10.0);
	for (size_t i = 1; i < METRICS_LATENCY_BUCKET_COUNT; i++)
		assert_true(METRICS_LATENCY_BUCKETS[i] > METRICS_LATENCY_BUCKETS[i - 1]);

	struct histogram *h =
	        metrics_histogram("test_default_buckets_seconds", "Default buckets",
	                          METRICS_LATENCY_BUCKETS, METRICS_LATENCY_BUCKET_COUNT);
	histogram_observe(h, 0.00005);
	char *text = render();
	expect_line(text, "test_default_buckets_seconds_bucket{le=\"5e-05\"} 1");
	free(text);
}

struct worker_args {
	struct metric *counter;
	struct histogram *histogram;
	struct metric_family *family;
};

static void *add_many(void *arg)
{
	struct worker_args *args = arg;
	const char *labels[] = {"shared"};

	for (int i = 0; i < 100000; i++) {
		metric_inc(args->counter);
		histogram_observe(args->histogram, 0.5);
		if (i % 1000 == 0)
			metric_inc(metrics_family_child(args->family, labels));
	}
	return NULL;
}

/* Four threads add concurrently; compare-exchange must not lose an update. */
static void concurrent_updates_are_exact(void **state)
{
	(void)state;
	static const double bounds[] = {1};
	static const char *const names[] = {"kind", NULL};
	struct worker_args args = {
	        .counter = metrics_counter("test_parallel_total", "Parallel adds"),
	        .histogram = metrics_histogram("test_parallel_seconds", "Parallel", bounds, 1),
	        .family = metrics_counter_family("test_parallel_family_total", "Family", names),
	};
	pthread_t threads[4];

	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, add_many, &args), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(threads[i], NULL);

	if (metric_value(args.counter) != 400000)
		fail_msg("counter is %.17g after 400000 increments", metric_value(args.counter));
	char *text = render();
	expect_line(text, "test_parallel_seconds_count 400000");
	expect_line(text, "test_parallel_seconds_sum 200000");
	expect_line(text, "test_parallel_family_total{kind=\"shared\"} 400");
	free(text);
}

/* Every sample line names a metric that has a TYPE line before it. */
static void every_sample_has_type(void **state)
{
	(void)state;
	char *text = render();
	char *saveptr = NULL;
	char typed[64][96];
	size_t typed_count = 0;

	for (char *line = strtok_r(text, "\n", &saveptr); line != NULL;
	     line = strtok_r(NULL, "\n", &saveptr)) {
		if (strncmp(line, "# TYPE ", 7) == 0) {
			assert_true(typed_count < 64);
			sscanf(line + 7, "%95s", typed[typed_count++]);
			continue;
		}
		if (line[0] == '#')
			continue;

		bool found = false;
		for (size_t i = 0; i < typed_count && !found; i++)
			found = strncmp(line, typed[i], strlen(typed[i])) == 0;
		if (!found)
			fail_msg("sample line without a TYPE line before it: %s", line);
	}
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(counter_and_gauge_render),
	        cmocka_unit_test(histogram_buckets_cumulative),
	        cmocka_unit_test(labelled_family_escapes),
	        cmocka_unit_test(histogram_family_labels),
	        cmocka_unit_test(latency_buckets_ascending),
	        cmocka_unit_test(concurrent_updates_are_exact),
	        cmocka_unit_test(every_sample_has_type),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
