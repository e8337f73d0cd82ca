/* File helpers of backup and restore. */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"
#include "ctl_backup.h"
#include "stemedb/wal_segment.h"

bool ctl_dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *entry;
	bool empty = true;

	if (d == NULL)
		return errno == ENOENT;
	while ((entry = readdir(d)) != NULL) {
		if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
			empty = false;
			break;
		}
	}
	closedir(d);
	return empty;
}

bool ctl_make_dirs(const char *path)
{
	char tmp[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(tmp)) {
		ctl_error("the path \"%s\" is empty or too long", path);
		return false;
	}
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0750) != 0 && errno != EEXIST) {
			ctl_error("mkdir() of %s failed: %s", tmp, strerror(errno));
			return false;
		}
		*p = '/';
	}
	if (mkdir(tmp, 0750) != 0 && errno != EEXIST) {
		ctl_error("mkdir() of %s failed: %s", tmp, strerror(errno));
		return false;
	}
	return true;
}

bool ctl_copy_dir_files(const char *src, const char *dst)
{
	DIR *d = opendir(src);
	struct dirent *entry;
	char err[1024];
	bool ok = true;

	if (d == NULL) {
		ctl_error("opendir() of %s failed: %s", src, strerror(errno));
		return false;
	}
	if (!ctl_make_dirs(dst)) {
		closedir(d);
		return false;
	}
	while (ok && (entry = readdir(d)) != NULL) {
		char path[4200];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", src, entry->d_name);
		if (entry->d_name[0] == '.' || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (wal_segment_copy(path, (uint64_t)st.st_size, dst, entry->d_name, err,
		                     sizeof(err)) != WAL_SEGMENT_OK) {
			ctl_error("%s", err);
			ok = false;
		}
	}
	closedir(d);
	return ok;
}

void ctl_remove_tree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *entry;

	if (d == NULL)
		return;
	while ((entry = readdir(d)) != NULL) {
		char child[4200];

		if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
			continue;
		snprintf(child, sizeof(child), "%s/%s", path, entry->d_name);
		unlink(child);
	}
	closedir(d);
	rmdir(path);
}

uint64_t ctl_file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

bool ctl_file_prefix_equal(const char *a, const char *b, uint64_t length)
{
	FILE *fa = fopen(a, "rbe"), *fb = fopen(b, "rbe");
	char x[65536], y[65536];
	bool same = fa != NULL && fb != NULL;

	while (same && length > 0) {
		size_t want = length < sizeof(x) ? (size_t)length : sizeof(x);

		same = fread(x, 1, want, fa) == want && fread(y, 1, want, fb) == want &&
		       memcmp(x, y, want) == 0;
		length -= want;
	}
	if (fa != NULL)
		fclose(fa);
	if (fb != NULL)
		fclose(fb);
	return same;
}
