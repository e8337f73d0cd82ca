/* Unit tests for configuration loading: precedence, range checks, unknown names and
 * endpoint parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stemedb/config.h"

static const char *const MODES[] = {"immediate", "eventual", NULL};

struct settings {
	char *data_dir;
	uint64_t threads;
	double ratio;
	bool auth;
	char *mode;
	char *listen;
};

/* Builds the option table over s; returns the number of options. */
static size_t make_options(struct settings *s, struct config_option *o)
{
	o[0] = (struct config_option){
	        "STEMEDB_DATA_DIR", "data-dir", CONFIG_STRING, &s->data_dir, "./var", 0, 0, NULL,
	        "data directory"};
	o[1] = (struct config_option){
	        "STEMEDB_HTTP_THREADS", "http-threads", CONFIG_UINT, &s->threads, "4", 1, 256, NULL,
	        "worker threads"};
	o[2] = (struct config_option){"STEMEDB_TEST_RATIO",
	                              "ratio",
	                              CONFIG_DOUBLE,
	                              &s->ratio,
	                              "0.5",
	                              0,
	                              1,
	                              NULL,
	                              "a ratio"};
	o[3] = (struct config_option){
	        "STEMEDB_AUTH_ENABLED", "auth-enabled", CONFIG_BOOL, &s->auth, "false", 0, 0, NULL,
	        "require API keys"};
	o[4] = (struct config_option){"STEMEDB_DURABILITY",
	                              "durability",
	                              CONFIG_CHOICE,
	                              &s->mode,
	                              "immediate",
	                              0,
	                              0,
	                              MODES,
	                              "when writes are acknowledged"};
	o[5] = (struct config_option){"STEMEDB_API_LISTEN",
	                              "api-listen",
	                              CONFIG_ENDPOINT,
	                              &s->listen,
	                              "127.0.0.1:18180",
	                              0,
	                              0,
	                              NULL,
	                              "HTTP address"};
	return 6;
}

static const char *const VARIABLES[] = {
        "STEMEDB_DATA_DIR",   "STEMEDB_HTTP_THREADS", "STEMEDB_TEST_RATIO", "STEMEDB_AUTH_ENABLED",
        "STEMEDB_DURABILITY", "STEMEDB_API_LISTEN",   "STEMEDB_SEEDS",      "STEMEDB_DATA_DRI",
};

static int clear_environment(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(VARIABLES) / sizeof(VARIABLES[0]); i++)
		unsetenv(VARIABLES[i]);
	return 0;
}

/* Loads with argv (NULL-terminated, without the program name). */
static bool load(struct settings *s, const char *const *args, char *err, size_t err_size)
{
	struct config_option options[6];
	char *argv[16] = {"stemedb-test"};
	int argc = 1;
	bool help = false;

	memset(s, 0, sizeof(*s));
	for (size_t i = 0; args != NULL && args[i] != NULL; i++)
		argv[argc++] = (char *)args[i];
	size_t count = make_options(s, options);
	bool ok = config_load(options, count, argc, argv, &help, err, err_size);
	assert_false(help);
	return ok;
}

static void release(struct settings *s)
{
	struct config_option options[6];

	config_free(options, make_options(s, options));
	assert_null(s->data_dir);
	assert_null(s->mode);
}

static void expect_error(const char *const *args, const char *expected_part)
{
	struct settings s;
	char err[256];

	if (load(&s, args, err, sizeof(err)))
		fail_msg("load succeeded; expected an error containing \"%s\"", expected_part);
	if (strstr(err, expected_part) == NULL)
		fail_msg("error \"%s\" does not contain \"%s\"", err, expected_part);
	assert_null(s.data_dir);
}

static void defaults_apply(void **state)
{
	(void)state;
	struct settings s;
	char err[256];

	assert_true(load(&s, NULL, err, sizeof(err)));
	assert_string_equal(s.data_dir, "./var");
	assert_int_equal(s.threads, 4);
	assert_true(s.ratio == 0.5);
	assert_false(s.auth);
	assert_string_equal(s.mode, "immediate");
	assert_string_equal(s.listen, "127.0.0.1:18180");
	release(&s);
}

static void environment_then_flags(void **state)
{
	(void)state;
	struct settings s;
	char err[256];
	const char *const args[] = {"--http-threads", "16", "--ratio=0.25", "--auth-enabled", NULL};

	setenv("STEMEDB_DATA_DIR", "/srv/stemedb", 1);
	setenv("STEMEDB_HTTP_THREADS", "8", 1);
	setenv("STEMEDB_DURABILITY", "eventual", 1);
	setenv("STEMEDB_SEEDS", "127.0.0.1:18190", 1);
	if (!load(&s, args, err, sizeof(err)))
		fail_msg("load failed: %s", err);
	assert_string_equal(s.data_dir, "/srv/stemedb");
	assert_int_equal(s.threads, 16);
	assert_true(s.ratio == 0.25);
	assert_true(s.auth);
	assert_string_equal(s.mode, "eventual");
	release(&s);

	const char *const override[] = {"--data-dir=/tmp/x", "--durability", "immediate",
	                                "--auth-enabled=off", NULL};
	assert_true(load(&s, override, err, sizeof(err)));
	assert_string_equal(s.data_dir, "/tmp/x");
	assert_string_equal(s.mode, "immediate");
	assert_false(s.auth);
	release(&s);
}

static void rejects_bad_numbers(void **state)
{
	(void)state;
	setenv("STEMEDB_HTTP_THREADS", "0", 1);
	expect_error(NULL, "STEMEDB_HTTP_THREADS=0 is invalid; use an integer from 1 to 256");
	setenv("STEMEDB_HTTP_THREADS", "-1", 1);
	expect_error(NULL, "STEMEDB_HTTP_THREADS=-1");
	setenv("STEMEDB_HTTP_THREADS", "12x", 1);
	expect_error(NULL, "STEMEDB_HTTP_THREADS=12x");
	setenv("STEMEDB_HTTP_THREADS", "", 1);
	expect_error(NULL, "STEMEDB_HTTP_THREADS=");
	unsetenv("STEMEDB_HTTP_THREADS");

	const char *const big[] = {"--http-threads=257", NULL};
	expect_error(big, "--http-threads=257 is invalid");
	const char *const ratio[] = {"--ratio=1.5", NULL};
	expect_error(ratio, "--ratio=1.5 is invalid; use a number from 0 to 1");
	const char *const nan[] = {"--ratio=nan", NULL};
	expect_error(nan, "--ratio=nan");
}

static void rejects_bad_words(void **state)
{
	(void)state;
	const char *const mode[] = {"--durability=later", NULL};
	expect_error(mode, "use immediate or eventual");
	const char *const flag[] = {"--auth-enabled=maybe", NULL};
	expect_error(flag, "--auth-enabled=maybe is invalid; use true or false");
	const char *const listen[] = {"--api-listen=18180", NULL};
	expect_error(listen, "--api-listen=18180 is invalid; use host:port");
}

static void rejects_unknown_names(void **state)
{
	(void)state;
	setenv("STEMEDB_DATA_DRI", "/tmp", 1);
	expect_error(NULL, "environment variable STEMEDB_DATA_DRI is unknown");
	unsetenv("STEMEDB_DATA_DRI");

	const char *const unknown[] = {"--data-dri=/tmp", NULL};
	expect_error(unknown, "option --data-dri is unknown");
	const char *const positional[] = {"extra", NULL};
	expect_error(positional, "argument \"extra\" is unknown");
	const char *const missing[] = {"--data-dir", NULL};
	expect_error(missing, "option --data-dir needs a value");
}

static void help_flag_sets_request(void **state)
{
	(void)state;
	struct settings s;
	struct config_option options[6];
	char *argv[] = {"stemedb-test", "--help"};
	char err[128];
	bool help = false;

	memset(&s, 0, sizeof(s));
	size_t count = make_options(&s, options);
	assert_true(config_load(options, count, 2, argv, &help, err, sizeof(err)));
	assert_true(help);
	config_free(options, count);
}

static void usage_lists_options(void **state)
{
	(void)state;
	struct settings s;
	struct config_option options[6];
	char *text = NULL;
	size_t size = 0;
	FILE *out = open_memstream(&text, &size);

	size_t count = make_options(&s, options);
	config_print_usage(out, "stemedb-test", "Runs a test.", options, count);
	fclose(out);
	assert_non_null(strstr(text, "Usage: stemedb-test"));
	assert_non_null(strstr(text, "--http-threads=N  (env STEMEDB_HTTP_THREADS)"));
	assert_non_null(strstr(text, "worker threads; 1 to 256; default 4"));
	assert_non_null(strstr(text, "one of immediate or eventual"));
	free(text);
}

static void split_endpoint_accepts(void **state)
{
	(void)state;
	static const struct {
		const char *endpoint;
		const char *host;
		uint16_t port;
	} cases[] = {
	        {"127.0.0.1:18180", "127.0.0.1", 18180},
	        {"[::1]:80", "::1", 80},
	        {"localhost:1", "localhost", 1},
	        {"0.0.0.0:65535", "0.0.0.0", 65535},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char host[64];
		uint16_t port = 0;
		if (!config_split_endpoint(cases[i].endpoint, host, sizeof(host), &port))
			fail_msg("rejected %s", cases[i].endpoint);
		assert_string_equal(host, cases[i].host);
		assert_int_equal(port, cases[i].port);
	}
}

static void split_endpoint_rejects(void **state)
{
	(void)state;
	static const char *const bad[] = {
	        "::1:80",  "host",     "host:",    "host:0",      "host:65536", ":80",   "[::1]80",
	        "[::1:80", "host:+80", "host:80x", "host:080000", "ho st:80",   "[]:80", "",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char host[64];
		uint16_t port;
		if (config_split_endpoint(bad[i], host, sizeof(host), &port))
			fail_msg("accepted \"%s\" as host %s port %u", bad[i], host, port);
	}

	char small[4];
	uint16_t port;
	assert_false(config_split_endpoint("example:80", small, sizeof(small), &port));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup(defaults_apply, clear_environment),
	        cmocka_unit_test_setup(environment_then_flags, clear_environment),
	        cmocka_unit_test_setup(rejects_bad_numbers, clear_environment),
	        cmocka_unit_test_setup(rejects_bad_words, clear_environment),
	        cmocka_unit_test_setup(rejects_unknown_names, clear_environment),
	        cmocka_unit_test_setup(help_flag_sets_request, clear_environment),
	        cmocka_unit_test(usage_lists_options),
	        cmocka_unit_test(split_endpoint_accepts),
	        cmocka_unit_test(split_endpoint_rejects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
