#ifndef STEMEDB_CTL_BACKUP_H
#define STEMEDB_CTL_BACKUP_H

/* Shared parts of `stemedb-ctl backup`, `verify` and `restore`: the backup manifest,
 * offline reads of a RocksDB directory, and WAL chain checks. A backup directory contains
 * db/ (a RocksDB checkpoint), wal/ (the segments after the checkpoint's WAL cursor),
 * node_id, and MANIFEST.json, which is written last so that a backup without it is
 * recognizably incomplete. docs/operations/backup.md describes the format. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTL_MANIFEST_NAME    "MANIFEST.json"
#define CTL_MANIFEST_FORMAT  "stemedb-backup"
#define CTL_MANIFEST_VERSION 1
#define CTL_PROBLEMS_SHOWN   20

/* The commands; each parses its own options. */
int ctl_cmd_backup(int argc, char **argv);
int ctl_cmd_verify(int argc, char **argv);
int ctl_cmd_restore(int argc, char **argv);

/* Problems found by a check. Each one is printed as it is found, up to
 * CTL_PROBLEMS_SHOWN, and all of them are counted. */
struct ctl_problems {
	uint64_t count;
	bool quiet; /* print nothing, only count */
};
void ctl_problem(struct ctl_problems *p, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* ctl_manifest.c */
struct ctl_manifest {
	char node_id[64];
	char created_at[40];
	uint64_t created_unix_ms;
	uint64_t wal_cursor;      /* the checkpoint contains every record below this offset */
	uint64_t wal_end;         /* end offset of the WAL copied into the backup */
	uint64_t assertion_count; /* assertions in the checkpoint */
	uint64_t wal_records;     /* WAL records at or after wal_cursor in the backup */
	uint64_t max_hlc_wall_ms; /* newest HLC wall time in the checkpoint, 0 when empty */
	json_t *files;            /* array of {"path","size","blake2b"} */
};

/* Appends one file entry (relative path, size and BLAKE2b-256) to m->files, after an
 * fsync of the file. */
bool ctl_manifest_add_file(struct ctl_manifest *m, const char *root, const char *relative);
/* Writes root/MANIFEST.json through a temporary file, fsync and rename. */
bool ctl_manifest_write(const struct ctl_manifest *m, const char *root);
/* Reads root/MANIFEST.json; prints what is wrong and returns false when it is missing
 * or malformed. */
bool ctl_manifest_read(struct ctl_manifest *m, const char *root);
void ctl_manifest_free(struct ctl_manifest *m);
/* Checks every listed file's size and checksum and reports files in db/ and wal/ that
 * the manifest does not list. */
void ctl_manifest_check_files(const struct ctl_manifest *m, const char *root,
                              struct ctl_problems *problems);
/* Formats Unix milliseconds as RFC 3339 UTC with milliseconds. */
void ctl_format_time_ms(uint64_t unix_ms, char *out, size_t out_size);

/* ctl_dbread.c: offline reads of a RocksDB directory that stemedb-api wrote. */
struct ctl_db;
/* Opens path read-only, or as a secondary instance when the owner may be running
 * (secondary_dir is then a scratch directory). RocksDB's own log goes to log_dir so
 * that nothing is written into path. */
struct ctl_db *ctl_db_open(const char *path, const char *secondary_dir, const char *log_dir);
void ctl_db_close(struct ctl_db *db);

struct ctl_db_summary {
	uint64_t cursor;
	uint64_t assertions;
	uint64_t index_entries;
	uint64_t max_hlc_wall_ms;
};
/* Reads the cursor and counts the assertions, without checking them. */
bool ctl_db_summarize(struct ctl_db *db, struct ctl_db_summary *out);
/* Checks every assertion's hash and signatures and the subject/predicate index in both
 * directions, and fills out as ctl_db_summarize does. */
bool ctl_db_check(struct ctl_db *db, struct ctl_db_summary *out, struct ctl_problems *problems);

/* ctl_walcheck.c */
struct ctl_wal_summary {
	uint64_t segments;
	uint64_t first_base;
	uint64_t end;
	uint64_t records_after_cursor;
	uint64_t max_hlc_wall_ms;
	uint64_t tail_bytes; /* invalid bytes after the last record of the last segment */
};
/* Checks the segments of dir: headers, every record's CRC-32C, contiguity, that the
 * chain covers cursor, and (with check_records) every assertion record's hash and
 * signatures. allow_tail accepts a half-written end of the last segment, as a
 * running node may have. */
bool ctl_wal_check(const char *dir, uint64_t cursor, bool allow_tail, bool check_records,
                   struct ctl_wal_summary *out, struct ctl_problems *problems);

/* Decodes an assertion record's payload and checks its hash and signatures. Returns
 * false with a reason in why; *wall_ms receives the HLC wall time when it decodes. */
bool ctl_check_envelope(const uint8_t *payload, size_t len, uint8_t hash[32], uint64_t *wall_ms,
                        char *why, size_t why_size);

/* ctl_files.c: file helpers. */
/* True when path does not exist or is an empty directory. */
bool ctl_dir_is_empty(const char *path);
/* mkdir -p with mode 0750. */
bool ctl_make_dirs(const char *path);
/* Copies every regular file of src into dst (created), with fsync of each file and dst. */
bool ctl_copy_dir_files(const char *src, const char *dst);
/* Compares the first length bytes of two files. */
bool ctl_file_prefix_equal(const char *a, const char *b, uint64_t length);
/* Size of a file, 0 when it cannot be read. */
uint64_t ctl_file_size(const char *path);
/* Removes a directory of regular files (one level deep, as mkdtemp scratch space is). */
void ctl_remove_tree(const char *path);

#endif
