/* Unit tests for logging: the stderr line format, level filtering and the switch to
 * journald when JOURNAL_STREAM names fd 2. Each test points fd 2 at a temporary file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stemedb/log.h"

static int saved_stderr = -1;
static FILE *capture;

static int redirect_stderr(void **state)
{
	(void)state;
	capture = tmpfile();
	assert_non_null(capture);
	fflush(stderr);
	saved_stderr = dup(2);
	assert_true(saved_stderr >= 0);
	assert_int_equal(dup2(fileno(capture), 2), 2);
	unsetenv("JOURNAL_STREAM");
	return 0;
}

static int restore_stderr(void **state)
{
	(void)state;
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	fclose(capture);
	unsetenv("JOURNAL_STREAM");
	return 0;
}

/* Returns what was written to the captured stderr so far; the caller frees it. */
static char *captured_text(void)
{
	struct stat st;

	fflush(stderr);
	assert_int_equal(fstat(fileno(capture), &st), 0);
	char *text = calloc(1, (size_t)st.st_size + 1);
	assert_int_equal(pread(fileno(capture), text, (size_t)st.st_size, 0), st.st_size);
	return text;
}

static void line_format_utc_level_program(void **state)
{
	(void)state;
	regex_t pattern;

	log_init("stemedb-test", LOG_LEVEL_INFO);
	errno = EAGAIN;
	log_info("opened %s with %d entries", "wal", 3);
	assert_int_equal(errno, EAGAIN);

	char *text = captured_text();
	assert_int_equal(
	        regcomp(&pattern,
	                "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
	                "info stemedb-test: opened wal with 3 entries\n$",
	                REG_EXTENDED),
	        0);
	if (regexec(&pattern, text, 0, NULL, 0) != 0)
		fail_msg("unexpected log line: \"%s\"", text);
	regfree(&pattern);
	free(text);
}

static void levels_below_minimum_dropped(void **state)
{
	(void)state;
	log_init("stemedb-test", LOG_LEVEL_WARN);
	log_debug("debug line");
	log_info("info line");
	log_warn("warn line");
	log_set_level(LOG_LEVEL_ERROR);
	log_warn("second warn line");
	log_error("error line\nwith a newline");

	char *text = captured_text();
	assert_null(strstr(text, "debug line"));
	assert_null(strstr(text, "info line"));
	assert_null(strstr(text, "second warn line"));
	assert_non_null(strstr(text, " warn stemedb-test: warn line\n"));
	assert_non_null(strstr(text, " error stemedb-test: error line with a newline\n"));
	free(text);
}

/* When JOURNAL_STREAM names the file on fd 2, messages go to journald instead. Without
 * a running journald sd_journal_send fails, but nothing may reach stderr either way. */
static void journal_stream_bypasses_stderr(void **state)
{
	(void)state;
	struct stat st;
	char stream[64];

	assert_int_equal(fstat(2, &st), 0);
	snprintf(stream, sizeof(stream), "%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
	setenv("JOURNAL_STREAM", stream, 1);
	log_init("stemedb-test", LOG_LEVEL_DEBUG);
	log_info("to the journal");

	char *text = captured_text();
	assert_string_equal(text, "");
	free(text);

	setenv("JOURNAL_STREAM", "1:1", 1);
	log_init("stemedb-test", LOG_LEVEL_DEBUG);
	log_info("back on stderr");
	text = captured_text();
	if (strstr(text, "back on stderr") == NULL)
		fail_msg("stderr holds \"%s\"", text);
	free(text);
}

static void level_names_parse(void **state)
{
	(void)state;
	enum log_level level = LOG_LEVEL_ERROR;

	assert_true(log_level_parse("debug", &level));
	assert_int_equal(level, LOG_LEVEL_DEBUG);
	assert_true(log_level_parse("warn", &level));
	assert_int_equal(level, LOG_LEVEL_WARN);
	assert_false(log_level_parse("warning", &level));
	assert_false(log_level_parse("INFO", &level));
	assert_false(log_level_parse(NULL, &level));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(line_format_utc_level_program, redirect_stderr,
	                                        restore_stderr),
	        cmocka_unit_test_setup_teardown(levels_below_minimum_dropped, redirect_stderr,
	                                        restore_stderr),
	        cmocka_unit_test_setup_teardown(journal_stream_bypasses_stderr, redirect_stderr,
	                                        restore_stderr),
	        cmocka_unit_test(level_names_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
