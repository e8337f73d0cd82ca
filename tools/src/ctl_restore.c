/* stemedb-ctl restore: rebuilds a data directory from a backup, optionally replaying
 * archived WAL segments up to a point in time. The restore writes files only. The
 * normal start-up replay of stemedb-api then applies the copied WAL records. */

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "ctl_backup.h"
#include "stemedb/assertion.h"
#include "stemedb/wal_segment.h"

static const char restore_usage[] =
        "usage: stemedb-ctl restore --backup DIR --data-dir DIR [--wal-dir DIR]\n"
        "                           [--wal-archive DIR] [--until TIME]\n"
        "\n"
        "Restores a backup into a missing or empty data directory; it never overwrites\n"
        "anything. The manifest's checksums are verified first. With --wal-archive the\n"
        "archived segments after the backup are added, so that the node replays them at\n"
        "start-up. With --until only the records whose HLC wall time is at or before TIME\n"
        "are kept (point-in-time restore). Start stemedb-api on the data directory\n"
        "afterwards.\n"
        "\n"
        "  --backup DIR       backup directory written by `stemedb-ctl backup`\n"
        "  --data-dir DIR     data directory to create\n"
        "  --wal-dir DIR      WAL directory to create (default DATA_DIR/wal)\n"
        "  --wal-archive DIR  directory of archived WAL segments (STEMEDB_WAL_ARCHIVE_DIR)\n"
        "  --until TIME       RFC 3339 time (2026-12-04T20:40:09.250Z, or with an offset\n"
        "                     such as +02:00) or Unix seconds (1764880809.25)\n";

struct restore_options {
	const char *backup;
	const char *data_dir;
	const char *wal_archive;
	char wal_dir[4096];
	bool has_until;
	uint64_t until_ms;
};

/* Parses ".fff" after seconds into milliseconds (digits past the third are dropped). */
static const char *parse_fraction(const char *p, uint64_t *ms)
{
	uint64_t scale = 100;

	*ms = 0;
	if (*p != '.')
		return p;
	p++;
	if (!isdigit((unsigned char)*p))
		return NULL;
	for (; isdigit((unsigned char)*p); p++) {
		*ms += (uint64_t)(*p - '0') * scale;
		scale /= 10;
	}
	return p;
}

static bool parse_unix_seconds(const char *text, uint64_t *out_ms)
{
	char *end;
	unsigned long long seconds;
	uint64_t ms;
	const char *rest;

	errno = 0;
	seconds = strtoull(text, &end, 10);
	if (errno != 0 || end == text || seconds > UINT64_MAX / 1000 - 1)
		return false;
	rest = parse_fraction(end, &ms);
	if (rest == NULL || *rest != '\0')
		return false;
	*out_ms = (uint64_t)seconds * 1000 + ms;
	return true;
}

/* Parses the zone of an RFC 3339 time (Z, +HH:MM or -HH:MM) into seconds east of
 * UTC. */
static bool parse_zone(const char *p, long *offset)
{
	int hours, minutes;
	char tail;

	if ((p[0] == 'Z' || p[0] == 'z') && p[1] == '\0') {
		*offset = 0;
		return true;
	}
	if ((p[0] != '+' && p[0] != '-') ||
	    sscanf(p + 1, "%2d:%2d%c", &hours, &minutes, &tail) != 2 || strlen(p) != 6 ||
	    hours > 23 || minutes > 59)
		return false;
	*offset = (p[0] == '-' ? -1 : 1) * (hours * 3600L + minutes * 60L);
	return true;
}

static bool parse_rfc3339(const char *text, uint64_t *out_ms)
{
	struct tm tm;
	const char *p;
	uint64_t ms;
	long offset;
	time_t seconds;

	memset(&tm, 0, sizeof(tm));
	p = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
	if (p == NULL)
		p = strptime(text, "%Y-%m-%dt%H:%M:%S", &tm);
	if (p == NULL)
		return false;
	p = parse_fraction(p, &ms);
	if (p == NULL || !parse_zone(p, &offset))
		return false;
	seconds = timegm(&tm) - offset;
	if (seconds < 0)
		return false;
	*out_ms = (uint64_t)seconds * 1000 + ms;
	return true;
}

static bool parse_until(const char *text, uint64_t *out_ms)
{
	if (parse_unix_seconds(text, out_ms) || parse_rfc3339(text, out_ms))
		return true;
	ctl_error("restore: --until \"%s\" is not a time; give RFC 3339 such as "
	          "2026-12-04T20:40:09Z or Unix seconds such as 1764880809",
	          text);
	return false;
}

static int parse_restore_options(int argc, char **argv, struct restore_options *o)
{
	static const struct option options[] = {
	        {"backup", required_argument, NULL, 'b'},
	        {"data-dir", required_argument, NULL, 'd'},
	        {"wal-dir", required_argument, NULL, 'w'},
	        {"wal-archive", required_argument, NULL, 'a'},
	        {"until", required_argument, NULL, 'u'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	int opt;

	memset(o, 0, sizeof(*o));
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'b') {
			o->backup = optarg;
		} else if (opt == 'd') {
			o->data_dir = optarg;
		} else if (opt == 'w') {
			snprintf(o->wal_dir, sizeof(o->wal_dir), "%s", optarg);
		} else if (opt == 'a') {
			o->wal_archive = optarg;
		} else if (opt == 'u') {
			if (!parse_until(optarg, &o->until_ms))
				return CTL_EXIT_USAGE;
			o->has_until = true;
		} else if (opt == 'h') {
			fputs(restore_usage, stdout);
			return CTL_EXIT_OK;
		} else {
			return ctl_usage_error("restore");
		}
	}
	if (!ctl_require("restore", "--backup", o->backup) ||
	    !ctl_require("restore", "--data-dir", o->data_dir))
		return CTL_EXIT_USAGE;
	if (o->wal_dir[0] == '\0')
		snprintf(o->wal_dir, sizeof(o->wal_dir), "%.4000s/wal", o->data_dir);
	return -1;
}

/* Rejects a target that contains anything, so a restore can never overwrite data. */
static bool check_targets(const struct restore_options *o)
{
	const char *dirs[2] = {o->data_dir, o->wal_dir};

	for (size_t i = 0; i < 2; i++) {
		if (!ctl_dir_is_empty(dirs[i])) {
			ctl_error("restore: %s is not empty; restore writes only into a missing or "
			          "empty directory, so move its contents away or choose another "
			          "directory",
			          dirs[i]);
			return false;
		}
	}
	return true;
}

static bool check_backup(const char *backup, const struct ctl_manifest *m,
                         const struct restore_options *o)
{
	struct ctl_problems problems = {0};
	char newest[40], until[40];

	ctl_manifest_check_files(m, backup, &problems);
	if (problems.count > 0) {
		ctl_error("restore: the backup %s fails %" PRIu64
		          " checks against its manifest (listed above); use another backup",
		          backup, problems.count);
		return false;
	}
	if (o->has_until && o->until_ms < m->max_hlc_wall_ms) {
		ctl_format_time_ms(m->max_hlc_wall_ms, newest, sizeof(newest));
		ctl_format_time_ms(o->until_ms, until, sizeof(until));
		ctl_error("restore: the backup's checkpoint contains records up to %s, later than "
		          "--until %s; restore from an older backup",
		          newest, until);
		return false;
	}
	return true;
}

/* One source of segments: the backup's wal/ or the archive. */
struct segment_source {
	const char *dir;
	struct wal_segment_list list;
};

/* The WAL that the restored node will replay, built segment by segment. */
struct wal_chain {
	const struct restore_options *options;
	uint64_t cursor;
	uint64_t next;         /* offset the next segment must cover */
	uint64_t records;      /* records at or after the cursor */
	uint64_t last_wall_ms; /* HLC wall time of the last kept record */
	uint64_t cut_offset;   /* offset of the first record past --until */
	bool cut;              /* a record past --until was found */
	uint64_t segments;
};

/* Returns the base of the newest segment in source that starts at or before offset. */
static bool find_covering(const struct segment_source *source, uint64_t offset, uint64_t *base)
{
	bool found = false;

	for (size_t i = 0; source->dir != NULL && i < source->list.count; i++) {
		if (source->list.bases[i] <= offset) {
			*base = source->list.bases[i];
			found = true;
		}
	}
	return found;
}

static bool on_chain_record(void *arg, uint64_t offset, uint64_t next_offset, uint8_t type,
                            const uint8_t *payload, size_t payload_len)
{
	struct wal_chain *c = arg;
	uint64_t wall;

	(void)next_offset;
	(void)type;
	if (offset < c->cursor)
		return true;
	/* Every record type logged so far (assertions, votes, epochs, co-signatures,
	 * sources, aliases, trust outcomes) ends with its HLC stamp: wall_ms u64, logical
	 * u32, node id. */
	if (payload_len >= 28) {
		wall = load_u64le(payload + payload_len - 28);
		if (c->options->has_until && wall > c->options->until_ms) {
			c->cut = true;
			c->cut_offset = offset;
			return false;
		}
		c->last_wall_ms = wall;
	}
	c->records++;
	return true;
}

/* Checks that the backup's copy of a segment (a prefix, when it was the active one) has
 * the same bytes as the start of the archived segment. */
static bool is_prefix_of(const char *prefix_path, const char *full_path)
{
	char err[1024];
	struct wal_segment_info p, f;

	if (wal_segment_scan(prefix_path, false, NULL, NULL, &p, err, sizeof(err)) !=
	            WAL_SEGMENT_OK ||
	    wal_segment_scan(full_path, false, NULL, NULL, &f, err, sizeof(err)) != WAL_SEGMENT_OK)
		return false;
	return p.valid_size <= f.valid_size && p.created_ns == f.created_ns &&
	       ctl_file_prefix_equal(prefix_path, full_path, p.valid_size);
}

/* Chooses the file for the segment at base: the archived copy when there is one,
 * because the backup may hold only a prefix of the segment that was active then. */
static bool choose_file(const struct segment_source *backup, const struct segment_source *archive,
                        uint64_t base, char *path, size_t size)
{
	char name[WAL_SEGMENT_NAME_LEN + 1], backup_path[4200];
	uint64_t found = 0;
	bool in_backup = find_covering(backup, base, &found) && found == base;
	bool in_archive = find_covering(archive, base, &found) && found == base;

	wal_segment_format_name(base, name);
	snprintf(backup_path, sizeof(backup_path), "%s/%s", backup->dir, name);
	if (!in_archive) {
		snprintf(path, size, "%s", backup_path);
		return true;
	}
	snprintf(path, size, "%s/%s", archive->dir, name);
	if (in_backup && !is_prefix_of(backup_path, path)) {
		ctl_error("restore: the archived segment %s does not start with the backup's copy "
		          "of it, so the archive belongs to another node or to a WAL history "
		          "before another restore; give the matching archive",
		          path);
		return false;
	}
	return true;
}

/* Adds the segment that covers c->next. Returns false with *done set when the chain
 * ends normally, and false without it on an error. */
static bool add_segment(struct wal_chain *c, const struct segment_source *backup,
                        const struct segment_source *archive, bool *done)
{
	char path[4200], name[WAL_SEGMENT_NAME_LEN + 1], err[1024];
	struct wal_segment_info info;
	uint64_t base = 0, base_archive = 0, length;
	bool has_backup = find_covering(backup, c->next, &base);
	bool has_archive = find_covering(archive, c->next, &base_archive);

	*done = true;
	if (!has_backup && !has_archive)
		return false;
	if (has_archive && (!has_backup || base_archive > base))
		base = base_archive;
	if (!choose_file(backup, archive, base, path, sizeof(path))) {
		*done = false;
		return false;
	}

	enum wal_segment_result r =
	        wal_segment_scan(path, false, on_chain_record, c, &info, err, sizeof(err));
	if (r != WAL_SEGMENT_OK && r != WAL_SEGMENT_STOPPED) {
		ctl_error("restore: %s", err);
		*done = false;
		return false;
	}
	if (r == WAL_SEGMENT_OK && info.end <= c->next && base < c->next)
		return false; /* the segment ends before the offset needed: nothing covers it */

	length = c->cut ? WAL_SEGMENT_HEADER_SIZE + (c->cut_offset - base) : info.valid_size;
	wal_segment_format_name(base, name);
	if (wal_segment_copy(path, length, c->options->wal_dir, name, err, sizeof(err)) !=
	    WAL_SEGMENT_OK) {
		ctl_error("restore: %s", err);
		*done = false;
		return false;
	}
	c->segments++;
	c->next = c->cut ? c->cut_offset : info.end;
	*done = c->cut;
	return !c->cut;
}

static bool load_source(struct segment_source *source, const char *dir)
{
	char err[1024];

	memset(source, 0, sizeof(*source));
	if (dir == NULL)
		return true;
	source->dir = dir;
	if (wal_segment_list_dir(dir, &source->list, err, sizeof(err)) != WAL_SEGMENT_OK) {
		ctl_error("restore: %s", err);
		return false;
	}
	return true;
}

static void report_chain(const struct wal_chain *c)
{
	char last[40] = "(none)", until[40];

	if (c->last_wall_ms > 0)
		ctl_format_time_ms(c->last_wall_ms, last, sizeof(last));
	printf("WAL restored: %" PRIu64 " segments from offset %" PRIu64 " to %" PRIu64 ", %" PRIu64
	       " records to replay, the last written at %s\n",
	       c->segments, c->cursor, c->next, c->records, last);
	if (!c->options->has_until)
		return;
	ctl_format_time_ms(c->options->until_ms, until, sizeof(until));
	if (c->cut)
		printf("stopped at --until %s: the WAL was cut at offset %" PRIu64
		       ", the first record written later\n",
		       until, c->cut_offset);
	else
		printf("warning: the available WAL ends before --until %s, so the restored data "
		       "reaches only %s\n",
		       until, last);
}

static bool restore_wal(const struct restore_options *o, const struct ctl_manifest *m)
{
	struct segment_source backup, archive;
	struct wal_chain chain = {.options = o, .cursor = m->wal_cursor, .next = m->wal_cursor};
	char backup_wal[4200];
	bool done = false, ok;

	snprintf(backup_wal, sizeof(backup_wal), "%s/wal", o->backup);
	if (!ctl_make_dirs(o->wal_dir) || !load_source(&backup, backup_wal))
		return false;
	ok = load_source(&archive, o->wal_archive);
	while (ok && add_segment(&chain, &backup, &archive, &done))
		;
	ok = ok && done;
	if (ok)
		report_chain(&chain);
	wal_segment_list_free(&backup.list);
	wal_segment_list_free(&archive.list);
	return ok;
}

static bool restore_files(const struct restore_options *o)
{
	char src[4200], dst[4200], err[1024];

	snprintf(src, sizeof(src), "%s/db", o->backup);
	snprintf(dst, sizeof(dst), "%s/db", o->data_dir);
	if (!ctl_make_dirs(o->data_dir) || !ctl_copy_dir_files(src, dst))
		return false;

	snprintf(src, sizeof(src), "%s/node_id", o->backup);
	if (wal_segment_copy(src, ctl_file_size(src), o->data_dir, "node_id", err, sizeof(err)) !=
	    WAL_SEGMENT_OK) {
		ctl_error("restore: %s", err);
		return false;
	}
	return true;
}

int ctl_cmd_restore(int argc, char **argv)
{
	struct restore_options o;
	struct ctl_manifest m;
	int status = parse_restore_options(argc, argv, &o);

	if (status >= 0)
		return status;
	if (!check_targets(&o))
		return CTL_EXIT_REJECTED;
	if (!ctl_manifest_read(&m, o.backup))
		return CTL_EXIT_REJECTED;

	status = CTL_EXIT_REJECTED;
	if (!check_backup(o.backup, &m, &o))
		goto done;
	if (!restore_files(&o) || !restore_wal(&o, &m)) {
		ctl_error("restore: %s is incomplete; delete its contents before trying again",
		          o.data_dir);
		goto done;
	}
	printf("restored backup %s (node %s, created %s) into %s; start stemedb-api on it to "
	       "replay the WAL\n",
	       o.backup, m.node_id, m.created_at, o.data_dir);
	status = CTL_EXIT_OK;

done:
	ctl_manifest_free(&m);
	return status;
}
