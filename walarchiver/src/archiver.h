#ifndef STEMEDB_ARCHIVER_H
#define STEMEDB_ARCHIVER_H

/* stemedb-walarchiver: ships every sealed WAL segment to an archive, verifies the copy,
 * and reports the archived watermark to stemedb-api so that it never deletes a segment
 * before it is archived. docs/operations/wal-archival.md is the operator's guide. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stemedb/log.h"

enum archiver_result {
	ARCHIVER_OK = 0,
	ARCHIVER_RETRY,    /* a transient failure; try the same segment again later */
	ARCHIVER_CONFLICT, /* the archive contains a different file of the same name */
	ARCHIVER_CORRUPT,  /* the source segment fails its checks */
};

struct archiver_config {
	char *data_dir;
	char *wal_dir; /* resolved: $data_dir/wal when empty */
	char *run_dir; /* empty: resolved by daemon_resolve_run_dir */
	char *archive_dir;
	char *archive_command;
	char *verify_command;
	char *log_level_name;
	enum log_level log_level;
	uint64_t interval_ms;
	uint64_t retry_initial_ms;
	uint64_t retry_max_ms;
	uint64_t command_timeout_ms;
};

/* archiver_config.c */
bool archiver_config_load(struct archiver_config *cfg, int argc, char **argv, bool *help_requested,
                          char *err, size_t err_size);
void archiver_config_free(struct archiver_config *cfg);

/* archive_command.c */

/* Expands %p (path), %f (file name) and %% (a literal %) in template, putting each
 * substitution in single quotes for /bin/sh. Returns a malloc'ed string, or NULL with a
 * message in err when the template has another % sequence. */
char *archive_command_expand(const char *template, const char *path, const char *file_name,
                             char *err, size_t err_size);

/* Runs command through /bin/sh -c and waits at most timeout_ms for it; a command that
 * runs longer is killed with SIGKILL. Returns true when it exited with status 0, else
 * false with a message in err that gives the exit status or signal. */
bool archive_command_run(const char *command, uint64_t timeout_ms, char *err, size_t err_size);

/* archive_target.c: ships one sealed segment. */
struct archive_segment {
	const char *path; /* in the WAL directory */
	const char *name; /* "%016x.wal" */
	uint64_t base;
	uint64_t end;  /* offset just past its last record */
	uint64_t size; /* bytes in the file */
};

/* Checks the source segment: header, every record's CRC-32C and no trailing bytes. On
 * success fills segment->end and segment->size. */
enum archiver_result archive_check_source(struct archive_segment *segment, char *err,
                                          size_t err_size);

/* Copies the segment into archive_dir (temporary name, fsync, rename, directory fsync)
 * and re-reads the copy to check its size and every record. An identical existing copy
 * counts as archived and sets *already_archived. */
enum archiver_result archive_to_dir(const struct archive_segment *segment, const char *archive_dir,
                                    bool *already_archived, char *err, size_t err_size);

/* Runs the archive command for the segment, then the verify command when one is set. */
enum archiver_result archive_with_command(const struct archive_segment *segment,
                                          const struct archiver_config *cfg, char *err,
                                          size_t err_size);

/* archiver.c: the archiving loop on its own thread. */
struct archiver;

/* api_socket NULL leaves out every IPC call (the watermark is then neither read nor
 * reported); metrics_path NULL writes no metrics file. */
struct archiver *archiver_new(const struct archiver_config *cfg, const char *api_socket,
                              const char *metrics_path);
/* Archives every sealed segment above the watermark, in order, and stops at the first
 * failure. Returns the number shipped in this pass, or -1 after a failure; *conflict
 * is set when the failure needs an operator. */
int archiver_pass(struct archiver *a, bool *conflict);
uint64_t archiver_watermark(const struct archiver *a);
bool archiver_start(struct archiver *a);
/* Wakes the thread, waits for the segment in progress to finish and joins it. */
void archiver_stop(struct archiver *a);
void archiver_free(struct archiver *a);

#endif
