/* Unit tests for the WAL archiver: command templates, the command runner, directory
 * archiving with its idempotence and conflict rules, and one archiving pass over a WAL
 * written by the real writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../walarchiver/src/archiver.h"
#include "stemedb/wal_segment.h"
#include "wal.h"

struct fixture {
	char root[64];
	char wal_dir[96];
	char archive_dir[96];
	struct archiver_config cfg;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct wal_options options = {.segment_bytes = 300};
	uint8_t payload[100];
	struct wal_record record = {.type = 1, .payload = payload, .payload_len = sizeof(payload)};
	struct wal *w = NULL;
	char err[256];
	uint64_t end;

	snprintf(f->root, sizeof(f->root), "/tmp/test-archiver-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	snprintf(f->wal_dir, sizeof(f->wal_dir), "%s/wal", f->root);
	snprintf(f->archive_dir, sizeof(f->archive_dir), "%s/archive", f->root);
	assert_int_equal(mkdir(f->archive_dir, 0750), 0);

	options.dir = f->wal_dir;
	assert_int_equal(wal_open(&options, &w, err, sizeof(err)), WAL_OK);
	for (int i = 0; i < 5; i++) {
		memset(payload, 'a' + i, sizeof(payload));
		assert_int_equal(wal_append(w, &record, 1, &end), WAL_OK);
	}
	assert_int_equal(wal_sync(w), WAL_OK);
	wal_close(w);

	f->cfg.wal_dir = f->wal_dir;
	f->cfg.archive_dir = f->archive_dir;
	f->cfg.archive_command = "";
	f->cfg.verify_command = "";
	f->cfg.command_timeout_ms = 5000;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char command[200];

	snprintf(command, sizeof(command), "rm -rf '%s'", f->root);
	if (system(command) != 0)
		fprintf(stderr, "removing %s failed\n", f->root);
	free(f);
	return 0;
}

static size_t count_files(const char *dir)
{
	struct wal_segment_list list;
	char err[256];
	size_t count;

	assert_int_equal(wal_segment_list_dir(dir, &list, err, sizeof(err)), WAL_SEGMENT_OK);
	count = list.count;
	wal_segment_list_free(&list);
	return count;
}

static void command_expands_and_quotes(void **state)
{
	char err[256];
	char *command;

	(void)state;
	command = archive_command_expand("cp %p /a/%f && echo 100%%", "/w/it's.wal", "it's.wal",
	                                 err, sizeof(err));
	assert_non_null(command);
	assert_string_equal(command, "cp '/w/it'\\''s.wal' /a/'it'\\''s.wal' && echo 100%");
	free(command);
}

static void command_rejects_unknown_escape(void **state)
{
	char err[256] = "";

	(void)state;
	assert_null(archive_command_expand("cp %p %d", "/p", "f", err, sizeof(err)));
	if (strstr(err, "%d") == NULL)
		fail_msg("message does not name %%d: %s", err);
	assert_null(archive_command_expand("cp %p %", "/p", "f", err, sizeof(err)));
}

static void command_reports_status(void **state)
{
	char err[256] = "";

	(void)state;
	assert_true(archive_command_run("true", 5000, err, sizeof(err)));
	assert_false(archive_command_run("exit 3", 5000, err, sizeof(err)));
	if (strstr(err, "status 3") == NULL)
		fail_msg("message does not give status 3: %s", err);
	assert_false(archive_command_run("sleep 5", 100, err, sizeof(err)));
	if (strstr(err, "timed out") == NULL)
		fail_msg("message does not report the timeout: %s", err);
}

static void pass_archives_sealed_segments(void **state)
{
	struct fixture *f = *state;
	struct archiver *a = archiver_new(&f->cfg, NULL, NULL);
	size_t on_disk = count_files(f->wal_dir);
	bool conflict = true;
	int shipped = archiver_pass(a, &conflict);

	if (shipped != (int)on_disk - 1)
		fail_msg("shipped %d segments, expected every sealed one: %zu", shipped,
		         on_disk - 1);
	assert_false(conflict);
	if (count_files(f->archive_dir) != on_disk - 1)
		fail_msg("the archive holds %zu segments, expected %zu",
		         count_files(f->archive_dir), on_disk - 1);
	assert_int_equal(archiver_pass(a, &conflict), 0);
	archiver_free(a);
}

static void second_archiver_finds_identical_copies(void **state)
{
	struct fixture *f = *state;
	struct archiver *first = archiver_new(&f->cfg, NULL, NULL);
	struct archiver *second = archiver_new(&f->cfg, NULL, NULL);
	bool conflict = false;
	int shipped;

	assert_true(archiver_pass(first, &conflict) > 0);
	shipped = archiver_pass(second, &conflict);
	if (shipped <= 0 || conflict)
		fail_msg("second pass shipped %d, conflict %d; expected identical copies", shipped,
		         conflict);
	assert_int_equal(archiver_watermark(first), archiver_watermark(second));
	archiver_free(first);
	archiver_free(second);
}

static void different_copy_is_a_conflict(void **state)
{
	struct fixture *f = *state;
	struct wal_segment_list list;
	char path[200], name[WAL_SEGMENT_NAME_LEN + 1], err[256];
	struct archiver *a;
	bool conflict = false;
	FILE *file;

	assert_int_equal(wal_segment_list_dir(f->wal_dir, &list, err, sizeof(err)), WAL_SEGMENT_OK);
	wal_segment_format_name(list.bases[0], name);
	snprintf(path, sizeof(path), "%s/%s", f->archive_dir, name);
	file = fopen(path, "wb");
	assert_non_null(file);
	fputs("not this segment", file);
	fclose(file);

	a = archiver_new(&f->cfg, NULL, NULL);
	assert_int_equal(archiver_pass(a, &conflict), -1);
	assert_true(conflict);
	if (archiver_watermark(a) != 0)
		fail_msg("watermark moved to %llu past a conflicting segment",
		         (unsigned long long)archiver_watermark(a));
	archiver_free(a);
	wal_segment_list_free(&list);
}

static void command_mode_archives(void **state)
{
	struct fixture *f = *state;
	char command[256];
	struct archiver *a;
	bool conflict = false;
	int shipped;

	snprintf(command, sizeof(command), "cp %%p %s/%%f", f->archive_dir);
	f->cfg.archive_dir = "";
	f->cfg.archive_command = command;
	f->cfg.verify_command = "test -s %p";
	a = archiver_new(&f->cfg, NULL, NULL);
	shipped = archiver_pass(a, &conflict);
	if (shipped != (int)count_files(f->wal_dir) - 1)
		fail_msg("command mode shipped %d segments", shipped);
	assert_int_equal(count_files(f->archive_dir), (size_t)shipped);
	archiver_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(command_expands_and_quotes),
	        cmocka_unit_test(command_rejects_unknown_escape),
	        cmocka_unit_test(command_reports_status),
	        cmocka_unit_test_setup_teardown(pass_archives_sealed_segments, setup, teardown),
	        cmocka_unit_test_setup_teardown(second_archiver_finds_identical_copies, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(different_copy_is_a_conflict, setup, teardown),
	        cmocka_unit_test_setup_teardown(command_mode_archives, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
