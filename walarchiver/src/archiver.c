/* The archiving loop. A segment is sealed when a newer segment exists, because
 * stemedb-api syncs a full segment before it creates the next one. Segments are shipped
 * oldest first, so the archived watermark (the end offset of the newest archived
 * segment) covers every older segment too. The watermark goes to stemedb-api over IPC
 * after every pass; its retention hook keeps each segment above it. */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "archiver.h"
#include "stemedb/daemon.h"
#include "stemedb/ipc.h"
#include "stemedb/metrics.h"
#include "stemedb/wal_segment.h"

struct archiver_metrics {
	struct metric *archived;
	struct metric *failures;
	struct metric *lag_segments;
	struct metric *lag_bytes;
	struct metric *watermark;
	struct metric *last_success;
};

struct archiver {
	const struct archiver_config *cfg;
	struct ipc_client *ipc;
	char *metrics_path;
	uint64_t watermark;
	bool watermark_loaded; /* the api's stored watermark has been read once */
	bool report_failed;    /* the last watermark report failed (logged once) */
	char failed_segment[WAL_SEGMENT_NAME_LEN + 1];
	char error[1024];

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
};

static struct archiver_metrics metrics;
static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;

static void register_metrics(void)
{
	metrics.archived = metrics_counter("stemedb_wal_archived_segments_total",
	                                   "WAL segments shipped to the archive and verified");
	metrics.failures = metrics_counter("stemedb_wal_archive_failures_total",
	                                   "failed attempts to archive a WAL segment");
	metrics.lag_segments = metrics_gauge("stemedb_wal_archive_lag_segments",
	                                     "sealed WAL segments not archived yet");
	metrics.lag_bytes = metrics_gauge("stemedb_wal_archive_lag_bytes",
	                                  "bytes in sealed WAL segments not archived yet");
	metrics.watermark = metrics_gauge("stemedb_wal_archive_watermark_offset",
	                                  "WAL offset below which every segment is archived");
	metrics.last_success = metrics_gauge("stemedb_wal_archive_last_success_timestamp_seconds",
	                                     "Unix time of the last archived segment");
}

struct archiver *archiver_new(const struct archiver_config *cfg, const char *api_socket,
                              const char *metrics_path)
{
	struct archiver *a = calloc(1, sizeof(*a));
	struct ipc_client_options options = {.socket_path = api_socket};

	if (a == NULL)
		abort();
	pthread_once(&metrics_once, register_metrics);
	a->cfg = cfg;
	a->ipc = api_socket != NULL ? ipc_client_new(&options) : NULL;
	a->metrics_path = metrics_path != NULL ? strdup(metrics_path) : NULL;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->wake, NULL);
	return a;
}

void archiver_free(struct archiver *a)
{
	if (a == NULL)
		return;
	if (a->ipc != NULL)
		ipc_client_free(a->ipc);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->wake);
	free(a->metrics_path);
	free(a);
}

uint64_t archiver_watermark(const struct archiver *a)
{
	return a->watermark;
}

/* Renders every metric and replaces the file with rename, so a reader never sees a
 * half-written file. */
static void write_metrics_file(const struct archiver *a)
{
	char tmp[4200];
	struct buf out;
	FILE *f;

	if (a->metrics_path == NULL)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", a->metrics_path);
	buf_init(&out);
	metrics_render(&out);

	f = fopen(tmp, "we");
	if (f == NULL || fwrite(out.data, 1, out.len, f) != out.len || fclose(f) != 0) {
		log_warn("writing the metrics file %s failed: %s", tmp, strerror(errno));
		if (f != NULL)
			unlink(tmp);
	} else if (rename(tmp, a->metrics_path) != 0) {
		log_warn("rename() of %s to %s failed: %s", tmp, a->metrics_path, strerror(errno));
	}
	buf_free(&out);
}

/* Reads the api's stored watermark once, so that a restarted archiver does not ship
 * the segments again that the api has already recorded as archived. */
static void load_watermark(struct archiver *a)
{
	ipc_envelope *reply = NULL;
	char err[512];

	if (a->watermark_loaded || a->ipc == NULL)
		return;
	if (ipc_call_get_archived_watermark(a->ipc, IPC_DEADLINE_QUICK_MS, &reply, err,
	                                    sizeof(err)) != IPC_OK)
		return;

	a->watermark_loaded = true;
	if (reply->archived_watermark_response->watermark > a->watermark)
		a->watermark = reply->archived_watermark_response->watermark;
	if (!reply->archived_watermark_response->archive_enabled)
		log_warn("stemedb-api runs with STEMEDB_WAL_ARCHIVE=false, so it may delete "
		         "segments before they are archived; set it to true");
	log_info("archived watermark from stemedb-api: %" PRIu64, a->watermark);
	ipc_envelope_free(reply);
}

static void report_watermark(struct archiver *a)
{
	ipc_envelope *reply = NULL;
	char err[512];

	if (a->ipc == NULL)
		return;
	if (ipc_call_set_archived_watermark(a->ipc, a->watermark, IPC_DEADLINE_QUICK_MS, &reply,
	                                    err, sizeof(err)) != IPC_OK) {
		if (!a->report_failed)
			log_warn("reporting the archived watermark %" PRIu64
			         " to stemedb-api failed, retrying every pass: %s",
			         a->watermark, err);
		a->report_failed = true;
		return;
	}
	if (a->report_failed)
		log_info("reported the archived watermark %" PRIu64 " to stemedb-api",
		         a->watermark);
	a->report_failed = false;
	ipc_envelope_free(reply);
}

static void update_lag(const struct archiver *a, const struct wal_segment_list *list)
{
	uint64_t segments = 0, bytes = 0;

	for (size_t i = 0; i + 1 < list->count; i++) {
		char name[WAL_SEGMENT_NAME_LEN + 1], path[4200];
		struct stat st;

		if (list->bases[i + 1] <= a->watermark)
			continue;
		wal_segment_format_name(list->bases[i], name);
		snprintf(path, sizeof(path), "%s/%s", a->cfg->wal_dir, name);
		segments++;
		if (stat(path, &st) == 0)
			bytes += (uint64_t)st.st_size;
	}
	metric_set(metrics.lag_segments, (double)segments);
	metric_set(metrics.lag_bytes, (double)bytes);
	metric_set(metrics.watermark, (double)a->watermark);
}

/* Ships one sealed segment whose successor starts at next_base. */
static enum archiver_result ship_segment(struct archiver *a, uint64_t base, uint64_t next_base)
{
	char path[4200];
	struct archive_segment segment = {.name = a->failed_segment, .base = base};
	enum archiver_result r;
	bool already = false;

	wal_segment_format_name(base, a->failed_segment);
	snprintf(path, sizeof(path), "%s/%s", a->cfg->wal_dir, a->failed_segment);
	segment.path = path;

	r = archive_check_source(&segment, a->error, sizeof(a->error));
	if (r == ARCHIVER_OK && segment.end != next_base) {
		snprintf(a->error, sizeof(a->error),
		         "sealed segment %.600s ends at offset %" PRIu64
		         ", but the next segment starts at %" PRIu64,
		         path, segment.end, next_base);
		r = ARCHIVER_CORRUPT;
	}
	if (r != ARCHIVER_OK)
		return r;

	if (a->cfg->archive_dir != NULL && a->cfg->archive_dir[0] != '\0')
		r = archive_to_dir(&segment, a->cfg->archive_dir, &already, a->error,
		                   sizeof(a->error));
	else
		r = archive_with_command(&segment, a->cfg, a->error, sizeof(a->error));
	if (r != ARCHIVER_OK)
		return r;

	a->watermark = segment.end;
	if (!already)
		metric_inc(metrics.archived);
	metric_set(metrics.last_success, (double)time(NULL));
	log_info("segment %s %s: %" PRIu64 " bytes, offsets %" PRIu64 " to %" PRIu64,
	         a->failed_segment,
	         already ? "was already in the archive with identical bytes"
	                 : "archived and verified",
	         segment.size, base, segment.end);
	return ARCHIVER_OK;
}

int archiver_pass(struct archiver *a, bool *conflict)
{
	struct wal_segment_list list;
	int shipped = 0;

	*conflict = false;
	a->error[0] = '\0';
	load_watermark(a);
	if (wal_segment_list_dir(a->cfg->wal_dir, &list, a->error, sizeof(a->error)) !=
	    WAL_SEGMENT_OK) {
		snprintf(a->failed_segment, sizeof(a->failed_segment), "(listing)");
		return -1;
	}

	for (size_t i = 0; i + 1 < list.count && shipped >= 0; i++) {
		enum archiver_result r;

		if (list.bases[i + 1] <= a->watermark)
			continue;
		r = ship_segment(a, list.bases[i], list.bases[i + 1]);
		if (r != ARCHIVER_OK) {
			*conflict = r == ARCHIVER_CONFLICT || r == ARCHIVER_CORRUPT;
			metric_inc(metrics.failures);
			shipped = -1;
			break;
		}
		shipped++;
		report_watermark(a);
	}

	if (shipped == 0 && a->watermark > 0)
		report_watermark(a);
	update_lag(a, &list);
	write_metrics_file(a);
	wal_segment_list_free(&list);
	return shipped;
}

/* Waits up to ms or until archiver_stop; returns false when stopping. */
static bool wait_or_stop(struct archiver *a, uint64_t ms)
{
	struct timespec deadline;
	bool running;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += (time_t)(ms / 1000);
	deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}

	pthread_mutex_lock(&a->lock);
	while (!a->stopping) {
		if (pthread_cond_timedwait(&a->wake, &a->lock, &deadline) == ETIMEDOUT)
			break;
	}
	running = !a->stopping;
	pthread_mutex_unlock(&a->lock);
	return running;
}

/* Doubles the delay from retry_initial_ms after each failure, up to retry_max_ms. A
 * conflict or a corrupt segment needs an operator, so it waits the maximum delay. */
static uint64_t next_delay(const struct archiver_config *cfg, unsigned failures, bool conflict)
{
	uint64_t delay = cfg->retry_initial_ms;

	if (conflict)
		return cfg->retry_max_ms;
	for (unsigned i = 1; i < failures && delay < cfg->retry_max_ms; i++)
		delay *= 2;
	return delay < cfg->retry_max_ms ? delay : cfg->retry_max_ms;
}

static void *archiver_main(void *arg)
{
	struct archiver *a = arg;
	unsigned failures = 0;
	uint64_t delay;

	do {
		bool conflict = false;
		int shipped = archiver_pass(a, &conflict);

		if (shipped >= 0) {
			if (failures > 0)
				log_info("archiving recovered after %u failed attempts", failures);
			failures = 0;
			daemon_notify_status("archived up to WAL offset %" PRIu64, a->watermark);
			delay = a->cfg->interval_ms;
			continue;
		}

		failures++;
		delay = next_delay(a->cfg, failures, conflict);
		log_error("archiving %s failed (attempt %u%s), retrying in %" PRIu64 " ms: %s",
		          a->failed_segment, failures,
		          conflict ? ", archiving is stopped until an operator fixes this" : "",
		          delay, a->error);
		daemon_notify_status("archiving %s failed: %s", a->failed_segment, a->error);
	} while (wait_or_stop(a, delay));
	return NULL;
}

bool archiver_start(struct archiver *a)
{
	if (pthread_create(&a->thread, NULL, archiver_main, a) != 0) {
		log_error("pthread_create() for the archiving thread failed");
		return false;
	}
	a->thread_started = true;
	return true;
}

void archiver_stop(struct archiver *a)
{
	if (!a->thread_started)
		return;
	pthread_mutex_lock(&a->lock);
	a->stopping = true;
	pthread_cond_signal(&a->wake);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->thread, NULL);
	a->thread_started = false;
}
