/* GET /v1/health and GET /metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

#include "gw_handlers.h"
#include "gw_job.h"
#include "gw_node.h"
#include "stemedb/buf.h"
#include "stemedb/metrics.h"

/* Upper bound on the appended archiver metrics; the file normally has a few hundred
 * bytes. */
#define GW_ARCHIVER_METRICS_MAX (1024 * 1024)

struct health_job {
	struct gw_job job;
	struct gw_node_probe probe;
};

static uint64_t unix_ms_now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

static void health_work(struct gw_job *job)
{
	struct health_job *h = (struct health_job *)job;

	gw_node_probe_run(&h->probe, job->request->gw->config);
}

static void health_finish(struct gw_job *job)
{
	struct health_job *h = (struct health_job *)job;
	const Stemedb__Ipc__V1__StatsResponse *stats = gw_node_probe_stats(&h->probe);
	struct gw_request *r = job->request;
	enum gw_node_state overall;
	char checked_at[32];
	json_t *body, *daemons;

	daemons = gw_node_daemons(r->gw, &h->probe, &overall);
	gw_format_unix_ms(unix_ms_now(), checked_at);
	body = json_pack("{s:s, s:s, s:o}", "status", gw_node_state_name(overall), "checked_at",
	                 checked_at, "daemons", daemons);
	json_object_set_new(body, "node_id",
	                    stats != NULL ? json_string(stats->node_id) : json_null());

	gw_node_probe_free(&h->probe);
	free(h);
	gw_reply_json(r, overall == GW_NODE_HEALTHY ? 200 : 503, body);
}

void gw_handle_health(struct gw_request *r)
{
	struct health_job *h = calloc(1, sizeof(*h));

	if (h == NULL)
		abort();
	h->job.request = r;
	h->job.work = health_work;
	h->job.finish = health_finish;
	if (!gw_job_start(&h->job)) {
		free(h);
		gw_reply_error(r, 503, "unavailable", NULL,
		               "the gateway has %d calls to stemedb-api open already; retry later",
		               GW_JOBS_MAX);
	}
}

/* Appends walarchiver.prom from the run directory. stemedb-walarchiver has no HTTP
 * port and replaces that file with a rename after every pass, so it is read whole or
 * not at all. A missing file (archiving off, or the archiver not started) adds
 * nothing. */
static void append_archiver_metrics(const struct gw_config *cfg, struct buf *out)
{
	char path[4200], chunk[4096];
	size_t total = 0, n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", cfg->run_dir, GW_ARCHIVER_METRICS_FILE);
	f = fopen(path, "re");
	if (f == NULL)
		return;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && total < GW_ARCHIVER_METRICS_MAX) {
		buf_append(out, chunk, n);
		total += n;
	}
	fclose(f);
	if (total > 0 && out->data[out->len - 1] != '\n')
		buf_append(out, "\n", 1);
}

void gw_handle_metrics(struct gw_request *r)
{
	struct buf text;

	buf_init(&text);
	metrics_render(&text);
	append_archiver_metrics(r->gw->config, &text);
	gw_reply_bytes(r, 200, "text/plain; version=0.0.4; charset=utf-8", text.data, text.len);
	buf_free(&text);
}
