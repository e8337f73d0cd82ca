/* stemedb-ctl backup: requests a RocksDB checkpoint from stemedb-api, copies the WAL
 * segments after the checkpoint's cursor, and writes MANIFEST.json last. */

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"
#include "ctl_backup.h"
#include "stemedb/ipc.h"
#include "stemedb/wal_segment.h"

static const char backup_usage[] =
        "usage: stemedb-ctl backup --dest DIR [--socket PATH] [--data-dir DIR] [--wal-dir DIR]\n"
        "\n"
        "Takes a consistent backup of a running node into DIR, which must be missing or\n"
        "empty. stemedb-api writes a RocksDB checkpoint into DIR/db, so DIR must be\n"
        "writable by its user; on the same file system as the data directory the\n"
        "checkpoint uses hard links. The WAL segments after the checkpoint are copied\n"
        "into DIR/wal, and DIR/MANIFEST.json, written last, lists every file with its\n"
        "size and BLAKE2b-256 checksum.\n"
        "\n"
        "  --dest DIR       backup directory\n"
        "  --socket PATH    api.sock of the node (default $STEMEDB_RUN_DIR/api.sock,\n"
        "                   else DATA_DIR/run/api.sock)\n"
        "  --data-dir DIR   data directory of the node (default $STEMEDB_DATA_DIR, else ./var)\n"
        "  --wal-dir DIR    WAL directory (default $STEMEDB_WAL_DIR, else DATA_DIR/wal)\n";

struct backup_options {
	const char *dest;
	char socket[4096];
	char data_dir[4096];
	char wal_dir[4096];
};

static const char *env_or(const char *name, const char *fallback)
{
	const char *value = getenv(name);

	return value != NULL && value[0] != '\0' ? value : fallback;
}

/* Fills the directories that were not given from the environment and the defaults. */
static void resolve_paths(struct backup_options *o)
{
	if (o->data_dir[0] == '\0')
		snprintf(o->data_dir, sizeof(o->data_dir), "%s",
		         env_or("STEMEDB_DATA_DIR", "./var"));
	if (o->wal_dir[0] == '\0') {
		const char *wal = getenv("STEMEDB_WAL_DIR");

		if (wal != NULL && wal[0] != '\0')
			snprintf(o->wal_dir, sizeof(o->wal_dir), "%s", wal);
		else
			snprintf(o->wal_dir, sizeof(o->wal_dir), "%.4000s/wal", o->data_dir);
	}
	if (o->socket[0] == '\0') {
		const char *run = getenv("STEMEDB_RUN_DIR");

		if (run != NULL && run[0] != '\0')
			snprintf(o->socket, sizeof(o->socket), "%.4000s/%s", run,
			         IPC_API_SOCKET_NAME);
		else
			snprintf(o->socket, sizeof(o->socket), "%.4000s/run/%s", o->data_dir,
			         IPC_API_SOCKET_NAME);
	}
}

static int parse_backup_options(int argc, char **argv, struct backup_options *o)
{
	static const struct option options[] = {
	        {"dest", required_argument, NULL, 'd'},
	        {"socket", required_argument, NULL, 's'},
	        {"data-dir", required_argument, NULL, 'D'},
	        {"wal-dir", required_argument, NULL, 'w'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	int opt;

	memset(o, 0, sizeof(*o));
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'd')
			o->dest = optarg;
		else if (opt == 's')
			snprintf(o->socket, sizeof(o->socket), "%s", optarg);
		else if (opt == 'D')
			snprintf(o->data_dir, sizeof(o->data_dir), "%s", optarg);
		else if (opt == 'w')
			snprintf(o->wal_dir, sizeof(o->wal_dir), "%s", optarg);
		else if (opt == 'h') {
			fputs(backup_usage, stdout);
			return CTL_EXIT_OK;
		} else
			return ctl_usage_error("backup");
	}
	if (!ctl_require("backup", "--dest", o->dest))
		return CTL_EXIT_USAGE;
	resolve_paths(o);
	return -1;
}

/* Creates dest (or accepts an empty one) and returns its absolute path, which the
 * api needs because it runs in another working directory. */
static bool prepare_dest(const char *dest, char *absolute, size_t size)
{
	char resolved[PATH_MAX];

	if (!ctl_dir_is_empty(dest)) {
		ctl_error("backup: %s exists and is not empty; give a new or empty directory",
		          dest);
		return false;
	}
	if (!ctl_make_dirs(dest))
		return false;
	if (realpath(dest, resolved) == NULL) {
		ctl_error("backup: realpath() of %s failed: %s", dest, strerror(errno));
		return false;
	}
	snprintf(absolute, size, "%s", resolved);
	return true;
}

/* The fields of CreateCheckpointResponse that the backup keeps. */
struct checkpoint_reply {
	uint64_t wal_cursor;
	uint64_t assertion_count;
	uint64_t created_unix_ms;
	char node_id[64];
};

static bool call_checkpoint(const char *socket, const char *target, struct checkpoint_reply *out)
{
	struct ipc_client_options options = {.socket_path = socket};
	struct ipc_client *client = ipc_client_new(&options);
	ipc_envelope *reply = NULL;
	char err[1024];
	enum ipc_result r;

	/* A quick readiness call first, so that a stopped node fails the backup at once
	 * instead of after the checkpoint's long deadline of retries. */
	r = ipc_call_ready(client, IPC_DEADLINE_QUICK_MS, &reply, err, sizeof(err));
	if (r == IPC_OK && !reply->ready_response->ready) {
		snprintf(err, sizeof(err), "stemedb-api is not ready (%s)",
		         reply->ready_response->status);
		r = IPC_ERR_REMOTE;
	}
	ipc_envelope_free(reply);
	reply = NULL;
	if (r == IPC_OK)
		r = ipc_call_create_checkpoint(client, target, IPC_DEADLINE_SLOW_MS, &reply, err,
		                               sizeof(err));
	if (r == IPC_OK) {
		const Stemedb__Ipc__V1__CreateCheckpointResponse *c =
		        reply->create_checkpoint_response;

		out->wal_cursor = c->wal_cursor;
		out->assertion_count = c->assertion_count;
		out->created_unix_ms = c->created_unix_ms;
		snprintf(out->node_id, sizeof(out->node_id), "%s", c->node_id);
	} else {
		ctl_error("backup: the checkpoint request to %s failed (%s): %s; is stemedb-api "
		          "running, and may it write to %s?",
		          socket, ipc_result_name(r), err, target);
	}
	ipc_envelope_free(reply);
	ipc_client_free(client);
	return r == IPC_OK;
}

struct tail_count {
	uint64_t cursor;
	uint64_t records;
};

static bool count_after_cursor(void *arg, uint64_t offset, uint64_t next_offset, uint8_t type,
                               const uint8_t *payload, size_t payload_len)
{
	struct tail_count *t = arg;

	(void)next_offset;
	(void)type;
	(void)payload;
	(void)payload_len;
	if (offset >= t->cursor)
		t->records++;
	return true;
}

/* Copies the valid part of one segment into dest/wal and lists it in the manifest. */
static bool copy_segment(const char *wal_dir, uint64_t base, bool last, const char *dest,
                         struct ctl_manifest *m, struct tail_count *count)
{
	char name[WAL_SEGMENT_NAME_LEN + 1], path[4200], target[4200], relative[64], err[1024];
	struct wal_segment_info info;

	wal_segment_format_name(base, name);
	snprintf(path, sizeof(path), "%s/%s", wal_dir, name);
	snprintf(target, sizeof(target), "%s/wal", dest);
	if (wal_segment_scan(path, last, count_after_cursor, count, &info, err, sizeof(err)) !=
	            WAL_SEGMENT_OK ||
	    wal_segment_copy(path, info.valid_size, target, name, err, sizeof(err)) !=
	            WAL_SEGMENT_OK) {
		ctl_error("backup: %s; if stemedb-api deleted the segment meanwhile, run the "
		          "backup again",
		          err);
		return false;
	}
	m->wal_end = info.end;
	snprintf(relative, sizeof(relative), "wal/%s", name);
	return ctl_manifest_add_file(m, dest, relative);
}

/* Copies every segment that contains records at or after the checkpoint's cursor. The
 * active segment is copied up to its last complete record. */
static bool copy_wal(const char *wal_dir, const char *dest, struct ctl_manifest *m)
{
	struct wal_segment_list list;
	struct tail_count count = {.cursor = m->wal_cursor};
	char target[4200], err[1024];
	bool ok = true, first = true;

	snprintf(target, sizeof(target), "%s/wal", dest);
	if (!ctl_make_dirs(target))
		return false;
	if (wal_segment_list_dir(wal_dir, &list, err, sizeof(err)) != WAL_SEGMENT_OK) {
		ctl_error("backup: %s; give the node's WAL directory with --wal-dir", err);
		return false;
	}

	m->wal_end = m->wal_cursor;
	for (size_t i = 0; i < list.count && ok; i++) {
		bool last = i + 1 == list.count;

		if (!last && list.bases[i + 1] <= m->wal_cursor)
			continue;
		if (first && list.bases[i] > m->wal_cursor) {
			ctl_error("backup: the oldest WAL segment needed starts at offset %" PRIu64
			          ", after the checkpoint's cursor %" PRIu64,
			          list.bases[i], m->wal_cursor);
			ok = false;
			break;
		}
		first = false;
		ok = copy_segment(wal_dir, list.bases[i], last, dest, m, &count);
	}
	m->wal_records = count.records;
	wal_segment_list_free(&list);
	return ok;
}

static bool write_node_id(const char *dest, const char *node_id, struct ctl_manifest *m)
{
	char path[4200];
	FILE *f;

	snprintf(path, sizeof(path), "%s/node_id", dest);
	f = fopen(path, "we");
	if (f == NULL || fprintf(f, "%s\n", node_id) < 0 || fclose(f) != 0) {
		ctl_error("backup: writing %s failed: %s", path, strerror(errno));
		return false;
	}
	return ctl_manifest_add_file(m, dest, "node_id");
}

/* Lists the checkpoint's files in name order, so two backups of the same data have
 * manifests that compare line by line. */
static bool add_db_files(const char *dest, struct ctl_manifest *m)
{
	char dir[4200];
	struct dirent **entries = NULL;
	int n;
	bool ok = true;

	snprintf(dir, sizeof(dir), "%s/db", dest);
	n = scandir(dir, &entries, NULL, alphasort);
	if (n < 0) {
		ctl_error("backup: scandir() of %s failed: %s", dir, strerror(errno));
		return false;
	}
	for (int i = 0; i < n; i++) {
		char relative[512];

		if (ok && entries[i]->d_name[0] != '.') {
			snprintf(relative, sizeof(relative), "db/%s", entries[i]->d_name);
			ok = ctl_manifest_add_file(m, dest, relative);
		}
		free(entries[i]);
	}
	free(entries);
	return ok;
}

/* Reads the cursor, count and newest HLC time from the checkpoint itself, which is
 * what a restore will start from. */
static bool summarize_checkpoint(const char *dest, struct ctl_manifest *m)
{
	char db_path[4200], log_dir[] = "/tmp/stemedb-ctl-log-XXXXXX";
	struct ctl_db_summary summary;
	struct ctl_db *db;
	bool ok;

	if (mkdtemp(log_dir) == NULL) {
		ctl_error("backup: mkdtemp() of %s failed: %s", log_dir, strerror(errno));
		return false;
	}
	snprintf(db_path, sizeof(db_path), "%s/db", dest);
	db = ctl_db_open(db_path, NULL, log_dir);
	ok = db != NULL && ctl_db_summarize(db, &summary);
	ctl_db_close(db);
	ctl_remove_tree(log_dir);
	if (!ok)
		return false;

	if (summary.cursor != m->wal_cursor)
		fprintf(stderr,
		        "stemedb-ctl: backup: the checkpoint's cursor is %" PRIu64
		        " while stemedb-api reported %" PRIu64 "; using the checkpoint's\n",
		        summary.cursor, m->wal_cursor);
	m->wal_cursor = summary.cursor;
	m->assertion_count = summary.assertions;
	m->max_hlc_wall_ms = summary.max_hlc_wall_ms;
	return true;
}

static bool take_backup(const struct backup_options *o, const char *dest)
{
	struct checkpoint_reply reply;
	struct ctl_manifest m = {.files = json_array()};
	char target[4200];
	bool ok;

	snprintf(target, sizeof(target), "%s/db", dest);
	ok = call_checkpoint(o->socket, target, &reply);
	if (ok) {
		m.wal_cursor = reply.wal_cursor;
		m.created_unix_ms = reply.created_unix_ms;
		ctl_format_time_ms(reply.created_unix_ms, m.created_at, sizeof(m.created_at));
		snprintf(m.node_id, sizeof(m.node_id), "%s", reply.node_id);
	}

	ok = ok && summarize_checkpoint(dest, &m) && copy_wal(o->wal_dir, dest, &m) &&
	     write_node_id(dest, m.node_id, &m) && add_db_files(dest, &m) &&
	     ctl_manifest_write(&m, dest);
	if (ok)
		printf("backup written to %s: %" PRIu64 " assertions in the checkpoint (WAL cursor "
		       "%" PRIu64 "), %" PRIu64 " WAL records after it up to offset %" PRIu64
		       ", %zu files, node %s, created %s\n",
		       dest, m.assertion_count, m.wal_cursor, m.wal_records, m.wal_end,
		       json_array_size(m.files), m.node_id, m.created_at);
	ctl_manifest_free(&m);
	return ok;
}

int ctl_cmd_backup(int argc, char **argv)
{
	struct backup_options o;
	char dest[PATH_MAX];
	int status = parse_backup_options(argc, argv, &o);
	bool created;

	if (status >= 0)
		return status;
	created = access(o.dest, F_OK) != 0;
	if (!prepare_dest(o.dest, dest, sizeof(dest)))
		return CTL_EXIT_USAGE;
	if (!take_backup(&o, dest)) {
		/* rmdir succeeds only while the directory this command created is empty. */
		if (!created || rmdir(dest) != 0)
			ctl_error("backup: %s is incomplete (it has no %s); delete it and try "
			          "again",
			          dest, CTL_MANIFEST_NAME);
		return CTL_EXIT_REJECTED;
	}
	return CTL_EXIT_OK;
}
