#ifndef STEMEDB_WAL_SEGMENT_H
#define STEMEDB_WAL_SEGMENT_H

/* Read-only access to WAL segment files for the processes that do not own the WAL
 * (the archiver, backup, verify and restore). docs/storage.md gives the byte format.
 * Nothing here writes to a segment, except wal_segment_copy, which writes a new file. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WAL_SEGMENT_HEADER_SIZE        32
#define WAL_SEGMENT_RECORD_HEADER_SIZE 12
#define WAL_SEGMENT_PAYLOAD_MAX        (64u * 1024u * 1024u)
#define WAL_SEGMENT_NAME_LEN           20 /* 16 hex digits and ".wal" */

enum wal_segment_result {
	WAL_SEGMENT_OK = 0,
	WAL_SEGMENT_CORRUPT,  /* a bad header or record; the message names file and offset */
	WAL_SEGMENT_IO_ERROR, /* a system call failed; the message names it */
	WAL_SEGMENT_STOPPED,  /* the record callback returned false */
};

/* Summary of one scanned segment. */
struct wal_segment_info {
	uint64_t base;       /* base offset from the file name and header */
	uint64_t file_size;  /* bytes in the file when it was read */
	uint64_t valid_size; /* header plus every valid record before the first invalid one */
	uint64_t end;        /* base + valid_size - 32: the offset just past the last record */
	uint64_t records;    /* valid records */
	uint64_t created_ns; /* creation time from the header, Unix nanoseconds */
	uint32_t data_crc;   /* CRC-32C over the valid bytes, header included */
};

/* Called for every valid record in file order with its global offset, the offset just
 * past it, its type and its payload (valid only during the call). Returning false stops
 * the scan with WAL_SEGMENT_STOPPED. */
typedef bool (*wal_segment_record_fn)(void *ctx, uint64_t offset, uint64_t next_offset,
                                      uint8_t type, const uint8_t *payload, size_t payload_len);

/* Scans the segment at path. With allow_tail, an invalid record that no valid record
 * follows (checked at every later byte position) ends the scan with
 * WAL_SEGMENT_OK and info->valid_size marks where it starts; that is how the active
 * segment of a running node is read, since its last record may be half written.
 * Without allow_tail, any invalid record or trailing byte is corruption. fn may be NULL. */
enum wal_segment_result wal_segment_scan(const char *path, bool allow_tail,
                                         wal_segment_record_fn fn, void *ctx,
                                         struct wal_segment_info *info, char *err, size_t err_size);

/* Parses a "%016x.wal" file name with lowercase hex digits. */
bool wal_segment_parse_name(const char *name, uint64_t *base);
void wal_segment_format_name(uint64_t base, char out[WAL_SEGMENT_NAME_LEN + 1]);

struct wal_segment_list {
	uint64_t *bases; /* ascending */
	size_t count;
};

/* Lists the segment files of dir. Other names and subdirectories are ignored. */
enum wal_segment_result wal_segment_list_dir(const char *dir, struct wal_segment_list *out,
                                             char *err, size_t err_size);
void wal_segment_list_free(struct wal_segment_list *list);

/* Copies the first length bytes of src_path to dir/name durably: the data goes to a
 * temporary name in dir, is fsynced and renamed, and dir is fsynced. An existing
 * dir/name is replaced. length larger than the file is an I/O error. */
enum wal_segment_result wal_segment_copy(const char *src_path, uint64_t length, const char *dir,
                                         const char *name, char *err, size_t err_size);

/* fsync of a directory, so that a rename or a new name in it survives a crash. */
enum wal_segment_result wal_segment_sync_dir(const char *dir, char *err, size_t err_size);

#endif
