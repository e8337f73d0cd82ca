#ifndef STEMEDB_GW_BACKUP_H
#define STEMEDB_GW_BACKUP_H

/* Full backups for POST /v1/admin/backup. The gateway runs `stemedb-ctl backup` from
 * its own directory, so a backup taken over HTTP is the same as one taken by hand: a
 * RocksDB checkpoint written by stemedb-api into DIR/db, the WAL after it in DIR/wal,
 * and DIR/MANIFEST.json written last. Runs on a job thread. */

#include <jansson.h>
#include <stdint.h>

#include "gw_config.h"

enum gw_backup_result {
	GW_BACKUP_OK = 0,
	GW_BACKUP_REJECTED,    /* stemedb-ctl rejected the target (exit status 2) */
	GW_BACKUP_FAILED,      /* stemedb-ctl failed (exit status 1) or was killed */
	GW_BACKUP_TIMED_OUT,   /* killed after the admin deadline */
	GW_BACKUP_NOT_STARTED, /* stemedb-ctl is missing or could not be started */
};

/* Runs the backup into dest (an absolute path). On GW_BACKUP_OK *manifest receives
 * the parsed MANIFEST.json (caller frees it); otherwise message contains the cause, with the
 * tail of stemedb-ctl's output. */
enum gw_backup_result gw_backup_run(const struct gw_config *cfg, const char *dest,
                                    json_t **manifest, char *message, size_t message_size);

#endif
