/* Unit tests for the read-only WAL segment reader, on segments written by the real WAL
 * writer of stemedb-api. */
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

#include "stemedb/wal_segment.h"
#include "wal.h"

struct fixture {
	char dir[64];
	char copy_dir[80];
};

/* Writes five records of 100 bytes into a WAL whose segments rotate after 300 bytes,
 * so the directory contains several sealed segments and an active one. */
static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct wal_options options = {.segment_bytes = 300};
	uint8_t payload[100];
	struct wal_record record = {.type = 1, .payload = payload, .payload_len = sizeof(payload)};
	struct wal *w = NULL;
	char err[256];
	uint64_t end;

	snprintf(f->dir, sizeof(f->dir), "/tmp/test-wal-segment-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->copy_dir, sizeof(f->copy_dir), "%s/copy", f->dir);
	options.dir = f->dir;
	assert_int_equal(wal_open(&options, &w, err, sizeof(err)), WAL_OK);
	for (int i = 0; i < 5; i++) {
		memset(payload, 'a' + i, sizeof(payload));
		assert_int_equal(wal_append(w, &record, 1, &end), WAL_OK);
	}
	assert_int_equal(wal_sync(w), WAL_OK);
	wal_close(w);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char command[200];

	snprintf(command, sizeof(command), "rm -rf '%s'", f->dir);
	if (system(command) != 0)
		fprintf(stderr, "removing %s failed\n", f->dir);
	free(f);
	return 0;
}

static void segment_path(const struct fixture *f, uint64_t base, char *out, size_t size)
{
	char name[WAL_SEGMENT_NAME_LEN + 1];

	wal_segment_format_name(base, name);
	snprintf(out, size, "%s/%s", f->dir, name);
}

static void append_bytes(const char *path, const void *data, size_t len)
{
	FILE *file = fopen(path, "ab");

	assert_non_null(file);
	assert_int_equal(fwrite(data, 1, len, file), len);
	assert_int_equal(fclose(file), 0);
}

static void flip_byte(const char *path, long position)
{
	FILE *file = fopen(path, "r+b");
	int c;

	assert_non_null(file);
	assert_int_equal(fseek(file, position, SEEK_SET), 0);
	c = fgetc(file);
	assert_int_equal(fseek(file, position, SEEK_SET), 0);
	fputc(c ^ 0x01, file);
	assert_int_equal(fclose(file), 0);
}

static bool count_record(void *ctx, uint64_t offset, uint64_t next_offset, uint8_t type,
                         const uint8_t *payload, size_t payload_len)
{
	uint64_t *count = ctx;

	(void)offset;
	(void)next_offset;
	(void)type;
	(void)payload;
	(void)payload_len;
	(*count)++;
	return true;
}

static void segment_name_parsing(void **state)
{
	uint64_t base = 0;
	char name[WAL_SEGMENT_NAME_LEN + 1];

	(void)state;
	assert_true(wal_segment_parse_name("0000000000a3f000.wal", &base));
	if (base != 0xa3f000)
		fail_msg("parsed base 0x%llx, expected 0xa3f000", (unsigned long long)base);
	assert_false(wal_segment_parse_name("0000000000A3F000.wal", &base));
	assert_false(wal_segment_parse_name("0000000000a3f000.wal.tmp", &base));
	assert_false(wal_segment_parse_name("a3f000.wal", &base));
	wal_segment_format_name(0xa3f000, name);
	assert_string_equal(name, "0000000000a3f000.wal");
}

static void segment_chain_is_contiguous(void **state)
{
	struct fixture *f = *state;
	struct wal_segment_list list;
	struct wal_segment_info info;
	char path[200], err[512];
	uint64_t records = 0;

	assert_int_equal(wal_segment_list_dir(f->dir, &list, err, sizeof(err)), WAL_SEGMENT_OK);
	if (list.count < 3)
		fail_msg("expected at least 3 segments, found %zu", list.count);
	for (size_t i = 0; i < list.count; i++) {
		segment_path(f, list.bases[i], path, sizeof(path));
		if (wal_segment_scan(path, false, count_record, &records, &info, err,
		                     sizeof(err)) != WAL_SEGMENT_OK)
			fail_msg("scan of %s failed: %s", path, err);
		if (i + 1 < list.count && info.end != list.bases[i + 1])
			fail_msg("segment %zu ends at %llu, the next starts at %llu", i,
			         (unsigned long long)info.end,
			         (unsigned long long)list.bases[i + 1]);
	}
	if (records != 5)
		fail_msg("scanned %llu records, expected 5", (unsigned long long)records);
	wal_segment_list_free(&list);
}

static void segment_tail_needs_allow_tail(void **state)
{
	struct fixture *f = *state;
	struct wal_segment_list list;
	struct wal_segment_info info;
	char path[200], err[512];
	const uint8_t garbage[7] = {1, 2, 3, 4, 5, 6, 7};

	assert_int_equal(wal_segment_list_dir(f->dir, &list, err, sizeof(err)), WAL_SEGMENT_OK);
	segment_path(f, list.bases[list.count - 1], path, sizeof(path));
	append_bytes(path, garbage, sizeof(garbage));

	assert_int_equal(wal_segment_scan(path, false, NULL, NULL, &info, err, sizeof(err)),
	                 WAL_SEGMENT_CORRUPT);
	assert_int_equal(wal_segment_scan(path, true, NULL, NULL, &info, err, sizeof(err)),
	                 WAL_SEGMENT_OK);
	if (info.file_size - info.valid_size != sizeof(garbage))
		fail_msg("valid size %llu of %llu bytes, expected 7 tail bytes",
		         (unsigned long long)info.valid_size, (unsigned long long)info.file_size);
	wal_segment_list_free(&list);
}

static void segment_damage_before_valid_record(void **state)
{
	struct fixture *f = *state;
	struct wal_segment_list list;
	struct wal_segment_info info;
	char path[200], err[512];

	assert_int_equal(wal_segment_list_dir(f->dir, &list, err, sizeof(err)), WAL_SEGMENT_OK);
	segment_path(f, list.bases[0], path, sizeof(path));
	/* The first record's payload starts at byte 44; a second record follows it. */
	flip_byte(path, 60);

	assert_int_equal(wal_segment_scan(path, true, NULL, NULL, &info, err, sizeof(err)),
	                 WAL_SEGMENT_CORRUPT);
	if (strstr(err, "followed by a valid record") == NULL)
		fail_msg("unexpected message: %s", err);
	wal_segment_list_free(&list);
}

static void segment_header_base_mismatch(void **state)
{
	struct fixture *f = *state;
	struct wal_segment_list list;
	struct wal_segment_info info;
	char path[200], renamed[200], err[512];

	assert_int_equal(wal_segment_list_dir(f->dir, &list, err, sizeof(err)), WAL_SEGMENT_OK);
	segment_path(f, list.bases[0], path, sizeof(path));
	snprintf(renamed, sizeof(renamed), "%s/00000000000000ff.wal", f->dir);
	assert_int_equal(rename(path, renamed), 0);

	assert_int_equal(wal_segment_scan(renamed, false, NULL, NULL, &info, err, sizeof(err)),
	                 WAL_SEGMENT_CORRUPT);
	if (strstr(err, "base offset") == NULL)
		fail_msg("unexpected message: %s", err);
	wal_segment_list_free(&list);
}

static void segment_copy_prefix(void **state)
{
	struct fixture *f = *state;
	struct wal_segment_list list;
	struct wal_segment_info original, copy;
	char path[200], copied[200], name[WAL_SEGMENT_NAME_LEN + 1], err[512];

	assert_int_equal(wal_segment_list_dir(f->dir, &list, err, sizeof(err)), WAL_SEGMENT_OK);
	assert_int_equal(mkdir(f->copy_dir, 0750), 0);
	segment_path(f, list.bases[0], path, sizeof(path));
	wal_segment_format_name(list.bases[0], name);
	assert_int_equal(wal_segment_scan(path, false, NULL, NULL, &original, err, sizeof(err)),
	                 WAL_SEGMENT_OK);

	assert_int_equal(
	        wal_segment_copy(path, original.valid_size, f->copy_dir, name, err, sizeof(err)),
	        WAL_SEGMENT_OK);
	snprintf(copied, sizeof(copied), "%s/%s", f->copy_dir, name);
	assert_int_equal(wal_segment_scan(copied, false, NULL, NULL, &copy, err, sizeof(err)),
	                 WAL_SEGMENT_OK);
	if (copy.data_crc != original.data_crc || copy.end != original.end)
		fail_msg("copy crc 0x%08x end %llu, original crc 0x%08x end %llu", copy.data_crc,
		         (unsigned long long)copy.end, original.data_crc,
		         (unsigned long long)original.end);
	assert_int_not_equal(
	        wal_segment_copy(path, original.file_size + 1, f->copy_dir, name, err, sizeof(err)),
	        WAL_SEGMENT_OK);
	wal_segment_list_free(&list);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(segment_name_parsing),
	        cmocka_unit_test_setup_teardown(segment_chain_is_contiguous, setup, teardown),
	        cmocka_unit_test_setup_teardown(segment_tail_needs_allow_tail, setup, teardown),
	        cmocka_unit_test_setup_teardown(segment_damage_before_valid_record, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(segment_header_base_mismatch, setup, teardown),
	        cmocka_unit_test_setup_teardown(segment_copy_prefix, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
