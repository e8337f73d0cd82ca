#ifndef STEMEDB_GW_NODE_H
#define STEMEDB_GW_NODE_H

/* The state of this node's daemons, derived from one Stats call to stemedb-api. Both
 * GET /v1/health and the cluster status build on it. */

#include <jansson.h>

#include "gw_http.h"
#include "gw_ipc.h"

/* Metrics file that stemedb-walarchiver rewrites in the run directory after every
 * pass. Its age shows whether the archiver runs. */
#define GW_ARCHIVER_METRICS_FILE "walarchiver.prom"

/* Overall state of the node: every daemon healthy, some of it impaired but serving,
 * or not serving. */
enum gw_node_state { GW_NODE_HEALTHY = 0, GW_NODE_DEGRADED, GW_NODE_UNHEALTHY };

/* The result of one Stats call, filled on a job thread. */
struct gw_node_probe {
	ipc_envelope *reply; /* NULL when the call failed */
	struct gw_ipc_status status;
};

/* Makes the Stats call (job thread). */
void gw_node_probe_run(struct gw_node_probe *probe, const struct gw_config *cfg);

/* Returns the StatsResponse of a successful probe, else NULL. */
const Stemedb__Ipc__V1__StatsResponse *gw_node_probe_stats(const struct gw_node_probe *probe);

void gw_node_probe_free(struct gw_node_probe *probe);

/* Builds {"api": {...}, "gateway": {...}, "walarchiver": {...}, "replicator": {...},
 * "gossipd": {...}} and the overall state (loop thread: it updates the archive watch). */
json_t *gw_node_daemons(struct gateway *gw, const struct gw_node_probe *probe,
                        enum gw_node_state *overall);

const char *gw_node_state_name(enum gw_node_state state);

/* Unarchived part of the sealed WAL: bytes and segments above the watermark. */
void gw_node_archive_lag(const Stemedb__Ipc__V1__StatsResponse *stats, uint64_t *lag_bytes,
                         uint64_t *lag_segments);

/* Builds the index rebuild progress object: state, counts and RFC 3339 times. */
json_t *gw_rebuild_progress_json(const Stemedb__Ipc__V1__RebuildProgress *p);

#endif
