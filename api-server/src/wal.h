#ifndef STEMEDB_WAL_H
#define STEMEDB_WAL_H

/* Write-ahead log of stemedb-api: a directory of segment files that the commit thread
 * appends record batches to. docs/storage.md and the top of wal.c give the byte format,
 * the global offsets and the recovery rules. One thread uses a struct wal at a time. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WAL_HEADER_SIZE        32
#define WAL_RECORD_HEADER_SIZE 12
/* Largest payload that append accepts and that recovery treats as plausible. */
#define WAL_PAYLOAD_MAX           (64u * 1024u * 1024u)
#define WAL_SEGMENT_BYTES_DEFAULT (64ull * 1024ull * 1024ull)

enum wal_result {
	WAL_OK = 0,
	WAL_CORRUPT,  /* a bad record, header or segment gap that recovery must not repair */
	WAL_IO_ERROR, /* a system call failed; see the log */
	WAL_FAILED,   /* an earlier write or sync failed, so the writer accepts nothing */
	WAL_INVALID,  /* the caller passed a bad argument (payload too large, bad offset) */
};

struct wal_options {
	const char *dir;
	uint64_t segment_bytes; /* file size (header included) that triggers rotation; 0: 64 MiB */
	/* Base offset of the first segment when the directory contains none, so that a WAL
	 * whose old segments were all deleted continues at the store's cursor. */
	uint64_t initial_offset;
};

struct wal_record {
	uint8_t type;
	const uint8_t *payload;
	size_t payload_len;
};

struct wal_stats {
	uint64_t end_offset;         /* global offset just past the last record */
	uint64_t first_offset;       /* base offset of the oldest segment on disk */
	uint64_t last_record_offset; /* offset of the last record, or end_offset when empty */
	uint64_t segments;
	uint64_t rotations; /* since open */
	uint64_t syncs;     /* successful fdatasync calls since open */
	uint64_t bytes_written;
	uint64_t records_written;
	uint64_t tail_bytes_dropped; /* truncated at open as a torn write */
};

struct wal;

/* Opens dir (creating it when missing), checks every segment and truncates a torn tail
 * of the last one. Returns WAL_CORRUPT with a message naming the file and byte offset
 * when a record that recovery may not drop is damaged. The caller logs the message. */
enum wal_result wal_open(const struct wal_options *options, struct wal **out, char *err,
                         size_t err_size);

/* Syncs nothing; callers that need durability call wal_sync first. */
void wal_close(struct wal *w);

/* Writes records after the end of the log with one writev per segment touched, rotating
 * to a new segment when the current one would pass segment_bytes. A sealed segment is
 * synced before the next one is created, so only the last segment can be unsynced.
 * On success *end_offset is the global offset just past the last record. Any write
 * error puts the writer into the failed state for good. */
enum wal_result wal_append(struct wal *w, const struct wal_record *records, size_t count,
                           uint64_t *end_offset);

/* fdatasync of the active segment. A failure is permanent: the page cache state is
 * unknown after a failed sync, so the writer never retries. */
enum wal_result wal_sync(struct wal *w);

bool wal_failed(const struct wal *w);
void wal_get_stats(const struct wal *w, struct wal_stats *out);

/* Called once per record with its global offset, the offset just past it, its type and
 * payload (valid only during the call). Returning false stops the replay. */
typedef bool (*wal_replay_fn)(void *ctx, uint64_t offset, uint64_t next_offset, uint8_t type,
                              const uint8_t *payload, size_t payload_len);

/* Calls fn for every record at or after from, in log order. from must be a record
 * boundary between the first offset on disk and the end offset. */
enum wal_result wal_replay(struct wal *w, uint64_t from, wal_replay_fn fn, void *ctx, char *err,
                           size_t err_size);

/* Decides whether a sealed segment may be removed; a WAL archiver returns false until it
 * has shipped the segment. */
typedef bool (*wal_retention_fn)(void *ctx, const char *path, uint64_t base_offset,
                                 uint64_t end_offset);
void wal_set_retention(struct wal *w, wal_retention_fn fn, void *ctx);

/* Removes sealed segments, oldest first, whose records all lie below applied_offset and
 * which the retention hook releases; stops at the first one that must stay. The active
 * segment is never removed. *removed receives the count (may be NULL). */
enum wal_result wal_delete_applied(struct wal *w, uint64_t applied_offset, size_t *removed);

/* Removes every segment and starts an empty one at base_offset, which must not be below
 * the end offset. The pipeline calls it when the store has applied records past the end
 * of the log, which eventual durability allows after a power loss, so that no offset is
 * ever given to two different records. */
enum wal_result wal_restart_at(struct wal *w, uint64_t base_offset);

#endif
