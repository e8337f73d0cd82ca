/* The backup manifest (MANIFEST.json) and the file checks against it. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "ctl_backup.h"
#include "stemedb/hex.h"

#define HASH_CHUNK_BYTES (1u << 20)

void ctl_problem(struct ctl_problems *p, const char *fmt, ...)
{
	va_list ap;

	p->count++;
	if (p->quiet || p->count > CTL_PROBLEMS_SHOWN)
		return;
	fputs("problem: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	if (p->count == CTL_PROBLEMS_SHOWN)
		printf("(further problems are counted, not shown)\n");
}

void ctl_format_time_ms(uint64_t unix_ms, char *out, size_t out_size)
{
	time_t seconds = (time_t)(unix_ms / 1000);
	struct tm tm;

	gmtime_r(&seconds, &tm);
	snprintf(out, out_size, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         (unsigned)(unix_ms % 1000));
}

/* BLAKE2b-256 of a file, optionally after an fsync of it. */
static bool hash_file(const char *path, bool sync, uint64_t *size, char hex[65])
{
	crypto_generichash_state state;
	uint8_t digest[32];
	uint8_t *chunk = malloc(HASH_CHUNK_BYTES);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool ok = false;
	ssize_t n;

	if (chunk == NULL)
		abort();
	if (fd < 0) {
		ctl_error("open() of %s failed: %s", path, strerror(errno));
		goto done;
	}
	if (sync && fsync(fd) != 0) {
		ctl_error("fsync() of %s failed: %s", path, strerror(errno));
		goto done;
	}

	*size = 0;
	crypto_generichash_init(&state, NULL, 0, sizeof(digest));
	while ((n = read(fd, chunk, HASH_CHUNK_BYTES)) > 0) {
		crypto_generichash_update(&state, chunk, (size_t)n);
		*size += (uint64_t)n;
	}
	if (n < 0) {
		ctl_error("read() of %s failed: %s", path, strerror(errno));
		goto done;
	}
	crypto_generichash_final(&state, digest, sizeof(digest));
	hex_encode(digest, sizeof(digest), hex);
	ok = true;

done:
	if (fd >= 0)
		close(fd);
	free(chunk);
	return ok;
}

bool ctl_manifest_add_file(struct ctl_manifest *m, const char *root, const char *relative)
{
	char path[4096], hex[65];
	uint64_t size;

	snprintf(path, sizeof(path), "%s/%s", root, relative);
	if (!hash_file(path, true, &size, hex))
		return false;
	json_array_append_new(m->files, json_pack("{s:s, s:I, s:s}", "path", relative, "size",
	                                          (json_int_t)size, "blake2b", hex));
	return true;
}

static json_t *manifest_to_json(const struct ctl_manifest *m)
{
	return json_pack("{s:s, s:i, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:O}", "format",
	                 CTL_MANIFEST_FORMAT, "format_version", CTL_MANIFEST_VERSION, "node_id",
	                 m->node_id, "created_at", m->created_at, "created_unix_ms",
	                 (json_int_t)m->created_unix_ms, "wal_cursor", (json_int_t)m->wal_cursor,
	                 "wal_end", (json_int_t)m->wal_end, "assertion_count",
	                 (json_int_t)m->assertion_count, "wal_records", (json_int_t)m->wal_records,
	                 "max_hlc_wall_ms", (json_int_t)m->max_hlc_wall_ms, "files", m->files);
}

static bool sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	bool ok = fd >= 0 && fsync(fd) == 0;

	if (!ok)
		ctl_error("fsync() of directory %s failed: %s", dir, strerror(errno));
	if (fd >= 0)
		close(fd);
	return ok;
}

bool ctl_manifest_write(const struct ctl_manifest *m, const char *root)
{
	char path[4096], tmp[4096];
	json_t *json = manifest_to_json(m);
	int fd;
	bool ok;

	snprintf(path, sizeof(path), "%s/%s", root, CTL_MANIFEST_NAME);
	snprintf(tmp, sizeof(tmp), "%s/%s.tmp", root, CTL_MANIFEST_NAME);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	ok = fd >= 0 && json_dumpfd(json, fd, JSON_INDENT(2) | JSON_SORT_KEYS) == 0 &&
	     write(fd, "\n", 1) == 1 && fsync(fd) == 0;
	if (!ok)
		ctl_error("writing %s failed: %s", tmp, strerror(errno));
	if (fd >= 0)
		close(fd);
	json_decref(json);

	if (ok && rename(tmp, path) != 0) {
		ctl_error("rename() of %s to %s failed: %s", tmp, path, strerror(errno));
		ok = false;
	}
	return ok && sync_dir(root);
}

static bool read_u64(json_t *root, const char *key, uint64_t *out, const char *path)
{
	json_t *value = json_object_get(root, key);

	if (!json_is_integer(value) || json_integer_value(value) < 0) {
		ctl_error("%s: \"%s\" is missing or not a non-negative integer", path, key);
		return false;
	}
	*out = (uint64_t)json_integer_value(value);
	return true;
}

static bool read_string(json_t *root, const char *key, char *out, size_t out_size, const char *path)
{
	const char *text = json_string_value(json_object_get(root, key));

	if (text == NULL || strlen(text) >= out_size) {
		ctl_error("%s: \"%s\" is missing or not a string of at most %zu bytes", path, key,
		          out_size - 1);
		return false;
	}
	snprintf(out, out_size, "%s", text);
	return true;
}

static bool manifest_from_json(struct ctl_manifest *m, json_t *root, const char *path)
{
	const char *format = json_string_value(json_object_get(root, "format"));
	json_t *version = json_object_get(root, "format_version");

	if (format == NULL || strcmp(format, CTL_MANIFEST_FORMAT) != 0 ||
	    json_integer_value(version) != CTL_MANIFEST_VERSION) {
		ctl_error("%s is not a StemeDB backup manifest of format version %d", path,
		          CTL_MANIFEST_VERSION);
		return false;
	}
	if (!read_string(root, "node_id", m->node_id, sizeof(m->node_id), path) ||
	    !read_string(root, "created_at", m->created_at, sizeof(m->created_at), path) ||
	    !read_u64(root, "created_unix_ms", &m->created_unix_ms, path) ||
	    !read_u64(root, "wal_cursor", &m->wal_cursor, path) ||
	    !read_u64(root, "wal_end", &m->wal_end, path) ||
	    !read_u64(root, "assertion_count", &m->assertion_count, path) ||
	    !read_u64(root, "wal_records", &m->wal_records, path) ||
	    !read_u64(root, "max_hlc_wall_ms", &m->max_hlc_wall_ms, path))
		return false;

	m->files = json_incref(json_object_get(root, "files"));
	if (!json_is_array(m->files)) {
		ctl_error("%s: \"files\" is missing or not an array", path);
		return false;
	}
	return true;
}

bool ctl_manifest_read(struct ctl_manifest *m, const char *root)
{
	char path[4096];
	json_error_t error;
	json_t *json;
	bool ok;

	memset(m, 0, sizeof(*m));
	snprintf(path, sizeof(path), "%s/%s", root, CTL_MANIFEST_NAME);
	json = json_load_file(path, 0, &error);
	if (json == NULL) {
		if (access(path, F_OK) != 0)
			ctl_error("%s is missing, so %s is not a complete backup (the manifest is "
			          "written last); take a new backup",
			          path, root);
		else
			ctl_error("%s is not valid JSON (line %d: %s)", path, error.line,
			          error.text);
		return false;
	}
	ok = manifest_from_json(m, json, path);
	json_decref(json);
	return ok;
}

void ctl_manifest_free(struct ctl_manifest *m)
{
	json_decref(m->files);
	m->files = NULL;
}

static bool manifest_lists(const struct ctl_manifest *m, const char *relative)
{
	size_t i;
	json_t *entry;

	json_array_foreach(m->files, i, entry)
	{
		const char *path = json_string_value(json_object_get(entry, "path"));

		if (path != NULL && strcmp(path, relative) == 0)
			return true;
	}
	return false;
}

static void check_unlisted(const struct ctl_manifest *m, const char *root, const char *sub,
                           struct ctl_problems *problems)
{
	char dir[4096];
	DIR *d;
	struct dirent *entry;

	snprintf(dir, sizeof(dir), "%s/%s", root, sub);
	d = opendir(dir);
	if (d == NULL)
		return;
	while ((entry = readdir(d)) != NULL) {
		char relative[512];

		if (entry->d_name[0] == '.')
			continue;
		snprintf(relative, sizeof(relative), "%s/%s", sub, entry->d_name);
		if (!manifest_lists(m, relative))
			ctl_problem(problems, "%s/%s is not listed in the manifest", root,
			            relative);
	}
	closedir(d);
}

static void check_entry(json_t *entry, const char *root, struct ctl_problems *problems)
{
	const char *relative = json_string_value(json_object_get(entry, "path"));
	const char *expected = json_string_value(json_object_get(entry, "blake2b"));
	json_int_t expected_size = json_integer_value(json_object_get(entry, "size"));
	char path[4096], hex[65];
	uint64_t size = 0;

	if (relative == NULL || expected == NULL || strstr(relative, "..") != NULL ||
	    relative[0] == '/') {
		ctl_problem(problems, "the manifest has a malformed file entry");
		return;
	}
	snprintf(path, sizeof(path), "%s/%s", root, relative);
	if (access(path, F_OK) != 0) {
		ctl_problem(problems, "%s is listed in the manifest but missing", path);
		return;
	}
	if (!hash_file(path, false, &size, hex)) {
		ctl_problem(problems, "%s cannot be read", path);
		return;
	}
	if (size != (uint64_t)expected_size)
		ctl_problem(problems, "%s has %" PRIu64 " bytes, the manifest says %lld", path,
		            size, (long long)expected_size);
	else if (strcmp(hex, expected) != 0)
		ctl_problem(problems, "%s has BLAKE2b %s, the manifest says %s", path, hex,
		            expected);
}

void ctl_manifest_check_files(const struct ctl_manifest *m, const char *root,
                              struct ctl_problems *problems)
{
	size_t i;
	json_t *entry;

	json_array_foreach(m->files, i, entry)
	{
		check_entry(entry, root, problems);
	}
	check_unlisted(m, root, "db", problems);
	check_unlisted(m, root, "wal", problems);
}
