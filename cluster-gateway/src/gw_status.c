/* GET /v1/cluster/status and its alias GET /v1/admin/cluster. */
#include <stdlib.h>

#include "gw_handlers.h"
#include "gw_job.h"
#include "gw_node.h"

struct status_job {
	struct gw_job job;
	struct gw_node_probe probe;
};

static void status_work(struct gw_job *job)
{
	struct status_job *s = (struct status_job *)job;

	gw_node_probe_run(&s->probe, job->request->gw->config);
}

static json_t *node_json(const struct gateway *gw, const Stemedb__Ipc__V1__StatsResponse *stats)
{
	const struct gw_config *cfg = gw->config;

	return json_pack("{s:o, s:o, s:s, s:s, s:s, s:s}", "node_id",
	                 stats != NULL ? json_string(stats->node_id) : json_null(), "version",
	                 stats != NULL ? json_string(stats->version) : json_null(), "api_listen",
	                 cfg->api_listen, "gateway_listen", cfg->listen, "api_socket",
	                 cfg->api_socket, "data_dir", cfg->data_dir);
}

static json_t *wal_json(const Stemedb__Ipc__V1__StatsResponse *stats)
{
	uint64_t lag_bytes, lag_segments, sealed_bytes = 0;

	gw_node_archive_lag(stats, &lag_bytes, &lag_segments);
	for (size_t i = 0; i < stats->n_sealed_segments; i++)
		sealed_bytes += stats->sealed_segments[i]->size_bytes;

	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:s, s:b, s:I, s:I, s:I}", "end_offset",
	                 (json_int_t)stats->wal_end_offset, "applied_offset",
	                 (json_int_t)stats->wal_applied_offset, "segments",
	                 (json_int_t)stats->wal_segment_count, "sealed_segments",
	                 (json_int_t)stats->n_sealed_segments, "sealed_bytes",
	                 (json_int_t)sealed_bytes, "durability", stats->durability,
	                 "archive_enabled", stats->wal_archive_enabled, "archived_offset",
	                 (json_int_t)stats->archived_watermark, "archive_lag_bytes",
	                 (json_int_t)lag_bytes, "archive_lag_segments", (json_int_t)lag_segments);
}

static void status_finish(struct gw_job *job)
{
	struct status_job *s = (struct status_job *)job;
	const Stemedb__Ipc__V1__StatsResponse *stats = gw_node_probe_stats(&s->probe);
	struct gw_request *r = job->request;
	enum gw_node_state overall;
	json_t *body, *daemons;

	daemons = gw_node_daemons(r->gw, &s->probe, &overall);
	body = json_pack("{s:s, s:{s:s, s:i}, s:o, s:o}", "status", gw_node_state_name(overall),
	                 "cluster", "mode", "single_node", "nodes", 1, "node",
	                 node_json(r->gw, stats), "daemons", daemons);
	if (stats != NULL) {
		json_object_set_new(body, "wal", wal_json(stats));
		json_object_set_new(body, "storage",
		                    json_pack("{s:I, s:I}", "assertions",
		                              (json_int_t)stats->assertion_count, "disk_bytes",
		                              (json_int_t)stats->disk_bytes));
		json_object_set_new(body, "index_rebuild",
		                    gw_rebuild_progress_json(stats->index_rebuild));
	} else {
		json_object_set_new(body, "wal", json_null());
		json_object_set_new(body, "storage", json_null());
		json_object_set_new(body, "index_rebuild", json_null());
	}

	gw_node_probe_free(&s->probe);
	free(s);
	gw_reply_json(r, stats != NULL ? 200 : 503, body);
}

void gw_handle_cluster_status(struct gw_request *r)
{
	struct status_job *s = calloc(1, sizeof(*s));

	if (s == NULL)
		abort();
	s->job.request = r;
	s->job.work = status_work;
	s->job.finish = status_finish;
	if (!gw_job_start(&s->job)) {
		free(s);
		gw_reply_error(r, 503, "unavailable", NULL,
		               "the gateway has %d calls to stemedb-api open already; retry later",
		               GW_JOBS_MAX);
	}
}
