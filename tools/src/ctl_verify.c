/* stemedb-ctl verify: checks a backup directory or a data directory without the daemon.
 * It checks every WAL record's CRC-32C, every stored assertion's hash and signatures,
 * the subject/predicate index in both directions, and for a backup the manifest's
 * checksums and counts. */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_backup.h"

static const char verify_usage[] =
        "usage: stemedb-ctl verify (--backup DIR | --data-dir DIR [--wal-dir DIR])\n"
        "\n"
        "Checks a backup or a data directory offline: every WAL record's CRC-32C, every\n"
        "stored assertion's BLAKE2b hash and Ed25519 signatures, that every index entry\n"
        "points to a stored assertion and every assertion has its entry, and for a backup\n"
        "every file's size and checksum and the counts in MANIFEST.json. A data directory\n"
        "may belong to a running node: its database is opened as a RocksDB secondary\n"
        "instance, which sees the data of the node's last flush.\n"
        "Prints every problem and a summary. Exit status 0 only when nothing is wrong.\n"
        "\n"
        "  --backup DIR     backup directory written by `stemedb-ctl backup`\n"
        "  --data-dir DIR   data directory of a node\n"
        "  --wal-dir DIR    WAL directory of that node (default DATA_DIR/wal)\n";

struct verify_options {
	const char *backup;
	const char *data_dir;
	const char *wal_dir;
};

/* Scratch directories for RocksDB's log and for the secondary instance's state, so
 * that nothing is written into the directory under check. */
struct scratch {
	char log_dir[64];
	char secondary_dir[64];
};

static bool scratch_create(struct scratch *s)
{
	snprintf(s->log_dir, sizeof(s->log_dir), "/tmp/stemedb-verify-log-XXXXXX");
	snprintf(s->secondary_dir, sizeof(s->secondary_dir), "/tmp/stemedb-verify-db-XXXXXX");
	if (mkdtemp(s->log_dir) == NULL || mkdtemp(s->secondary_dir) == NULL) {
		ctl_error("verify: mkdtemp() in /tmp failed: %s", strerror(errno));
		return false;
	}
	return true;
}

static void scratch_remove(struct scratch *s)
{
	ctl_remove_tree(s->log_dir);
	ctl_remove_tree(s->secondary_dir);
}

static bool check_db(const char *path, bool live, struct ctl_db_summary *summary,
                     struct ctl_problems *problems)
{
	struct scratch scratch = {0};
	struct ctl_db *db;
	bool ok = false;

	if (!scratch_create(&scratch))
		return false;
	db = ctl_db_open(path, live ? scratch.secondary_dir : NULL, scratch.log_dir);
	if (db == NULL)
		ctl_problem(problems, "the database %s cannot be opened", path);
	else
		ok = ctl_db_check(db, summary, problems);
	ctl_db_close(db);
	scratch_remove(&scratch);
	return ok;
}

static void compare_count(struct ctl_problems *problems, const char *what, uint64_t found,
                          uint64_t expected)
{
	if (found != expected)
		ctl_problem(problems, "%s is %" PRIu64 ", the manifest says %" PRIu64, what, found,
		            expected);
}

static void print_summary(const char *what, const struct ctl_db_summary *db,
                          const struct ctl_wal_summary *wal, const struct ctl_problems *problems)
{
	printf("%s: %" PRIu64 " assertions, %" PRIu64 " index entries, WAL cursor %" PRIu64
	       "; WAL: %" PRIu64 " segments ending at offset %" PRIu64 ", %" PRIu64
	       " records at or after the cursor\n",
	       what, db->assertions, db->index_entries, db->cursor, wal->segments, wal->end,
	       wal->records_after_cursor);
	if (problems->count == 0)
		printf("verify: OK\n");
	else
		printf("verify: FAILED with %" PRIu64 " problems\n", problems->count);
}

static int verify_backup(const char *dir)
{
	struct ctl_problems problems = {0};
	struct ctl_manifest m;
	struct ctl_db_summary db = {0};
	struct ctl_wal_summary wal = {0};
	char path[4200];

	if (!ctl_manifest_read(&m, dir)) {
		printf("verify: FAILED, %s has no valid manifest\n", dir);
		return CTL_EXIT_REJECTED;
	}
	ctl_manifest_check_files(&m, dir, &problems);

	snprintf(path, sizeof(path), "%s/wal", dir);
	ctl_wal_check(path, m.wal_cursor, false, true, &wal, &problems);
	compare_count(&problems, "the WAL end offset", wal.end, m.wal_end);
	compare_count(&problems, "the number of WAL records after the cursor",
	              wal.records_after_cursor, m.wal_records);

	snprintf(path, sizeof(path), "%s/db", dir);
	if (check_db(path, false, &db, &problems)) {
		compare_count(&problems, "the checkpoint's WAL cursor", db.cursor, m.wal_cursor);
		compare_count(&problems, "the checkpoint's assertion count", db.assertions,
		              m.assertion_count);
	}

	printf("backup %s of node %s, created %s\n", dir, m.node_id, m.created_at);
	print_summary("contents", &db, &wal, &problems);
	ctl_manifest_free(&m);
	return problems.count == 0 ? CTL_EXIT_OK : CTL_EXIT_REJECTED;
}

static int verify_data_dir(const char *dir, const char *wal_dir)
{
	struct ctl_problems problems = {0};
	struct ctl_db_summary db = {0};
	struct ctl_wal_summary wal = {0};
	char db_path[4200], wal_path[4200];

	snprintf(db_path, sizeof(db_path), "%s/db", dir);
	if (wal_dir != NULL)
		snprintf(wal_path, sizeof(wal_path), "%s", wal_dir);
	else
		snprintf(wal_path, sizeof(wal_path), "%s/wal", dir);

	check_db(db_path, true, &db, &problems);
	ctl_wal_check(wal_path, db.cursor, true, true, &wal, &problems);
	if (wal.tail_bytes > 0)
		printf("note: the last WAL segment ends with %" PRIu64
		       " bytes that are not a complete record: a write in progress, or a torn "
		       "write that stemedb-api truncates at its next start\n",
		       wal.tail_bytes);

	print_summary(dir, &db, &wal, &problems);
	return problems.count == 0 ? CTL_EXIT_OK : CTL_EXIT_REJECTED;
}

int ctl_cmd_verify(int argc, char **argv)
{
	static const struct option options[] = {
	        {"backup", required_argument, NULL, 'b'},
	        {"data-dir", required_argument, NULL, 'd'},
	        {"wal-dir", required_argument, NULL, 'w'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct verify_options o = {0};
	int opt;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'b')
			o.backup = optarg;
		else if (opt == 'd')
			o.data_dir = optarg;
		else if (opt == 'w')
			o.wal_dir = optarg;
		else if (opt == 'h') {
			fputs(verify_usage, stdout);
			return CTL_EXIT_OK;
		} else
			return ctl_usage_error("verify");
	}
	if ((o.backup == NULL) == (o.data_dir == NULL)) {
		ctl_error("verify: give exactly one of --backup DIR and --data-dir DIR");
		return CTL_EXIT_USAGE;
	}
	if (o.backup != NULL && o.wal_dir != NULL) {
		ctl_error("verify: --wal-dir applies only with --data-dir");
		return CTL_EXIT_USAGE;
	}
	return o.backup != NULL ? verify_backup(o.backup) : verify_data_dir(o.data_dir, o.wal_dir);
}
