#ifndef STEMEDB_IPC_API_H
#define STEMEDB_IPC_API_H

/* api.sock: the IPC service of stemedb-api for the other daemons of the node
 * (statistics, readiness, assertion reads, checkpoints, compaction, index rebuild, the
 * archived-WAL watermark and the ingested event stream). It runs on its own thread
 * with its own event_base, which also carries the systemd watchdog pings. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "commit.h"
#include "http_server.h"

struct ipc_api;

/* Registers the IPC and WAL archive metrics. Call once before any thread starts. */
void ipc_api_register_metrics(void);

/* Loads the archived watermark from the store, creates socket_path and starts the
 * service thread. state must outlive the service. Returns NULL with a message in err. */
struct ipc_api *ipc_api_start(struct api_state *state, const char *socket_path, char *err,
                              size_t err_size);

/* Rejects every later trust outcome request and waits for the one in progress, so that
 * the commit pipeline can stop. Call before commit_stop. */
void ipc_api_close_writes(struct ipc_api *api);

/* Stops the thread, waits for running checkpoint, compaction and rebuild jobs, closes
 * every connection and removes the socket file. */
void ipc_api_stop(struct ipc_api *api);

/* commit_options.segment_retention: with STEMEDB_WAL_ARCHIVE on, a sealed segment may
 * only be deleted once it ends at or below the archived watermark. */
bool ipc_api_segment_retention(void *ctx, const char *path, uint64_t base_offset,
                               uint64_t end_offset);

/* commit_options.on_ingested: publishes one IngestedEvent per stored assertion. */
void ipc_api_on_ingested(void *ctx, const struct commit_ingested *items, size_t count);

#endif
