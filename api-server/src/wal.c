/*
 * Write-ahead log. Byte format (all integers little-endian):
 *
 * A WAL is a directory of segment files named "%016x.wal" after their base offset
 * (16 lowercase hex digits). Each segment starts with a 32-byte header:
 *
 *   0   8  magic "STMWAL01"
 *   8   4  version, 1
 *   12  4  header size, 32
 *   16  8  base offset: the global offset of the segment's first record
 *   24  8  creation time, Unix nanoseconds
 *
 * followed by records, back to back:
 *
 *   0   4  payload length N
 *   4   4  CRC32C (Castagnoli) over bytes 8 .. 12 + N (type, padding and payload)
 *   8   1  record type (0 is never written)
 *   9   3  zero padding
 *   12  N  payload
 *
 * Global offsets count record bytes only: a record's offset is its segment's base
 * offset plus its byte position in the file minus 32. Headers take no offset space, so
 * a segment's end offset is the next segment's base offset, and a gap between the two
 * means a segment is missing.
 *
 * Recovery treats a short or checksum-failing record as a torn write only when it lies
 * in the last segment and no valid record follows it. The tail from that record on is
 * then truncated. Everything else that fails a check is corruption and stops the open.
 */

#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "stemedb/buf.h"
#include "stemedb/crc32c.h"
#include "stemedb/log.h"

#define WAL_MAGIC        "STMWAL01"
#define WAL_VERSION      1
#define WAL_NAME_LEN     20 /* 16 hex digits and ".wal" */
#define WAL_TMP_SUFFIX   ".tmp"
#define WAL_RESTORE_HINT "restore the node as described in docs/operations/restore.md"

struct wal_segment {
	uint64_t base;
	uint64_t end;
};

struct wal {
	char *dir;
	int dir_fd;
	int fd; /* the active (last) segment, opened for writing */
	uint64_t segment_bytes;
	uint64_t file_size; /* bytes in the active segment file, header included */
	bool failed;
	struct wal_segment *segments;
	size_t segment_count;
	size_t segment_cap;
	struct wal_stats stats;
	wal_retention_fn retention;
	void *retention_ctx;
	struct iovec *iov;
	uint8_t (*record_headers)[WAL_RECORD_HEADER_SIZE];
	size_t iov_cap;
};

/* A read-only view of one segment file. */
struct segment_map {
	const uint8_t *data;
	size_t size;
	void *mapping;
};

static void set_err(char *err, size_t err_size, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || err_size == 0) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(err, err_size, fmt, ap);
	va_end(ap);
}

static void segment_path(const struct wal *w, uint64_t base, char *out, size_t out_size)
{
	snprintf(out, out_size, "%s/%016" PRIx64 ".wal", w->dir, base);
}

static uint64_t now_unix_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void push_segment(struct wal *w, uint64_t base, uint64_t end)
{
	if (w->segment_count == w->segment_cap) {
		size_t cap = w->segment_cap ? w->segment_cap * 2 : 16;
		struct wal_segment *grown = realloc(w->segments, cap * sizeof(*grown));

		if (grown == NULL) {
			abort();
		}
		w->segments = grown;
		w->segment_cap = cap;
	}
	w->segments[w->segment_count].base = base;
	w->segments[w->segment_count].end = end;
	w->segment_count++;
}

/* ---- directory handling ---- */

static int mkdir_parents(const char *path)
{
	char tmp[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(tmp, path, len + 1);

	for (char *p = tmp + 1; *p != '\0'; p++) {
		if (*p != '/') {
			continue;
		}
		*p = '\0';
		if (mkdir(tmp, 0750) != 0 && errno != EEXIST) {
			return -1;
		}
		*p = '/';
	}

	if (mkdir(tmp, 0750) != 0 && errno != EEXIST) {
		return -1;
	}
	return 0;
}

static enum wal_result sync_dir(struct wal *w)
{
	if (fsync(w->dir_fd) != 0) {
		log_error("fsync() of WAL directory %s failed: %s", w->dir, strerror(errno));
		w->failed = true;
		return WAL_IO_ERROR;
	}
	return WAL_OK;
}

/* A segment whose creation was interrupted before it got its final name. */
static bool is_leftover_tmp(const char *name)
{
	size_t len = strlen(name);
	size_t suffix_len = strlen(WAL_TMP_SUFFIX);

	return len == WAL_NAME_LEN + suffix_len && strcmp(name + WAL_NAME_LEN, WAL_TMP_SUFFIX) == 0;
}

static void remove_leftover_tmp(const char *dir, const char *name)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (unlink(path) == 0)
		log_warn("removed %s, a WAL segment whose creation was interrupted", path);
	else
		log_error("unlink() of %s failed: %s", path, strerror(errno));
}

static bool parse_segment_name(const char *name, uint64_t *base)
{
	uint64_t value = 0;

	if (strlen(name) != WAL_NAME_LEN || strcmp(name + 16, ".wal") != 0) {
		return false;
	}
	for (int i = 0; i < 16; i++) {
		char c = name[i];
		int digit;

		if (c >= '0' && c <= '9') {
			digit = c - '0';
		} else if (c >= 'a' && c <= 'f') {
			digit = c - 'a' + 10;
		} else {
			return false;
		}
		value = value << 4 | (uint64_t)digit;
	}
	*base = value;
	return true;
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a;
	uint64_t y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Lists the base offsets of the segment files in dir, sorted ascending. */
static enum wal_result list_segments(const char *dir, uint64_t **bases, size_t *count, char *err,
                                     size_t err_size)
{
	DIR *d = opendir(dir);
	struct dirent *entry;
	uint64_t *list = NULL;
	size_t n = 0;
	size_t cap = 0;

	if (d == NULL) {
		set_err(err, err_size, "opendir() of WAL directory %s failed: %s", dir,
		        strerror(errno));
		return WAL_IO_ERROR;
	}

	while ((entry = readdir(d)) != NULL) {
		uint64_t base;

		if (entry->d_type != DT_DIR && is_leftover_tmp(entry->d_name)) {
			remove_leftover_tmp(dir, entry->d_name);
			continue;
		}
		if (entry->d_type == DT_DIR || !parse_segment_name(entry->d_name, &base)) {
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			list = realloc(list, cap * sizeof(*list));
			if (list == NULL) {
				abort();
			}
		}
		list[n++] = base;
	}
	closedir(d);

	if (n > 1) {
		qsort(list, n, sizeof(*list), compare_u64);
	}
	*bases = list;
	*count = n;
	return WAL_OK;
}

/* ---- reading segments ---- */

static int map_segment(const char *path, struct segment_map *map)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = -1;

	memset(map, 0, sizeof(*map));
	if (fd < 0) {
		log_error("open() of WAL segment %s failed: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		log_error("fstat() of WAL segment %s failed: %s", path, strerror(errno));
		goto done;
	}

	map->size = (size_t)st.st_size;
	if (map->size > 0) {
		map->mapping = mmap(NULL, map->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map->mapping == MAP_FAILED) {
			log_error("mmap() of WAL segment %s (%zu bytes) failed: %s", path,
			          map->size, strerror(errno));
			map->mapping = NULL;
			goto done;
		}
		map->data = map->mapping;
	}
	rc = 0;

done:
	close(fd);
	return rc;
}

static void unmap_segment(struct segment_map *map)
{
	if (map->mapping != NULL) {
		munmap(map->mapping, map->size);
	}
	memset(map, 0, sizeof(*map));
}

static bool header_valid(const uint8_t *data, size_t size, uint64_t base)
{
	if (size < WAL_HEADER_SIZE || memcmp(data, WAL_MAGIC, 8) != 0) {
		return false;
	}
	if (load_u32le(data + 8) != WAL_VERSION || load_u32le(data + 12) != WAL_HEADER_SIZE) {
		return false;
	}
	return load_u64le(data + 16) == base;
}

/* Checks the record at pos; on success stores its total size in *record_size. */
static bool record_valid_at(const uint8_t *data, size_t size, size_t pos, size_t *record_size)
{
	const uint8_t *rec = data + pos;
	uint32_t length;

	if (size - pos < WAL_RECORD_HEADER_SIZE) {
		return false;
	}
	length = load_u32le(rec);
	if (length > WAL_PAYLOAD_MAX || size - pos - WAL_RECORD_HEADER_SIZE < length) {
		return false;
	}
	if (rec[8] == 0 || rec[9] != 0 || rec[10] != 0 || rec[11] != 0) {
		return false;
	}
	if (crc32c(0, rec + 8, 4 + (size_t)length) != load_u32le(rec + 4)) {
		return false;
	}
	*record_size = WAL_RECORD_HEADER_SIZE + (size_t)length;
	return true;
}

/* Walks the records from the header on. Returns the file position of the first invalid
 * record, or size when every record is valid; *last_pos gets the position of the last
 * valid record (0 when none). */
static size_t scan_records(const uint8_t *data, size_t size, size_t *last_pos)
{
	size_t pos = WAL_HEADER_SIZE;
	size_t record_size;

	*last_pos = 0;
	while (pos < size && record_valid_at(data, size, pos, &record_size)) {
		*last_pos = pos;
		pos += record_size;
	}
	return pos;
}

/* True when a valid record starts anywhere after bad_pos. A damaged length field can
 * hide the records behind it, so every byte position is tried. The padding and type
 * checks reject almost all positions before a checksum is computed.
 * NOTE: the worst case is quadratic in the tail length, which only a damaged last
 * segment can cost. */
static bool valid_record_follows(const uint8_t *data, size_t size, size_t bad_pos)
{
	size_t record_size;

	for (size_t pos = bad_pos + 1; pos + WAL_RECORD_HEADER_SIZE <= size; pos++) {
		if (record_valid_at(data, size, pos, &record_size)) {
			return true;
		}
	}
	return false;
}

/* ---- writing segments ---- */

static int write_all(int fd, const void *data, size_t len, off_t offset)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, offset);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return -1;
		}
		p += n;
		len -= (size_t)n;
		offset += n;
	}
	return 0;
}

static void encode_header(uint8_t header[WAL_HEADER_SIZE], uint64_t base)
{
	memcpy(header, WAL_MAGIC, 8);
	store_u32le(header + 8, WAL_VERSION);
	store_u32le(header + 12, WAL_HEADER_SIZE);
	store_u64le(header + 16, base);
	store_u64le(header + 24, now_unix_ns());
}

/* Writes a fresh header into fd (truncating the file) and syncs it. */
static enum wal_result write_segment_header(int fd, const char *path, uint64_t base)
{
	uint8_t header[WAL_HEADER_SIZE];

	encode_header(header, base);
	if (ftruncate(fd, 0) != 0) {
		log_error("ftruncate() of WAL segment %s to 0 failed: %s", path, strerror(errno));
		return WAL_IO_ERROR;
	}
	if (write_all(fd, header, sizeof(header), 0) != 0) {
		log_error("write() of the header of WAL segment %s failed: %s", path,
		          strerror(errno));
		return WAL_IO_ERROR;
	}
	if (fdatasync(fd) != 0) {
		log_error("fdatasync() of WAL segment %s failed: %s", path, strerror(errno));
		return WAL_IO_ERROR;
	}
	return WAL_OK;
}

/* Creates the segment with this base offset and makes it the active one. The header
 * is written under a temporary name and the file renamed into place, so that a reader
 * listing the directory (stemedb-walarchiver, stemedb-ctl) never sees a segment
 * without its header. */
static enum wal_result create_segment(struct wal *w, uint64_t base)
{
	char path[PATH_MAX];
	char tmp_path[PATH_MAX + 8];
	int fd;
	enum wal_result rc;

	segment_path(w, base, path, sizeof(path));
	snprintf(tmp_path, sizeof(tmp_path), "%s%s", path, WAL_TMP_SUFFIX);
	(void)unlink(tmp_path);
	fd = open(tmp_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0) {
		log_error("open() to create WAL segment %s failed: %s", tmp_path, strerror(errno));
		w->failed = true;
		return WAL_IO_ERROR;
	}

	rc = write_segment_header(fd, tmp_path, base);
	if (rc == WAL_OK && link(tmp_path, path) != 0) {
		/* link() rather than rename(), because it fails instead of replacing an
		 * existing segment of the same name. */
		log_error("link() of WAL segment %s to %s failed: %s", tmp_path, path,
		          strerror(errno));
		rc = WAL_IO_ERROR;
	}
	(void)unlink(tmp_path);
	if (rc != WAL_OK) {
		close(fd);
		w->failed = true;
		return rc;
	}

	if (w->fd >= 0) {
		close(w->fd);
	}
	w->fd = fd;
	w->file_size = WAL_HEADER_SIZE;
	push_segment(w, base, base);
	w->stats.segments = w->segment_count;
	return sync_dir(w);
}

/* ---- recovery ---- */

static enum wal_result report_corrupt(char *err, size_t err_size, const char *path,
                                      uint64_t position, const char *what)
{
	set_err(err, err_size,
	        "WAL segment %s is corrupt at byte offset %" PRIu64 " (%s); the log cannot be "
	        "repaired automatically, so %s",
	        path, position, what, WAL_RESTORE_HINT);
	return WAL_CORRUPT;
}

/* Rewrites the header of a last segment whose creation was cut short. */
static enum wal_result repair_torn_creation(struct wal *w, const char *path, uint64_t base,
                                            size_t old_size)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	enum wal_result rc;

	if (fd < 0) {
		log_error("open() of WAL segment %s failed: %s", path, strerror(errno));
		return WAL_IO_ERROR;
	}
	rc = write_segment_header(fd, path, base);
	close(fd);
	if (rc != WAL_OK) {
		return rc;
	}

	log_warn("WAL segment %s had an incomplete header (%zu bytes) from an interrupted "
	         "creation; rewrote the header",
	         path, old_size);
	return sync_dir(w);
}

static enum wal_result truncate_tail(struct wal *w, const char *path, size_t keep, size_t size)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	enum wal_result rc = WAL_IO_ERROR;

	if (fd < 0) {
		log_error("open() of WAL segment %s failed: %s", path, strerror(errno));
		return WAL_IO_ERROR;
	}
	if (ftruncate(fd, (off_t)keep) != 0) {
		log_error("ftruncate() of WAL segment %s to %zu bytes failed: %s", path, keep,
		          strerror(errno));
		goto done;
	}
	if (fsync(fd) != 0) {
		log_error("fsync() of WAL segment %s failed: %s", path, strerror(errno));
		goto done;
	}

	w->stats.tail_bytes_dropped = size - keep;
	log_warn("WAL segment %s ended in a torn write: truncated at byte offset %zu, dropping "
	         "%zu bytes",
	         path, keep, size - keep);
	rc = WAL_OK;

done:
	close(fd);
	return rc;
}

/* Checks one segment and appends it to w->segments. Only the last segment may be
 * repaired. */
static enum wal_result recover_segment(struct wal *w, uint64_t base, bool last, char *err,
                                       size_t err_size)
{
	char path[PATH_MAX];
	struct segment_map map;
	size_t bad_pos;
	size_t last_pos;
	enum wal_result rc = WAL_OK;

	segment_path(w, base, path, sizeof(path));
	if (map_segment(path, &map) != 0) {
		set_err(err, err_size, "cannot read WAL segment %s: %s", path, strerror(errno));
		return WAL_IO_ERROR;
	}

	if (!header_valid(map.data, map.size, base)) {
		bool torn = map.size < WAL_HEADER_SIZE;

		if (!last || !(torn || map.size == WAL_HEADER_SIZE)) {
			rc = report_corrupt(err, err_size, path, 0, "invalid segment header");
			goto done;
		}
		rc = repair_torn_creation(w, path, base, map.size);
		if (rc == WAL_OK) {
			push_segment(w, base, base);
		}
		goto done;
	}

	bad_pos = scan_records(map.data, map.size, &last_pos);
	if (last_pos != 0) {
		w->stats.last_record_offset = base + last_pos - WAL_HEADER_SIZE;
	}
	if (bad_pos < map.size) {
		if (!last) {
			rc = report_corrupt(err, err_size, path, bad_pos,
			                    "invalid record in a sealed segment");
			goto done;
		}
		if (valid_record_follows(map.data, map.size, bad_pos)) {
			rc = report_corrupt(err, err_size, path, bad_pos,
			                    "invalid record followed by valid records");
			goto done;
		}
		rc = truncate_tail(w, path, bad_pos, map.size);
		if (rc != WAL_OK) {
			set_err(err, err_size, "cannot truncate the torn tail of WAL segment %s",
			        path);
			goto done;
		}
	}
	push_segment(w, base, base + bad_pos - WAL_HEADER_SIZE);

done:
	unmap_segment(&map);
	return rc;
}

/* Checks that segment i starts where segment i - 1 ends. */
static enum wal_result check_contiguous(struct wal *w, uint64_t base, char *err, size_t err_size)
{
	uint64_t expected;
	char path[PATH_MAX];

	if (w->segment_count == 0) {
		return WAL_OK;
	}
	expected = w->segments[w->segment_count - 1].end;
	if (base == expected) {
		return WAL_OK;
	}

	segment_path(w, expected, path, sizeof(path));
	set_err(err, err_size,
	        "WAL segment %s is missing: the previous segment ends at offset %" PRIu64
	        " but the next one starts at %" PRIu64 ", so %s",
	        path, expected, base, WAL_RESTORE_HINT);
	return WAL_CORRUPT;
}

static enum wal_result recover_all(struct wal *w, char *err, size_t err_size)
{
	uint64_t *bases = NULL;
	size_t count = 0;
	enum wal_result rc;

	rc = list_segments(w->dir, &bases, &count, err, err_size);
	if (rc != WAL_OK) {
		return rc;
	}

	for (size_t i = 0; i < count; i++) {
		rc = check_contiguous(w, bases[i], err, err_size);
		if (rc != WAL_OK) {
			break;
		}
		rc = recover_segment(w, bases[i], i + 1 == count, err, err_size);
		if (rc != WAL_OK) {
			break;
		}
	}

	free(bases);
	return rc;
}

/* Opens the last segment for appending, or creates the first one. */
static enum wal_result open_active(struct wal *w, uint64_t initial_offset, char *err,
                                   size_t err_size)
{
	char path[PATH_MAX];
	struct wal_segment *last;

	if (w->segment_count == 0) {
		if (create_segment(w, initial_offset) != WAL_OK) {
			set_err(err, err_size, "cannot create the first WAL segment in %s", w->dir);
			return WAL_IO_ERROR;
		}
		return WAL_OK;
	}

	last = &w->segments[w->segment_count - 1];
	segment_path(w, last->base, path, sizeof(path));
	w->fd = open(path, O_RDWR | O_CLOEXEC);
	if (w->fd < 0) {
		set_err(err, err_size, "open() of WAL segment %s failed: %s", path,
		        strerror(errno));
		return WAL_IO_ERROR;
	}
	w->file_size = WAL_HEADER_SIZE + (last->end - last->base);
	return WAL_OK;
}

static void refresh_offsets(struct wal *w)
{
	w->stats.segments = w->segment_count;
	w->stats.first_offset = w->segments[0].base;
	w->stats.end_offset = w->segments[w->segment_count - 1].end;
}

enum wal_result wal_open(const struct wal_options *options, struct wal **out, char *err,
                         size_t err_size)
{
	struct wal *w = calloc(1, sizeof(*w));
	enum wal_result rc = WAL_IO_ERROR;

	if (w == NULL) {
		abort();
	}
	w->fd = -1;
	w->dir_fd = -1;
	w->dir = strdup(options->dir);
	w->segment_bytes =
	        options->segment_bytes ? options->segment_bytes : WAL_SEGMENT_BYTES_DEFAULT;
	w->stats.last_record_offset = UINT64_MAX;

	if (mkdir_parents(w->dir) != 0) {
		set_err(err, err_size, "mkdir() of WAL directory %s failed: %s", w->dir,
		        strerror(errno));
		goto done;
	}
	w->dir_fd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dir_fd < 0) {
		set_err(err, err_size, "open() of WAL directory %s failed: %s", w->dir,
		        strerror(errno));
		goto done;
	}

	rc = recover_all(w, err, err_size);
	if (rc != WAL_OK) {
		goto done;
	}
	rc = open_active(w, options->initial_offset, err, err_size);
	if (rc != WAL_OK) {
		goto done;
	}

	refresh_offsets(w);
	if (w->stats.last_record_offset == UINT64_MAX) {
		w->stats.last_record_offset = w->stats.end_offset;
	}
	w->stats.rotations = 0;

done:
	if (rc != WAL_OK) {
		wal_close(w);
		w = NULL;
	}
	*out = w;
	return rc;
}

void wal_close(struct wal *w)
{
	if (w == NULL) {
		return;
	}
	if (w->fd >= 0) {
		close(w->fd);
	}
	if (w->dir_fd >= 0) {
		close(w->dir_fd);
	}
	free(w->iov);
	free(w->record_headers);
	free(w->segments);
	free(w->dir);
	free(w);
}

/* ---- appending ---- */

static void reserve_iov(struct wal *w, size_t records)
{
	size_t needed = records * 2;

	if (needed <= w->iov_cap) {
		return;
	}
	free(w->iov);
	free(w->record_headers);
	w->iov = malloc(needed * sizeof(*w->iov));
	w->record_headers = malloc(records * sizeof(*w->record_headers));
	if (w->iov == NULL || w->record_headers == NULL) {
		abort();
	}
	w->iov_cap = needed;
}

static size_t record_size(const struct wal_record *r)
{
	return WAL_RECORD_HEADER_SIZE + r->payload_len;
}

static void encode_record_header(uint8_t header[WAL_RECORD_HEADER_SIZE], const struct wal_record *r)
{
	uint32_t crc;

	store_u32le(header, (uint32_t)r->payload_len);
	header[8] = r->type;
	header[9] = 0;
	header[10] = 0;
	header[11] = 0;
	crc = crc32c(0, header + 8, 4);
	crc = crc32c(crc, r->payload, r->payload_len);
	store_u32le(header + 4, crc);
}

/* Writes iov (advancing it past short writes) at the end of the active segment. A
 * batch of more than IOV_MAX / 2 records takes several pwritev calls because the kernel
 * rejects longer vectors. */
static int writev_all(struct wal *w, struct iovec *iov, int iov_count, size_t total)
{
	off_t offset = (off_t)w->file_size;

	while (total > 0) {
		int chunk = iov_count < IOV_MAX ? iov_count : IOV_MAX;
		ssize_t n = pwritev(w->fd, iov, chunk, offset);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return -1;
		}
		total -= (size_t)n;
		offset += n;
		while (iov_count > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iov_count--;
		}
		if (iov_count > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* Writes count records to the active segment with one writev (see writev_all). */
static enum wal_result write_run(struct wal *w, const struct wal_record *records, size_t count)
{
	size_t total = 0;
	int iov_count = 0;
	struct wal_segment *active = &w->segments[w->segment_count - 1];

	for (size_t i = 0; i < count; i++) {
		encode_record_header(w->record_headers[i], &records[i]);
		w->iov[iov_count].iov_base = w->record_headers[i];
		w->iov[iov_count++].iov_len = WAL_RECORD_HEADER_SIZE;
		if (records[i].payload_len > 0) {
			w->iov[iov_count].iov_base = (void *)records[i].payload;
			w->iov[iov_count++].iov_len = records[i].payload_len;
		}
		total += record_size(&records[i]);
	}

	if (writev_all(w, w->iov, iov_count, total) != 0) {
		log_error("writev() of %zu WAL records (%zu bytes) at offset %" PRIu64
		          " failed: %s",
		          count, total, w->file_size, strerror(errno));
		w->failed = true;
		return WAL_IO_ERROR;
	}

	w->file_size += total;
	active->end += total;
	w->stats.end_offset = active->end;
	w->stats.last_record_offset = active->end - record_size(&records[count - 1]);
	w->stats.bytes_written += total;
	w->stats.records_written += count;
	return WAL_OK;
}

/* Seals the active segment (syncing it) and creates the next one. */
static enum wal_result rotate(struct wal *w)
{
	uint64_t base = w->segments[w->segment_count - 1].end;
	enum wal_result rc = wal_sync(w);

	if (rc != WAL_OK) {
		return rc;
	}
	rc = create_segment(w, base);
	if (rc != WAL_OK) {
		return rc;
	}

	w->stats.rotations++;
	log_info("WAL rotated to segment %016" PRIx64 ".wal in %s", base, w->dir);
	return WAL_OK;
}

/* Counts how many records from records[0] fit into the active segment, at least one
 * when the segment contains no record yet. */
static size_t records_that_fit(const struct wal *w, const struct wal_record *records, size_t count)
{
	uint64_t size = w->file_size;
	size_t n = 0;

	while (n < count) {
		uint64_t next = size + record_size(&records[n]);

		if (next > w->segment_bytes && size > WAL_HEADER_SIZE) {
			break;
		}
		size = next;
		n++;
	}
	return n;
}

enum wal_result wal_append(struct wal *w, const struct wal_record *records, size_t count,
                           uint64_t *end_offset)
{
	size_t done = 0;

	if (w->failed) {
		return WAL_FAILED;
	}
	for (size_t i = 0; i < count; i++) {
		if (records[i].payload_len > WAL_PAYLOAD_MAX || records[i].type == 0) {
			return WAL_INVALID;
		}
	}
	reserve_iov(w, count);

	while (done < count) {
		size_t n = records_that_fit(w, records + done, count - done);
		enum wal_result rc;

		if (n == 0) {
			rc = rotate(w);
			if (rc != WAL_OK) {
				return rc;
			}
			continue;
		}
		rc = write_run(w, records + done, n);
		if (rc != WAL_OK) {
			return rc;
		}
		done += n;
	}

	if (end_offset != NULL) {
		*end_offset = w->stats.end_offset;
	}
	return WAL_OK;
}

enum wal_result wal_sync(struct wal *w)
{
	if (w->failed) {
		return WAL_FAILED;
	}
	if (fdatasync(w->fd) != 0) {
		log_error("fdatasync() of WAL segment %016" PRIx64 ".wal in %s failed: %s; the "
		          "writer stops for good because the page cache state is unknown",
		          w->segments[w->segment_count - 1].base, w->dir, strerror(errno));
		w->failed = true;
		return WAL_IO_ERROR;
	}
	w->stats.syncs++;
	return WAL_OK;
}

bool wal_failed(const struct wal *w)
{
	return w->failed;
}

void wal_get_stats(const struct wal *w, struct wal_stats *out)
{
	*out = w->stats;
}

/* ---- replay ---- */

static size_t find_segment(const struct wal *w, uint64_t offset)
{
	for (size_t i = 0; i < w->segment_count; i++) {
		if (offset >= w->segments[i].base && offset < w->segments[i].end) {
			return i;
		}
	}
	return w->segment_count;
}

/* Calls fn for the records of segment i at or after from. Returns WAL_OK, or
 * WAL_INVALID when from is not a record boundary; *stop is set when fn stopped. */
static enum wal_result replay_segment(struct wal *w, size_t i, uint64_t from, wal_replay_fn fn,
                                      void *ctx, bool *stop, char *err, size_t err_size)
{
	char path[PATH_MAX];
	struct segment_map map;
	const struct wal_segment *seg = &w->segments[i];
	size_t limit = WAL_HEADER_SIZE + (size_t)(seg->end - seg->base);
	size_t pos = WAL_HEADER_SIZE;
	enum wal_result rc = WAL_OK;

	segment_path(w, seg->base, path, sizeof(path));
	if (map_segment(path, &map) != 0 || map.size < limit) {
		set_err(err, err_size, "cannot read %zu bytes of WAL segment %s", limit, path);
		unmap_segment(&map);
		return WAL_IO_ERROR;
	}

	while (pos < limit && !*stop) {
		uint64_t offset = seg->base + pos - WAL_HEADER_SIZE;
		size_t size;

		if (!record_valid_at(map.data, limit, pos, &size)) {
			rc = report_corrupt(err, err_size, path, pos, "record changed after open");
			break;
		}
		if (offset >= from) {
			const uint8_t *rec = map.data + pos;

			*stop = !fn(ctx, offset, offset + size, rec[8],
			            rec + WAL_RECORD_HEADER_SIZE, size - WAL_RECORD_HEADER_SIZE);
		} else if (offset + size > from) {
			set_err(err, err_size,
			        "replay offset %" PRIu64 " falls inside the record at %" PRIu64
			        " in WAL segment %s",
			        from, offset, path);
			rc = WAL_INVALID;
			break;
		}
		pos += size;
	}

	unmap_segment(&map);
	return rc;
}

enum wal_result wal_replay(struct wal *w, uint64_t from, wal_replay_fn fn, void *ctx, char *err,
                           size_t err_size)
{
	bool stop = false;
	size_t first;

	if (from == w->stats.end_offset) {
		return WAL_OK;
	}
	first = find_segment(w, from);
	if (first == w->segment_count) {
		set_err(err, err_size,
		        "replay offset %" PRIu64
		        " is outside the WAL in %s, which holds offsets %" PRIu64 " to %" PRIu64,
		        from, w->dir, w->stats.first_offset, w->stats.end_offset);
		return WAL_INVALID;
	}

	for (size_t i = first; i < w->segment_count && !stop; i++) {
		enum wal_result rc = replay_segment(w, i, from, fn, ctx, &stop, err, err_size);

		if (rc != WAL_OK) {
			return rc;
		}
	}
	return WAL_OK;
}

/* ---- deletion ---- */

void wal_set_retention(struct wal *w, wal_retention_fn fn, void *ctx)
{
	w->retention = fn;
	w->retention_ctx = ctx;
}

enum wal_result wal_delete_applied(struct wal *w, uint64_t applied_offset, size_t *removed)
{
	size_t n = 0;
	enum wal_result rc = WAL_OK;

	/* The last segment is the active one and always stays. */
	while (n + 1 < w->segment_count && w->segments[n].end <= applied_offset) {
		char path[PATH_MAX];
		const struct wal_segment *seg = &w->segments[n];

		segment_path(w, seg->base, path, sizeof(path));
		if (w->retention != NULL &&
		    !w->retention(w->retention_ctx, path, seg->base, seg->end)) {
			break;
		}
		if (unlink(path) != 0) {
			log_error("unlink() of applied WAL segment %s failed: %s", path,
			          strerror(errno));
			rc = WAL_IO_ERROR;
			break;
		}
		log_info("removed applied WAL segment %s (offsets %" PRIu64 " to %" PRIu64 ")",
		         path, seg->base, seg->end);
		n++;
	}

	if (n > 0) {
		memmove(w->segments, w->segments + n,
		        (w->segment_count - n) * sizeof(*w->segments));
		w->segment_count -= n;
		refresh_offsets(w);
		if (sync_dir(w) != WAL_OK) {
			rc = WAL_IO_ERROR;
		}
	}
	if (removed != NULL) {
		*removed = n;
	}
	return rc;
}

enum wal_result wal_restart_at(struct wal *w, uint64_t base_offset)
{
	if (w->failed) {
		return WAL_FAILED;
	}
	if (base_offset < w->stats.end_offset) {
		return WAL_INVALID;
	}

	/* NOTE: the retention hook is not asked here, so an archiver loses these segments;
	 * their records are all in the store already. */
	for (size_t i = 0; i < w->segment_count; i++) {
		char path[PATH_MAX];

		segment_path(w, w->segments[i].base, path, sizeof(path));
		if (unlink(path) != 0) {
			log_error("unlink() of WAL segment %s failed: %s", path, strerror(errno));
			w->failed = true;
			return WAL_IO_ERROR;
		}
		log_warn("removed WAL segment %s because the store has applied every record in it",
		         path);
	}
	w->segment_count = 0;

	if (create_segment(w, base_offset) != WAL_OK) {
		return WAL_IO_ERROR;
	}
	refresh_offsets(w);
	w->stats.last_record_offset = base_offset;
	return WAL_OK;
}
