/* Unit tests of the write-ahead log on real files in temporary directories: round trips
 * across rotation, torn and garbled tails, corruption that must stop the open, odd
 * directory states, replay from an offset and deletion of applied segments. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stemedb/buf.h"
#include "wal.h"

#define RECORD_MAX 200

struct fixture {
	char root[64];
	char dir[128];
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	strcpy(f->root, "/tmp/stemedb-test-wal-XXXXXX");
	if (mkdtemp(f->root) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->dir, sizeof(f->dir), "%s/wal", f->root);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

#define assert_contains(text, part)                                                                \
	do {                                                                                       \
		if (strstr((text), (part)) == NULL) {                                              \
			fail_msg("expected \"%s\" in message \"%s\"", (part), (text));             \
		}                                                                                  \
	} while (0)

/* Payload i has length 1 + (i * 37) % RECORD_MAX and bytes derived from i. */
static size_t make_payload(unsigned i, uint8_t *out)
{
	size_t len = 1 + (i * 37u) % RECORD_MAX;

	for (size_t k = 0; k < len; k++) {
		out[k] = (uint8_t)(i * 31u + k);
	}
	return len;
}

static struct wal *open_wal(const char *dir, uint64_t segment_bytes)
{
	struct wal_options options = {.dir = dir, .segment_bytes = segment_bytes};
	struct wal *w = NULL;
	char err[512] = "";
	enum wal_result rc = wal_open(&options, &w, err, sizeof(err));

	if (rc != WAL_OK) {
		fail_msg("wal_open(%s) returned %d: %s", dir, rc, err);
	}
	return w;
}

static enum wal_result open_expect_error(const char *dir, char *err, size_t err_size)
{
	struct wal_options options = {.dir = dir, .segment_bytes = 512};
	struct wal *w = NULL;
	enum wal_result rc = wal_open(&options, &w, err, err_size);

	assert_null(w);
	return rc;
}

/* Appends records first .. first + count - 1 in batches of batch. */
static void append_records(struct wal *w, unsigned first, unsigned count, unsigned batch)
{
	static uint8_t payloads[64][RECORD_MAX];
	struct wal_record records[64];

	assert_true(batch <= 64);
	for (unsigned done = 0; done < count; done += batch) {
		unsigned n = count - done < batch ? count - done : batch;

		for (unsigned k = 0; k < n; k++) {
			unsigned id = first + done + k;

			records[k].type = (uint8_t)(1 + id % 3);
			records[k].payload = payloads[k];
			records[k].payload_len = make_payload(id, payloads[k]);
		}
		assert_int_equal(wal_append(w, records, n, NULL), WAL_OK);
	}
}

struct collected {
	unsigned count;
	unsigned first_id;
	uint64_t offsets[1024];
	uint64_t next_offsets[1024];
	bool mismatch;
	char mismatch_text[200];
};

/* Checks that the records arrive as ids first_id, first_id + 1, ... */
static bool collect_record(void *ctx, uint64_t offset, uint64_t next_offset, uint8_t type,
                           const uint8_t *payload, size_t payload_len)
{
	struct collected *c = ctx;
	unsigned id = c->first_id + c->count;
	uint8_t expected[RECORD_MAX];
	size_t expected_len = make_payload(id, expected);

	if (type != 1 + id % 3 || payload_len != expected_len ||
	    memcmp(payload, expected, expected_len) != 0) {
		c->mismatch = true;
		snprintf(c->mismatch_text, sizeof(c->mismatch_text),
		         "record %u at offset %" PRIu64 ": type %u, length %zu", id, offset, type,
		         payload_len);
	}
	c->offsets[c->count] = offset;
	c->next_offsets[c->count] = next_offset;
	c->count++;
	return c->count < 1024;
}

static void replay_all(struct wal *w, uint64_t from, unsigned first_id, struct collected *c)
{
	char err[512] = "";
	enum wal_result rc;

	memset(c, 0, sizeof(*c));
	c->first_id = first_id;
	rc = wal_replay(w, from, collect_record, c, err, sizeof(err));
	if (rc != WAL_OK) {
		fail_msg("wal_replay from %" PRIu64 " returned %d: %s", from, rc, err);
	}
	if (c->mismatch) {
		fail_msg("replayed record differs: %s", c->mismatch_text);
	}
}

static void segment_file(const char *dir, uint64_t base, char *out, size_t out_size)
{
	snprintf(out, out_size, "%s/%016" PRIx64 ".wal", dir, base);
}

static off_t file_size(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		fail_msg("stat(%s) failed", path);
	}
	return st.st_size;
}

static void flip_byte(const char *path, off_t position)
{
	int fd = open(path, O_RDWR);
	uint8_t byte;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &byte, 1, position), 1);
	byte ^= 0x5a;
	assert_int_equal(pwrite(fd, &byte, 1, position), 1);
	close(fd);
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* Builds a WAL of 5 records in one segment and returns the file position of each. */
static void build_single_segment(struct fixture *f, off_t positions[5], off_t *end)
{
	struct wal *w = open_wal(f->dir, 0);
	struct collected c;

	append_records(w, 0, 5, 2);
	replay_all(w, 0, 0, &c);
	assert_int_equal(c.count, 5);
	for (int i = 0; i < 5; i++) {
		positions[i] = (off_t)(c.offsets[i] + WAL_HEADER_SIZE);
	}
	*end = (off_t)(c.next_offsets[4] + WAL_HEADER_SIZE);
	wal_close(w);
}

static void test_wal_round_trip_rotation(void **state)
{
	struct fixture *f = *state;
	struct wal *w = open_wal(f->dir, 512);
	struct wal_stats stats;
	struct collected c;

	append_records(w, 0, 100, 7);
	wal_get_stats(w, &stats);
	assert_true(stats.segments > 3);
	assert_int_equal(stats.rotations, stats.segments - 1);
	assert_int_equal(stats.records_written, 100);
	wal_close(w);

	w = open_wal(f->dir, 512);
	wal_get_stats(w, &stats);
	assert_int_equal(stats.first_offset, 0);
	replay_all(w, 0, 0, &c);
	assert_int_equal(c.count, 100);
	assert_int_equal(c.next_offsets[99], stats.end_offset);
	assert_int_equal(stats.last_record_offset, c.offsets[99]);

	/* Every sealed segment stays within the limit unless it contains a single record. */
	for (uint64_t base = 0; base < stats.end_offset;) {
		char path[PATH_MAX];
		off_t size;

		segment_file(f->dir, base, path, sizeof(path));
		size = file_size(path);
		assert_true(size <= 512);
		base += (uint64_t)(size - WAL_HEADER_SIZE);
	}
	wal_close(w);
}

static void test_wal_large_record_alone(void **state)
{
	struct fixture *f = *state;
	struct wal *w = open_wal(f->dir, 128);
	static uint8_t big[1000];
	struct wal_record records[2] = {
	        {.type = 1, .payload = big, .payload_len = sizeof(big)},
	        {.type = 1, .payload = big, .payload_len = 10},
	};
	struct wal_stats stats;
	char path[PATH_MAX];

	assert_int_equal(wal_append(w, records, 2, NULL), WAL_OK);
	wal_get_stats(w, &stats);
	assert_int_equal(stats.segments, 2);

	segment_file(f->dir, 0, path, sizeof(path));
	assert_int_equal(file_size(path), WAL_HEADER_SIZE + WAL_RECORD_HEADER_SIZE + 1000);
	wal_close(w);
}

static void test_wal_torn_tail_truncated(void **state)
{
	struct fixture *f = *state;
	off_t positions[5];
	off_t end;
	char path[PATH_MAX];
	struct wal_stats stats;
	struct collected c;
	struct wal *w;

	build_single_segment(f, positions, &end);
	segment_file(f->dir, 0, path, sizeof(path));
	assert_int_equal(truncate(path, end - 3), 0);

	w = open_wal(f->dir, 0);
	wal_get_stats(w, &stats);
	assert_int_equal(stats.tail_bytes_dropped, end - 3 - positions[4]);
	assert_int_equal(stats.end_offset, positions[4] - WAL_HEADER_SIZE);
	assert_int_equal(file_size(path), positions[4]);

	append_records(w, 4, 3, 3);
	wal_close(w);

	w = open_wal(f->dir, 0);
	replay_all(w, 0, 0, &c);
	assert_int_equal(c.count, 7);
	wal_close(w);
}

static void test_wal_garbled_tail_truncated(void **state)
{
	struct fixture *f = *state;
	off_t positions[5];
	off_t end;
	char path[PATH_MAX];
	struct wal_stats stats;
	struct collected c;
	struct wal *w;

	build_single_segment(f, positions, &end);
	segment_file(f->dir, 0, path, sizeof(path));
	flip_byte(path, end - 1);

	w = open_wal(f->dir, 0);
	wal_get_stats(w, &stats);
	assert_int_equal(stats.tail_bytes_dropped, end - positions[4]);
	replay_all(w, 0, 0, &c);
	assert_int_equal(c.count, 4);
	wal_close(w);
}

static void test_wal_oversized_length_tail(void **state)
{
	struct fixture *f = *state;
	off_t positions[5];
	off_t end;
	char path[PATH_MAX];
	uint8_t length[4];
	int fd;
	struct wal_stats stats;
	struct wal *w;

	build_single_segment(f, positions, &end);
	segment_file(f->dir, 0, path, sizeof(path));
	store_u32le(length, WAL_PAYLOAD_MAX + 1);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, length, 4, positions[4]), 4);
	close(fd);

	w = open_wal(f->dir, 0);
	wal_get_stats(w, &stats);
	assert_int_equal(stats.end_offset, positions[4] - WAL_HEADER_SIZE);
	wal_close(w);
}

static void test_wal_mid_log_corruption(void **state)
{
	struct fixture *f = *state;
	off_t positions[5];
	off_t end;
	char path[PATH_MAX];
	char err[512] = "";
	char expected[64];

	build_single_segment(f, positions, &end);
	segment_file(f->dir, 0, path, sizeof(path));
	flip_byte(path, positions[2] + WAL_RECORD_HEADER_SIZE);

	assert_int_equal(open_expect_error(f->dir, err, sizeof(err)), WAL_CORRUPT);
	assert_contains(err, path);
	snprintf(expected, sizeof(expected), "byte offset %lld", (long long)positions[2]);
	assert_contains(err, expected);
	assert_contains(err, "docs/operations/restore.md");
	assert_int_equal(file_size(path), end);
}

static void test_wal_mid_log_length_damage(void **state)
{
	struct fixture *f = *state;
	off_t positions[5];
	off_t end;
	char path[PATH_MAX];
	char err[512] = "";

	/* A damaged length field makes the record look like it runs past the end of the
	 * file, but the valid records behind it must still be found. */
	build_single_segment(f, positions, &end);
	segment_file(f->dir, 0, path, sizeof(path));
	flip_byte(path, positions[1] + 2);

	assert_int_equal(open_expect_error(f->dir, err, sizeof(err)), WAL_CORRUPT);
	assert_contains(err, path);
}

/* Builds a WAL of several segments and returns their base offsets. */
static size_t build_segments(struct fixture *f, uint64_t bases[], size_t max)
{
	struct wal *w = open_wal(f->dir, 512);
	struct wal_stats stats;
	size_t n = 0;

	append_records(w, 0, 40, 4);
	wal_get_stats(w, &stats);
	wal_close(w);

	for (uint64_t base = 0; base < stats.end_offset && n < max; n++) {
		char path[PATH_MAX];

		bases[n] = base;
		segment_file(f->dir, base, path, sizeof(path));
		base += (uint64_t)(file_size(path) - WAL_HEADER_SIZE);
	}
	assert_true(n >= 3);
	return n;
}

static void test_wal_sealed_corruption(void **state)
{
	struct fixture *f = *state;
	uint64_t bases[64];
	char path[PATH_MAX];
	char err[512] = "";

	build_segments(f, bases, 64);
	segment_file(f->dir, bases[0], path, sizeof(path));
	flip_byte(path, file_size(path) - 1);

	assert_int_equal(open_expect_error(f->dir, err, sizeof(err)), WAL_CORRUPT);
	assert_contains(err, path);
	assert_contains(err, "sealed");
}

static void test_wal_sealed_torn_header(void **state)
{
	struct fixture *f = *state;
	uint64_t bases[64];
	char path[PATH_MAX];
	char err[512] = "";

	build_segments(f, bases, 64);
	segment_file(f->dir, bases[1], path, sizeof(path));
	flip_byte(path, 0);

	assert_int_equal(open_expect_error(f->dir, err, sizeof(err)), WAL_CORRUPT);
	assert_contains(err, path);
	assert_contains(err, "header");
}

static void test_wal_missing_middle_segment(void **state)
{
	struct fixture *f = *state;
	uint64_t bases[64];
	char path[PATH_MAX];
	char err[512] = "";

	build_segments(f, bases, 64);
	segment_file(f->dir, bases[1], path, sizeof(path));
	assert_int_equal(unlink(path), 0);

	assert_int_equal(open_expect_error(f->dir, err, sizeof(err)), WAL_CORRUPT);
	assert_contains(err, path);
	assert_contains(err, "missing");
}

static void test_wal_empty_directory(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX];
	struct wal_stats stats;
	struct collected c;
	struct wal *w;

	assert_int_equal(mkdir(f->dir, 0750), 0);
	w = open_wal(f->dir, 0);
	wal_get_stats(w, &stats);
	assert_int_equal(stats.end_offset, 0);
	assert_int_equal(stats.segments, 1);
	segment_file(f->dir, 0, path, sizeof(path));
	assert_int_equal(file_size(path), WAL_HEADER_SIZE);

	replay_all(w, 0, 0, &c);
	assert_int_equal(c.count, 0);
	wal_close(w);
}

/* A segment whose creation stopped before its rename is left as NAME.wal.tmp; opening
 * the WAL removes it and never treats it as a segment. */
static void test_wal_leftover_tmp_removed(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX], tmp_path[PATH_MAX + 8];
	struct wal_stats stats;
	struct wal *w;
	FILE *tmp;

	assert_int_equal(mkdir(f->dir, 0750), 0);
	w = open_wal(f->dir, 0);
	wal_close(w);
	segment_file(f->dir, 0x1000, path, sizeof(path));
	snprintf(tmp_path, sizeof(tmp_path), "%s.tmp", path);
	tmp = fopen(tmp_path, "w");
	assert_non_null(tmp);
	fputs("STMW", tmp);
	fclose(tmp);

	w = open_wal(f->dir, 0);
	wal_get_stats(w, &stats);
	assert_int_equal(stats.segments, 1);
	assert_int_equal(stats.end_offset, 0);
	assert_int_equal(access(tmp_path, F_OK), -1);
	wal_close(w);
}

static void test_wal_missing_directory(void **state)
{
	struct fixture *f = *state;
	char nested[PATH_MAX];
	struct wal *w;

	snprintf(nested, sizeof(nested), "%s/a/b/wal", f->root);
	w = open_wal(nested, 0);
	append_records(w, 0, 3, 3);
	wal_close(w);

	w = open_wal(nested, 0);
	struct collected c;
	replay_all(w, 0, 0, &c);
	assert_int_equal(c.count, 3);
	wal_close(w);
}

static void test_wal_initial_offset(void **state)
{
	struct fixture *f = *state;
	struct wal_options options = {.dir = f->dir, .initial_offset = 1000};
	char err[256] = "";
	char path[PATH_MAX];
	struct wal_stats stats;
	struct wal *w = NULL;

	assert_int_equal(wal_open(&options, &w, err, sizeof(err)), WAL_OK);
	wal_get_stats(w, &stats);
	assert_int_equal(stats.end_offset, 1000);
	assert_int_equal(stats.first_offset, 1000);
	segment_file(f->dir, 1000, path, sizeof(path));
	assert_int_equal(file_size(path), WAL_HEADER_SIZE);
	wal_close(w);
}

static void test_wal_zero_byte_last_segment(void **state)
{
	struct fixture *f = *state;
	uint64_t bases[64];
	size_t n = build_segments(f, bases, 64);
	char last[PATH_MAX];
	char path[PATH_MAX];
	struct wal_stats stats;
	struct collected c;
	struct wal *w;

	segment_file(f->dir, bases[n - 1], last, sizeof(last));
	uint64_t end = bases[n - 1] + (uint64_t)(file_size(last) - WAL_HEADER_SIZE);
	segment_file(f->dir, end, path, sizeof(path));
	write_file(path, "", 0);

	w = open_wal(f->dir, 512);
	wal_get_stats(w, &stats);
	assert_int_equal(stats.segments, n + 1);
	assert_int_equal(stats.end_offset, end);
	assert_int_equal(file_size(path), WAL_HEADER_SIZE);

	append_records(w, 40, 2, 2);
	wal_close(w);

	w = open_wal(f->dir, 512);
	replay_all(w, 0, 0, &c);
	assert_int_equal(c.count, 42);
	wal_close(w);
}

static void test_wal_truncated_header_last(void **state)
{
	struct fixture *f = *state;
	uint64_t bases[64];
	size_t n = build_segments(f, bases, 64);
	char last[PATH_MAX];
	char path[PATH_MAX];
	struct wal_stats stats;
	struct wal *w;

	segment_file(f->dir, bases[n - 1], last, sizeof(last));
	uint64_t end = bases[n - 1] + (uint64_t)(file_size(last) - WAL_HEADER_SIZE);
	segment_file(f->dir, end, path, sizeof(path));
	write_file(path, "STMWAL01\x01\x00", 10);

	w = open_wal(f->dir, 512);
	wal_get_stats(w, &stats);
	assert_int_equal(stats.end_offset, end);
	assert_int_equal(file_size(path), WAL_HEADER_SIZE);
	wal_close(w);
}

static void test_wal_header_only_last_segment(void **state)
{
	struct fixture *f = *state;
	uint64_t bases[64];
	size_t n = build_segments(f, bases, 64);
	char last[PATH_MAX];
	char path[PATH_MAX];
	uint8_t header[WAL_HEADER_SIZE] = {0};
	struct wal_stats stats;
	struct collected c;
	struct wal *w;

	segment_file(f->dir, bases[n - 1], last, sizeof(last));
	uint64_t end = bases[n - 1] + (uint64_t)(file_size(last) - WAL_HEADER_SIZE);
	memcpy(header, "STMWAL01", 8);
	store_u32le(header + 8, 1);
	store_u32le(header + 12, WAL_HEADER_SIZE);
	store_u64le(header + 16, end);
	segment_file(f->dir, end, path, sizeof(path));
	write_file(path, header, sizeof(header));

	w = open_wal(f->dir, 512);
	wal_get_stats(w, &stats);
	assert_int_equal(stats.segments, n + 1);
	assert_int_equal(stats.end_offset, end);
	assert_int_equal(stats.tail_bytes_dropped, 0);
	replay_all(w, 0, 0, &c);
	assert_int_equal(c.count, 40);
	wal_close(w);
}

static void test_wal_replay_from_middle(void **state)
{
	struct fixture *f = *state;
	struct wal *w = open_wal(f->dir, 512);
	struct collected all;
	struct collected tail;
	char err[256] = "";

	append_records(w, 0, 60, 5);
	replay_all(w, 0, 0, &all);
	assert_int_equal(all.count, 60);

	replay_all(w, all.offsets[37], 37, &tail);
	assert_int_equal(tail.count, 23);
	assert_int_equal(tail.offsets[0], all.offsets[37]);

	assert_int_equal(
	        wal_replay(w, all.offsets[37] + 1, collect_record, &tail, err, sizeof(err)),
	        WAL_INVALID);
	assert_contains(err, "inside the record");
	wal_close(w);
}

static bool hold_all(void *ctx, const char *path, uint64_t base, uint64_t end)
{
	unsigned *calls = ctx;

	(void)path;
	(void)base;
	(void)end;
	(*calls)++;
	return false;
}

static void test_wal_delete_applied(void **state)
{
	struct fixture *f = *state;
	struct wal *w = open_wal(f->dir, 512);
	struct collected all;
	struct wal_stats before;
	struct wal_stats after;
	unsigned held = 0;
	size_t removed = 99;

	append_records(w, 0, 60, 5);
	replay_all(w, 0, 0, &all);
	wal_get_stats(w, &before);

	wal_set_retention(w, hold_all, &held);
	assert_int_equal(wal_delete_applied(w, before.end_offset, &removed), WAL_OK);
	assert_int_equal(removed, 0);
	assert_int_equal(held, 1);

	wal_set_retention(w, NULL, NULL);
	assert_int_equal(wal_delete_applied(w, all.offsets[30], &removed), WAL_OK);
	wal_get_stats(w, &after);
	assert_true(removed > 0);
	assert_int_equal(after.segments, before.segments - removed);
	assert_true(after.first_offset <= all.offsets[30]);

	assert_int_equal(wal_delete_applied(w, before.end_offset, &removed), WAL_OK);
	wal_get_stats(w, &after);
	assert_int_equal(after.segments, 1);
	wal_close(w);

	w = open_wal(f->dir, 512);
	wal_get_stats(w, &after);
	assert_int_equal(after.end_offset, before.end_offset);
	append_records(w, 60, 3, 3);
	wal_close(w);
}

static void test_wal_rejects_bad_record(void **state)
{
	struct fixture *f = *state;
	struct wal *w = open_wal(f->dir, 0);
	uint8_t byte = 0;
	struct wal_record big = {.type = 1, .payload = &byte, .payload_len = WAL_PAYLOAD_MAX + 1};
	struct wal_record untyped = {.type = 0, .payload = &byte, .payload_len = 1};

	assert_int_equal(wal_append(w, &big, 1, NULL), WAL_INVALID);
	assert_int_equal(wal_append(w, &untyped, 1, NULL), WAL_INVALID);
	assert_false(wal_failed(w));
	wal_close(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_wal_round_trip_rotation, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_large_record_alone, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_torn_tail_truncated, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_garbled_tail_truncated, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_oversized_length_tail, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_mid_log_corruption, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_mid_log_length_damage, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_sealed_corruption, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_sealed_torn_header, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_missing_middle_segment, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_empty_directory, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_leftover_tmp_removed, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_missing_directory, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_initial_offset, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_zero_byte_last_segment, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_truncated_header_last, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_header_only_last_segment, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_replay_from_middle, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_delete_applied, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wal_rejects_bad_record, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
