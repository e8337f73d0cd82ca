/* Shipping one sealed segment to the archive: a directory, or an operator's command. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archiver.h"
#include "stemedb/wal_segment.h"

#define COMPARE_CHUNK_BYTES (1u << 20)

enum archiver_result archive_check_source(struct archive_segment *segment, char *err,
                                          size_t err_size)
{
	struct wal_segment_info info;
	enum wal_segment_result r;

	r = wal_segment_scan(segment->path, false, NULL, NULL, &info, err, err_size);
	if (r == WAL_SEGMENT_CORRUPT)
		return ARCHIVER_CORRUPT;
	if (r != WAL_SEGMENT_OK)
		return ARCHIVER_RETRY;

	segment->end = info.end;
	segment->size = info.file_size;
	return ARCHIVER_OK;
}

/* Reads up to len bytes at offset; returns the count, 0 at the end, -1 on error. */
static ssize_t read_chunk(int fd, uint8_t *out, size_t len, off_t offset)
{
	ssize_t n;

	do {
		n = pread(fd, out, len, offset);
	} while (n < 0 && errno == EINTR);
	return n;
}

/* Sets *same to whether the files at a and b have identical bytes. */
static bool files_equal(const char *a, const char *b, bool *same, char *err, size_t err_size)
{
	uint8_t *x = malloc(COMPARE_CHUNK_BYTES), *y = malloc(COMPARE_CHUNK_BYTES);
	int fa = open(a, O_RDONLY | O_CLOEXEC), fb = open(b, O_RDONLY | O_CLOEXEC);
	bool ok = false;
	off_t offset = 0;

	if (x == NULL || y == NULL)
		abort();
	if (fa < 0 || fb < 0) {
		snprintf(err, err_size, "open() of %s failed: %s", fa < 0 ? a : b, strerror(errno));
		goto done;
	}

	*same = true;
	for (;;) {
		ssize_t na = read_chunk(fa, x, COMPARE_CHUNK_BYTES, offset);
		ssize_t nb = read_chunk(fb, y, COMPARE_CHUNK_BYTES, offset);

		if (na < 0 || nb < 0) {
			snprintf(err, err_size, "read() of %s failed: %s", na < 0 ? a : b,
			         strerror(errno));
			goto done;
		}
		if (na != nb || memcmp(x, y, (size_t)na) != 0) {
			*same = false;
			break;
		}
		if (na == 0)
			break;
		offset += na;
	}
	ok = true;

done:
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	free(x);
	free(y);
	return ok;
}

/* Re-reads the archived copy and checks it against the source's size and end offset.
 * Every record's CRC-32C is checked again on the way. */
static enum archiver_result verify_copy(const struct archive_segment *segment, const char *copy,
                                        char *err, size_t err_size)
{
	struct wal_segment_info info;
	enum wal_segment_result r = wal_segment_scan(copy, false, NULL, NULL, &info, err, err_size);

	if (r != WAL_SEGMENT_OK)
		return ARCHIVER_RETRY;
	if (info.file_size != segment->size || info.end != segment->end) {
		snprintf(err, err_size,
		         "the archived copy %s has %" PRIu64 " bytes ending at offset %" PRIu64
		         ", but the source has %" PRIu64 " bytes ending at %" PRIu64,
		         copy, info.file_size, info.end, segment->size, segment->end);
		return ARCHIVER_RETRY;
	}
	return ARCHIVER_OK;
}

enum archiver_result archive_to_dir(const struct archive_segment *segment, const char *archive_dir,
                                    bool *already_archived, char *err, size_t err_size)
{
	char copy[4096];
	struct stat st;
	bool same = false;

	*already_archived = false;
	snprintf(copy, sizeof(copy), "%s/%s", archive_dir, segment->name);
	if (stat(copy, &st) == 0) {
		if (!files_equal(segment->path, copy, &same, err, err_size))
			return ARCHIVER_RETRY;
		if (!same) {
			snprintf(err, err_size,
			         "the archive already holds %s with different contents; it may "
			         "come from another node or from the WAL history before a "
			         "point-in-time restore, so move it away or point "
			         "STEMEDB_WAL_ARCHIVE_DIR at a new directory",
			         copy);
			return ARCHIVER_CONFLICT;
		}
		*already_archived = true;
		return verify_copy(segment, copy, err, err_size);
	}

	if (wal_segment_copy(segment->path, segment->size, archive_dir, segment->name, err,
	                     err_size) != WAL_SEGMENT_OK)
		return ARCHIVER_RETRY;
	return verify_copy(segment, copy, err, err_size);
}

static enum archiver_result run_template(const char *template, const char *what,
                                         const struct archive_segment *segment, uint64_t timeout_ms,
                                         char *err, size_t err_size)
{
	char reason[512];
	char *command =
	        archive_command_expand(template, segment->path, segment->name, err, err_size);
	bool ok;

	if (command == NULL)
		return ARCHIVER_CONFLICT;
	ok = archive_command_run(command, timeout_ms, reason, sizeof(reason));
	if (!ok)
		snprintf(err, err_size, "the %s for %s %s", what, segment->name, reason);
	free(command);
	return ok ? ARCHIVER_OK : ARCHIVER_RETRY;
}

enum archiver_result archive_with_command(const struct archive_segment *segment,
                                          const struct archiver_config *cfg, char *err,
                                          size_t err_size)
{
	enum archiver_result r = run_template(cfg->archive_command, "archive command", segment,
	                                      cfg->command_timeout_ms, err, err_size);

	if (r != ARCHIVER_OK || cfg->verify_command == NULL || cfg->verify_command[0] == '\0')
		return r;
	return run_template(cfg->verify_command, "verify command", segment, cfg->command_timeout_ms,
	                    err, err_size);
}
