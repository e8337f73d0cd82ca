/* Read-only WAL segment scanning, listing and durable copying for the processes that
 * do not own the WAL. The byte format is the one api-server/src/wal.c writes. A
 * 32-byte header ("STMWAL01", version 1, header size 32, base offset, creation time)
 * comes first. Each record then has a u32 length, a u32 CRC-32C over type, padding and
 * payload, a u8 type, 3 zero bytes and the payload. */

#include "stemedb/wal_segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stemedb/buf.h"
#include "stemedb/crc32c.h"

#define WAL_SEGMENT_MAGIC   "STMWAL01"
#define WAL_SEGMENT_VERSION 1
#define COPY_CHUNK_BYTES    (1u << 20)

struct mapped_file {
	const uint8_t *data;
	size_t size;
	void *mapping;
};

static enum wal_segment_result fail(char *err, size_t err_size, enum wal_segment_result result,
                                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum wal_segment_result fail(char *err, size_t err_size, enum wal_segment_result result,
                                    const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && err_size > 0) {
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return result;
}

bool wal_segment_parse_name(const char *name, uint64_t *base)
{
	uint64_t value = 0;

	if (strlen(name) != WAL_SEGMENT_NAME_LEN || strcmp(name + 16, ".wal") != 0)
		return false;
	for (int i = 0; i < 16; i++) {
		char c = name[i];
		int digit;

		if (c >= '0' && c <= '9')
			digit = c - '0';
		else if (c >= 'a' && c <= 'f')
			digit = c - 'a' + 10;
		else
			return false;
		value = value << 4 | (uint64_t)digit;
	}
	*base = value;
	return true;
}

void wal_segment_format_name(uint64_t base, char out[WAL_SEGMENT_NAME_LEN + 1])
{
	snprintf(out, WAL_SEGMENT_NAME_LEN + 1, "%016" PRIx64 ".wal", base);
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash == NULL ? path : slash + 1;
}

static enum wal_segment_result map_file(const char *path, struct mapped_file *map, char *err,
                                        size_t err_size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	enum wal_segment_result result = WAL_SEGMENT_IO_ERROR;

	memset(map, 0, sizeof(*map));
	if (fd < 0)
		return fail(err, err_size, WAL_SEGMENT_IO_ERROR, "open() of %s failed: %s", path,
		            strerror(errno));
	if (fstat(fd, &st) != 0) {
		fail(err, err_size, result, "fstat() of %s failed: %s", path, strerror(errno));
		goto done;
	}

	map->size = (size_t)st.st_size;
	if (map->size > 0) {
		map->mapping = mmap(NULL, map->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map->mapping == MAP_FAILED) {
			map->mapping = NULL;
			fail(err, err_size, result, "mmap() of %s (%zu bytes) failed: %s", path,
			     map->size, strerror(errno));
			goto done;
		}
		map->data = map->mapping;
	}
	result = WAL_SEGMENT_OK;

done:
	close(fd);
	return result;
}

static void unmap_file(struct mapped_file *map)
{
	if (map->mapping != NULL)
		munmap(map->mapping, map->size);
	memset(map, 0, sizeof(*map));
}

/* Returns the total size of the valid record at pos, or 0 when it is invalid. */
static size_t record_size_at(const uint8_t *data, size_t size, size_t pos)
{
	const uint8_t *rec = data + pos;
	uint32_t length;

	if (size - pos < WAL_SEGMENT_RECORD_HEADER_SIZE)
		return 0;
	length = load_u32le(rec);
	if (length > WAL_SEGMENT_PAYLOAD_MAX ||
	    size - pos - WAL_SEGMENT_RECORD_HEADER_SIZE < length)
		return 0;
	if (rec[8] == 0 || rec[9] != 0 || rec[10] != 0 || rec[11] != 0)
		return 0;
	if (crc32c(0, rec + 8, 4 + (size_t)length) != load_u32le(rec + 4))
		return 0;
	return WAL_SEGMENT_RECORD_HEADER_SIZE + (size_t)length;
}

static enum wal_segment_result check_header(const char *path, const struct mapped_file *map,
                                            uint64_t base, struct wal_segment_info *info, char *err,
                                            size_t err_size)
{
	const uint8_t *h = map->data;

	if (map->size < WAL_SEGMENT_HEADER_SIZE)
		return fail(err, err_size, WAL_SEGMENT_CORRUPT,
		            "WAL segment %s is %zu bytes, shorter than its 32-byte header", path,
		            map->size);
	if (memcmp(h, WAL_SEGMENT_MAGIC, 8) != 0 || load_u32le(h + 8) != WAL_SEGMENT_VERSION ||
	    load_u32le(h + 12) != WAL_SEGMENT_HEADER_SIZE)
		return fail(err, err_size, WAL_SEGMENT_CORRUPT,
		            "WAL segment %s has an invalid header (magic, version or header size)",
		            path);
	if (load_u64le(h + 16) != base)
		return fail(err, err_size, WAL_SEGMENT_CORRUPT,
		            "WAL segment %s has base offset %" PRIu64
		            " in its header, but its name says %" PRIu64,
		            path, load_u64le(h + 16), base);
	info->created_ns = load_u64le(h + 24);
	return WAL_SEGMENT_OK;
}

/* Looks for a valid record at any byte position after pos, as the WAL's own recovery
 * does, so that a damaged length field cannot hide later records and make damage look
 * like a half-written tail. */
static bool valid_record_after(const struct mapped_file *map, size_t pos, size_t *found)
{
	for (size_t p = pos + 1; p + WAL_SEGMENT_RECORD_HEADER_SIZE <= map->size; p++) {
		if (record_size_at(map->data, map->size, p) > 0) {
			*found = p;
			return true;
		}
	}
	return false;
}

static enum wal_segment_result scan_records(const char *path, const struct mapped_file *map,
                                            bool allow_tail, wal_segment_record_fn fn, void *ctx,
                                            struct wal_segment_info *info, char *err,
                                            size_t err_size)
{
	size_t pos = WAL_SEGMENT_HEADER_SIZE, later = 0;

	while (pos < map->size) {
		size_t size = record_size_at(map->data, map->size, pos);
		uint64_t offset = info->base + pos - WAL_SEGMENT_HEADER_SIZE;

		if (size == 0 && allow_tail && !valid_record_after(map, pos, &later))
			break;
		if (size == 0 && allow_tail)
			return fail(err, err_size, WAL_SEGMENT_CORRUPT,
			            "WAL segment %s: invalid record at byte %zu (global offset "
			            "%" PRIu64
			            ") is followed by a valid record at byte %zu, so it is "
			            "damage, not a half-written tail",
			            path, pos, offset, later);
		if (size == 0)
			return fail(err, err_size, WAL_SEGMENT_CORRUPT,
			            "WAL segment %s: invalid record at byte %zu (global offset "
			            "%" PRIu64 "): bad length, type, padding or CRC-32C",
			            path, pos, offset);

		info->records++;
		if (fn != NULL && !fn(ctx, offset, offset + size, map->data[pos + 8],
		                      map->data + pos + WAL_SEGMENT_RECORD_HEADER_SIZE,
		                      size - WAL_SEGMENT_RECORD_HEADER_SIZE))
			return WAL_SEGMENT_STOPPED;
		pos += size;
	}

	info->valid_size = pos;
	info->end = info->base + pos - WAL_SEGMENT_HEADER_SIZE;
	info->data_crc = crc32c(0, map->data, pos);
	return WAL_SEGMENT_OK;
}

enum wal_segment_result wal_segment_scan(const char *path, bool allow_tail,
                                         wal_segment_record_fn fn, void *ctx,
                                         struct wal_segment_info *info, char *err, size_t err_size)
{
	struct mapped_file map;
	enum wal_segment_result result;

	memset(info, 0, sizeof(*info));
	if (!wal_segment_parse_name(base_name(path), &info->base))
		return fail(err, err_size, WAL_SEGMENT_CORRUPT,
		            "%s is not named like a WAL segment (16 lowercase hex digits and .wal)",
		            path);

	result = map_file(path, &map, err, err_size);
	if (result != WAL_SEGMENT_OK)
		return result;
	info->file_size = map.size;

	result = check_header(path, &map, info->base, info, err, err_size);
	if (result == WAL_SEGMENT_OK)
		result = scan_records(path, &map, allow_tail, fn, ctx, info, err, err_size);
	unmap_file(&map);
	return result;
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a;
	uint64_t y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static void list_push(struct wal_segment_list *list, size_t *cap, uint64_t base)
{
	if (list->count == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		list->bases = realloc(list->bases, *cap * sizeof(*list->bases));
		if (list->bases == NULL)
			abort();
	}
	list->bases[list->count++] = base;
}

enum wal_segment_result wal_segment_list_dir(const char *dir, struct wal_segment_list *out,
                                             char *err, size_t err_size)
{
	DIR *d = opendir(dir);
	struct dirent *entry;
	size_t cap = 0;

	memset(out, 0, sizeof(*out));
	if (d == NULL)
		return fail(err, err_size, WAL_SEGMENT_IO_ERROR, "opendir() of %s failed: %s", dir,
		            strerror(errno));

	while ((entry = readdir(d)) != NULL) {
		uint64_t base;

		if (entry->d_type == DT_DIR || !wal_segment_parse_name(entry->d_name, &base))
			continue;
		list_push(out, &cap, base);
	}
	closedir(d);

	if (out->count > 1)
		qsort(out->bases, out->count, sizeof(*out->bases), compare_u64);
	return WAL_SEGMENT_OK;
}

void wal_segment_list_free(struct wal_segment_list *list)
{
	free(list->bases);
	memset(list, 0, sizeof(*list));
}

enum wal_segment_result wal_segment_sync_dir(const char *dir, char *err, size_t err_size)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return fail(err, err_size, WAL_SEGMENT_IO_ERROR,
		            "open() of directory %s failed: %s", dir, strerror(errno));
	rc = fsync(fd);
	if (rc != 0)
		fail(err, err_size, WAL_SEGMENT_IO_ERROR, "fsync() of directory %s failed: %s", dir,
		     strerror(errno));
	close(fd);
	return rc == 0 ? WAL_SEGMENT_OK : WAL_SEGMENT_IO_ERROR;
}

/* Copies length bytes from in to out, failing on a short source. */
static enum wal_segment_result copy_bytes(int in, int out, uint64_t length, const char *src,
                                          const char *dst, char *err, size_t err_size)
{
	uint8_t *chunk = malloc(COPY_CHUNK_BYTES);
	enum wal_segment_result result = WAL_SEGMENT_IO_ERROR;
	uint64_t done = 0;

	if (chunk == NULL)
		abort();
	while (done < length) {
		size_t want = length - done < COPY_CHUNK_BYTES ? (size_t)(length - done)
		                                               : COPY_CHUNK_BYTES;
		ssize_t n = pread(in, chunk, want, (off_t)done);

		if (n <= 0) {
			fail(err, err_size, result, "read() of %s at byte %" PRIu64 " failed: %s",
			     src, done,
			     n == 0 ? "the file is shorter than expected" : strerror(errno));
			goto done;
		}
		if (write(out, chunk, (size_t)n) != n) {
			fail(err, err_size, result, "write() to %s failed: %s", dst,
			     strerror(errno));
			goto done;
		}
		done += (uint64_t)n;
	}
	result = WAL_SEGMENT_OK;

done:
	free(chunk);
	return result;
}

enum wal_segment_result wal_segment_copy(const char *src_path, uint64_t length, const char *dir,
                                         const char *name, char *err, size_t err_size)
{
	char tmp[4096], dst[4096];
	enum wal_segment_result result = WAL_SEGMENT_IO_ERROR;
	int in = -1, out = -1;

	snprintf(dst, sizeof(dst), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	in = open(src_path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return fail(err, err_size, result, "open() of %s failed: %s", src_path,
		            strerror(errno));
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (out < 0) {
		fail(err, err_size, result, "open() of %s failed: %s", tmp, strerror(errno));
		goto done;
	}

	result = copy_bytes(in, out, length, src_path, tmp, err, err_size);
	if (result != WAL_SEGMENT_OK)
		goto done;
	result = WAL_SEGMENT_IO_ERROR;
	if (fsync(out) != 0) {
		fail(err, err_size, result, "fsync() of %s failed: %s", tmp, strerror(errno));
		goto done;
	}
	if (rename(tmp, dst) != 0) {
		fail(err, err_size, result, "rename() of %s to %s failed: %s", tmp, dst,
		     strerror(errno));
		goto done;
	}
	result = wal_segment_sync_dir(dir, err, err_size);

done:
	if (out >= 0)
		close(out);
	if (result != WAL_SEGMENT_OK)
		unlink(tmp);
	close(in);
	return result;
}
