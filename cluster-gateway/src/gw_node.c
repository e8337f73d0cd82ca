#include "gw_node.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "gw_http.h"

#ifndef STEMEDB_VERSION
#define STEMEDB_VERSION "0.1.0"
#endif

void gw_node_probe_run(struct gw_node_probe *probe, const struct gw_config *cfg)
{
	probe->reply = gw_ipc_stats(cfg, &probe->status);
}

const Stemedb__Ipc__V1__StatsResponse *gw_node_probe_stats(const struct gw_node_probe *probe)
{
	return probe->reply != NULL ? probe->reply->stats_response : NULL;
}

void gw_node_probe_free(struct gw_node_probe *probe)
{
	ipc_envelope_free(probe->reply);
	probe->reply = NULL;
}

const char *gw_node_state_name(enum gw_node_state state)
{
	switch (state) {
	case GW_NODE_HEALTHY:
		return "healthy";
	case GW_NODE_DEGRADED:
		return "degraded";
	case GW_NODE_UNHEALTHY:
		return "unhealthy";
	}
	return "unhealthy";
}

void gw_node_archive_lag(const Stemedb__Ipc__V1__StatsResponse *stats, uint64_t *lag_bytes,
                         uint64_t *lag_segments)
{
	*lag_bytes = 0;
	*lag_segments = 0;
	for (size_t i = 0; i < stats->n_sealed_segments; i++) {
		const Stemedb__Ipc__V1__SealedSegment *s = stats->sealed_segments[i];
		uint64_t end = s->base_offset + s->size_bytes;
		uint64_t start = s->base_offset > stats->archived_watermark
		                         ? s->base_offset
		                         : stats->archived_watermark;

		if (end <= stats->archived_watermark)
			continue;
		*lag_bytes += end - start;
		*lag_segments += 1;
	}
}

/* stemedb-api: "down" when its socket does not accept a call, "unhealthy" when it
 * replies badly or not in time or reports a WAL or storage failure, "degraded" while
 * it replays the WAL, else "healthy". */
static json_t *api_entry(struct gateway *gw, const struct gw_node_probe *probe,
                         enum gw_node_state *state)
{
	const Stemedb__Ipc__V1__StatsResponse *stats = gw_node_probe_stats(probe);
	json_t *entry = json_pack("{s:s}", "socket", gw->config->api_socket);
	const char *name;

	if (stats == NULL) {
		enum ipc_result r = probe->status.result;
		bool down = r == IPC_ERR_UNAVAILABLE || r == IPC_ERR_CLOSED || r == IPC_ERR_IO;

		*state = GW_NODE_UNHEALTHY;
		json_object_set_new(entry, "state", json_string(down ? "down" : "unhealthy"));
		json_object_set_new(entry, "error", json_string(probe->status.message));
		return entry;
	}

	if (!stats->healthy) {
		*state = GW_NODE_UNHEALTHY;
		name = "unhealthy";
	} else if (!stats->ready) {
		*state = GW_NODE_DEGRADED;
		name = "degraded";
	} else {
		*state = GW_NODE_HEALTHY;
		name = "healthy";
	}
	json_object_set_new(entry, "state", json_string(name));
	json_object_set_new(entry, "ready", json_boolean(stats->ready));
	json_object_set_new(entry, "healthy", json_boolean(stats->healthy));
	json_object_set_new(entry, "uptime_seconds",
	                    json_integer((json_int_t)stats->uptime_seconds));
	json_object_set_new(entry, "version", json_string(stats->version));
	return entry;
}

/* Tracks how long sealed WAL has waited without the watermark moving. */
static uint64_t stalled_ns(struct gateway *gw, uint64_t watermark, uint64_t lag_segments)
{
	struct gw_archive_watch *w = &gw->archive_watch;
	uint64_t now = gw_now_ns();

	if (lag_segments == 0) {
		w->lag_since_ns = 0;
	} else if (w->lag_since_ns == 0 || watermark != w->watermark) {
		w->lag_since_ns = now;
	}
	w->watermark = watermark;
	return w->lag_since_ns == 0 ? 0 : now - w->lag_since_ns;
}

/* Seconds since stemedb-walarchiver last rewrote its metrics file, or -1 when the file
 * does not exist. */
static double archiver_metrics_age(const struct gw_config *cfg)
{
	char path[4200];
	struct timespec now;
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", cfg->run_dir, GW_ARCHIVER_METRICS_FILE);
	if (stat(path, &st) != 0)
		return -1;
	clock_gettime(CLOCK_REALTIME, &now);
	return (double)(now.tv_sec - st.st_mtim.tv_sec) +
	       (double)(now.tv_nsec - st.st_mtim.tv_nsec) / 1e9;
}

/* Judges stemedb-walarchiver by what stemedb-api reports and by its metrics file.
 * "disabled": archiving is off. "down": the metrics file is missing or older than the
 * stall time. "stalled": sealed segments have waited that long without the archived
 * offset moving. "archiving": segments wait, but not that long. Else "healthy". */
static json_t *walarchiver_entry(struct gateway *gw, const Stemedb__Ipc__V1__StatsResponse *stats,
                                 enum gw_node_state *state)
{
	uint64_t lag_bytes, lag_segments, waiting_ns;
	const char *name;
	json_t *entry;
	double age;

	*state = GW_NODE_HEALTHY;
	if (stats == NULL) {
		*state = GW_NODE_DEGRADED;
		return json_pack("{s:s, s:s}", "state", "unknown", "error",
		                 "stemedb-api did not report the archive state");
	}
	if (!stats->wal_archive_enabled)
		return json_pack("{s:s}", "state", "disabled");

	gw_node_archive_lag(stats, &lag_bytes, &lag_segments);
	waiting_ns = stalled_ns(gw, stats->archived_watermark, lag_segments);
	age = archiver_metrics_age(gw->config);
	if (age < 0 || age * 1000.0 > (double)gw->config->archive_stall_ms) {
		name = "down";
		*state = GW_NODE_DEGRADED;
	} else if (lag_segments == 0) {
		name = "healthy";
	} else if (waiting_ns >= gw->config->archive_stall_ms * 1000000u) {
		name = "stalled";
		*state = GW_NODE_DEGRADED;
	} else {
		name = "archiving";
	}

	entry = json_pack("{s:s, s:I, s:I, s:I, s:I}", "state", name, "archived_offset",
	                  (json_int_t)stats->archived_watermark, "lag_bytes", (json_int_t)lag_bytes,
	                  "lag_segments", (json_int_t)lag_segments, "waiting_seconds",
	                  (json_int_t)(waiting_ns / 1000000000u));
	json_object_set_new(entry, "metrics_age_seconds", age < 0 ? json_null() : json_real(age));
	return entry;
}

static enum gw_node_state worse(enum gw_node_state a, enum gw_node_state b)
{
	return a > b ? a : b;
}

json_t *gw_node_daemons(struct gateway *gw, const struct gw_node_probe *probe,
                        enum gw_node_state *overall)
{
	enum gw_node_state api_state, archiver_state;
	json_t *daemons = json_object();
	uint64_t uptime = (gw_now_ns() - gw->started_ns) / 1000000000u;

	json_object_set_new(daemons, "api", api_entry(gw, probe, &api_state));
	json_object_set_new(daemons, "gateway",
	                    json_pack("{s:s, s:I, s:s}", "state", "healthy", "uptime_seconds",
	                              (json_int_t)uptime, "version", STEMEDB_VERSION));
	json_object_set_new(daemons, "walarchiver",
	                    walarchiver_entry(gw, gw_node_probe_stats(probe), &archiver_state));
	/* Replication and gossip join when the node is part of a cluster; until those
	 * daemons exist, a node has neither. */
	json_object_set_new(daemons, "replicator", json_pack("{s:s}", "state", "not_configured"));
	json_object_set_new(daemons, "gossipd", json_pack("{s:s}", "state", "not_configured"));

	*overall = worse(api_state, archiver_state);
	return daemons;
}

static json_t *time_or_null(uint64_t unix_ms)
{
	char text[32];

	if (unix_ms == 0)
		return json_null();
	gw_format_unix_ms(unix_ms, text);
	return json_string(text);
}

static const char *rebuild_state_name(Stemedb__Ipc__V1__RebuildState state)
{
	switch (state) {
	case STEMEDB__IPC__V1__REBUILD_STATE__REBUILD_STATE_IDLE:
		return "idle";
	case STEMEDB__IPC__V1__REBUILD_STATE__REBUILD_STATE_RUNNING:
		return "running";
	case STEMEDB__IPC__V1__REBUILD_STATE__REBUILD_STATE_DONE:
		return "done";
	case STEMEDB__IPC__V1__REBUILD_STATE__REBUILD_STATE_FAILED:
		return "failed";
	default:
		break;
	}
	return "unknown";
}

json_t *gw_rebuild_progress_json(const Stemedb__Ipc__V1__RebuildProgress *p)
{
	json_t *out;

	if (p == NULL)
		return json_pack("{s:s}", "state", "idle");
	out = json_pack("{s:s, s:I, s:I, s:o, s:o}", "state", rebuild_state_name(p->state),
	                "assertions_done", (json_int_t)p->assertions_done, "assertions_total",
	                (json_int_t)p->assertions_total, "started_at",
	                time_or_null(p->started_unix_ms), "finished_at",
	                time_or_null(p->finished_unix_ms));
	if (p->error != NULL && p->error[0] != '\0')
		json_object_set_new(out, "error", json_string(p->error));
	return out;
}
