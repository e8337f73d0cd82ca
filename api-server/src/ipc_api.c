/* api.sock service of stemedb-api. Quick requests get their reply on the service's event
 * loop. Checkpoints and compaction run on a job thread each and reply through
 * ipc_server_send when done, so a long job never stalls the loop, the watchdog pings or
 * the event stream. The index rebuild runs on its own thread and reports progress in
 * the statistics. */

#include "ipc_api.h"
#include "ipc_breakers.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ipc_keys.h"
#include "quarantine.h"
#include "stemedb/daemon.h"
#include "stemedb/hex.h"
#include "stemedb/ipc.h"
#include "stemedb/log.h"
#include "stemedb/metrics.h"
#include "trust.h"
#include "wal.h"

#ifndef STEMEDB_VERSION
#define STEMEDB_VERSION "0.1.0"
#endif

#define BODY(name)          STEMEDB__IPC__V1__ENVELOPE__BODY_##name
#define ERR(name)           STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_##name
#define METRICS_INTERVAL_MS 1000
#define MAX_SEGMENTS        16384

static struct {
	struct metric *connections;
	struct metric_family *frames_rejected;
	struct metric *archived_offset;
	struct metric *archive_lag;
} metrics;

/* A job thread that replies to one deferred request. */
struct job {
	struct ipc_api *api;
	pthread_t thread;
	atomic_bool busy;
	bool joinable;
	uint64_t conn_id;
	uint64_t request_id;
	char target_dir[4096];
};

struct ipc_api {
	struct api_state *state;
	struct event_base *base;
	struct ipc_server *server;
	struct daemon_watchdog *watchdog;
	struct event *metrics_timer;
	pthread_t thread;
	atomic_bool stopping; /* checked by the timer, in case a loopbreak came too early */
	_Atomic uint64_t watermark;

	struct job checkpoint, compaction;

	pthread_t rebuild_thread;
	bool rebuild_joinable;
	atomic_int rebuild_state; /* Stemedb__Ipc__V1__RebuildState */
	_Atomic uint64_t rebuild_done, rebuild_total, rebuild_started_ms, rebuild_finished_ms;
	pthread_mutex_t rebuild_lock; /* guards rebuild_error */
	char rebuild_error[256];

	/* Held by a trust outcome request for as long as it uses the commit pipeline, so
	 * that ipc_api_close_writes returns only when no request can reach the pipeline. */
	pthread_mutex_t write_lock;
	bool writes_closed; /* guarded by write_lock */
};

/* Sealed and active WAL segments, from the names and sizes in the WAL directory. */
struct wal_listing {
	uint64_t bases[MAX_SEGMENTS];
	uint64_t sizes[MAX_SEGMENTS];
	size_t count;
	uint64_t file_bytes;
};

static const char *const REJECT_REASONS[] = {"zero_length",       "too_large",
                                             "bad_envelope",      "truncated",
                                             "unauthorized_peer", "subscriber_overflow"};

void ipc_api_register_metrics(void)
{
	static const char *const reason[] = {"reason", NULL};

	metrics.connections =
	        metrics_gauge("stemedb_ipc_connections", "Open connections on api.sock.");
	metrics.frames_rejected = metrics_counter_family(
	        "stemedb_ipc_frames_rejected_total",
	        "IPC connections closed for a malformed, oversized or truncated frame, an "
	        "unauthorized peer or a subscriber that fell behind.",
	        reason);
	/* Every reason is listed from the start, so that rate() and alerts see a 0. */
	for (size_t i = 0; i < sizeof(REJECT_REASONS) / sizeof(REJECT_REASONS[0]); i++) {
		const char *labels[1] = {REJECT_REASONS[i]};

		metrics_family_child(metrics.frames_rejected, labels);
	}
	metrics.archived_offset = metrics_gauge(
	        "stemedb_wal_archived_offset",
	        "Global WAL offset up to which sealed segments are archived and verified.");
	metrics.archive_lag = metrics_gauge(
	        "stemedb_wal_archive_lag_bytes",
	        "Bytes of sealed WAL segments not archived yet; 0 when archiving is off.");
}

static uint64_t unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int compare_bases(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static bool parse_segment_name(const char *name, uint64_t *base)
{
	char *end;

	if (strlen(name) != 20 || strcmp(name + 16, ".wal") != 0)
		return false;
	for (int i = 0; i < 16; i++) {
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	}
	*base = strtoull(name, &end, 16);
	return end == name + 16;
}

/* Lists the segment files of dir in ascending base order, with their sizes. */
static bool list_wal(const char *dir, struct wal_listing *out)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4400];
	struct stat st;

	out->count = 0;
	out->file_bytes = 0;
	if (d == NULL) {
		log_warn("opendir(\"%s\") of the WAL directory failed: %s", dir, strerror(errno));
		return false;
	}
	while ((e = readdir(d)) != NULL && out->count < MAX_SEGMENTS) {
		if (parse_segment_name(e->d_name, &out->bases[out->count]))
			out->count++;
	}
	closedir(d);
	qsort(out->bases, out->count, sizeof(uint64_t), compare_bases);

	for (size_t i = 0; i < out->count; i++) {
		snprintf(path, sizeof(path), "%s/%016" PRIx64 ".wal", dir, out->bases[i]);
		out->sizes[i] = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
		out->file_bytes += out->sizes[i];
	}
	return true;
}

/* Bytes of sealed segments above the watermark. Segment i ends where i + 1 begins. */
static uint64_t archive_lag(const struct wal_listing *w, uint64_t watermark)
{
	uint64_t lag = 0;

	for (size_t i = 0; i + 1 < w->count; i++) {
		uint64_t start = w->bases[i] > watermark ? w->bases[i] : watermark;

		if (w->bases[i + 1] > start)
			lag += w->bases[i + 1] - start;
	}
	return lag;
}

static struct commit_pipeline *pipeline_of(const struct ipc_api *api)
{
	return atomic_load_explicit(&api->state->pipeline, memory_order_acquire);
}

static void update_archive_metrics(struct ipc_api *api, const struct wal_listing *w)
{
	uint64_t watermark = atomic_load(&api->watermark);

	metric_set(metrics.archived_offset, (double)watermark);
	metric_set(metrics.archive_lag,
	           api->state->config->wal_archive ? (double)archive_lag(w, watermark) : 0.0);
}

static void metrics_tick(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_api *api = arg;
	static struct wal_listing listing;

	(void)fd, (void)what;
	if (atomic_load(&api->stopping)) {
		event_base_loopbreak(api->base);
		return;
	}
	if (list_wal(api->state->config->wal_dir, &listing))
		update_archive_metrics(api, &listing);
}

/* ---- quick requests ---- */

static void fill_rebuild_progress(struct ipc_api *api, Stemedb__Ipc__V1__RebuildProgress *p)
{
	p->state = (Stemedb__Ipc__V1__RebuildState)atomic_load(&api->rebuild_state);
	p->assertions_done = atomic_load(&api->rebuild_done);
	p->assertions_total = atomic_load(&api->rebuild_total);
	p->started_unix_ms = atomic_load(&api->rebuild_started_ms);
	p->finished_unix_ms = atomic_load(&api->rebuild_finished_ms);
	pthread_mutex_lock(&api->rebuild_lock);
	p->error = strdup(api->rebuild_error);
	pthread_mutex_unlock(&api->rebuild_lock);
	if (p->error == NULL)
		abort();
}

static void fill_sealed_segments(const struct wal_listing *w, Stemedb__Ipc__V1__StatsResponse *out,
                                 Stemedb__Ipc__V1__SealedSegment *segments,
                                 Stemedb__Ipc__V1__SealedSegment **pointers, char (*names)[24])
{
	size_t sealed = w->count > 0 ? w->count - 1 : 0;

	for (size_t i = 0; i < sealed; i++) {
		stemedb__ipc__v1__sealed_segment__init(&segments[i]);
		snprintf(names[i], 24, "%016" PRIx64 ".wal", w->bases[i]);
		segments[i].base_offset = w->bases[i];
		segments[i].size_bytes = w->sizes[i];
		segments[i].file_name = names[i];
		pointers[i] = &segments[i];
	}
	out->n_sealed_segments = sealed;
	out->sealed_segments = pointers;
}

static void reply_stats(struct ipc_api *api, struct ipc_conn *conn, uint64_t request_id)
{
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__StatsResponse stats = STEMEDB__IPC__V1__STATS_RESPONSE__INIT;
	Stemedb__Ipc__V1__RebuildProgress progress = STEMEDB__IPC__V1__REBUILD_PROGRESS__INIT;
	static struct wal_listing w;
	Stemedb__Ipc__V1__SealedSegment *segments;
	Stemedb__Ipc__V1__SealedSegment **pointers;
	char(*names)[24];
	struct commit_pipeline *p = pipeline_of(api);
	struct commit_stats cs = {0};

	list_wal(api->state->config->wal_dir, &w);
	segments = calloc(w.count + 1, sizeof(*segments));
	pointers = calloc(w.count + 1, sizeof(*pointers));
	names = calloc(w.count + 1, 24);
	if (segments == NULL || pointers == NULL || names == NULL)
		abort();
	update_archive_metrics(api, &w);
	if (p != NULL)
		commit_get_stats(p, &cs);

	stats.assertion_count = store_assertion_count(api->state->store);
	stats.wal_end_offset = cs.wal_end_offset;
	stats.wal_segment_count = w.count;
	fill_sealed_segments(&w, &stats, segments, pointers, names);
	stats.disk_bytes = store_disk_bytes(api->state->store) + w.file_bytes;
	stats.uptime_seconds = (http_now_ns() - api->state->started_ns) / 1000000000u;
	stats.ready = p != NULL && !atomic_load(&api->state->recovery_failed);
	stats.healthy =
	        !atomic_load(&api->state->recovery_failed) && (p == NULL || commit_healthy(p));
	stats.durability = api->state->config->durability_name;
	stats.node_id = api->state->node_id;
	stats.version = STEMEDB_VERSION;
	fill_rebuild_progress(api, &progress);
	stats.index_rebuild = &progress;
	stats.archived_watermark = atomic_load(&api->watermark);
	stats.wal_archive_enabled = api->state->config->wal_archive;
	store_get_cursor(api->state->store, &stats.wal_applied_offset);

	reply.request_id = request_id;
	reply.body_case = BODY(STATS_RESPONSE);
	reply.stats_response = &stats;
	ipc_conn_reply(conn, &reply);
	free(progress.error);
	free(segments);
	free(pointers);
	free(names);
}

static void reply_ready(struct ipc_api *api, struct ipc_conn *conn, uint64_t request_id)
{
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__ReadyResponse ready = STEMEDB__IPC__V1__READY_RESPONSE__INIT;
	struct commit_pipeline *p = pipeline_of(api);
	bool failed = atomic_load(&api->state->recovery_failed);

	ready.ready = p != NULL && !failed;
	ready.healthy = !failed && (p == NULL || commit_healthy(p));
	if (failed)
		ready.status = "recovery failed";
	else if (p == NULL)
		ready.status = "recovering";
	else
		ready.status = ready.healthy ? "ready" : "unhealthy";

	reply.request_id = request_id;
	reply.body_case = BODY(READY_RESPONSE);
	reply.ready_response = &ready;
	ipc_conn_reply(conn, &reply);
}

static void reply_get_assertion(struct ipc_api *api, struct ipc_conn *conn,
                                const ipc_envelope *request)
{
	const Stemedb__Ipc__V1__GetAssertionRequest *req = request->get_assertion_request;
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__GetAssertionResponse res = STEMEDB__IPC__V1__GET_ASSERTION_RESPONSE__INIT;
	struct assertion a;
	struct hlc_stamp hlc;
	struct buf envelope;
	enum store_result rc;

	if (req->hash.len != STEMEDB_HASH_LEN) {
		ipc_conn_reply_error(conn, request->request_id, ERR(INVALID_ARGUMENT),
		                     "hash is %zu bytes long; send the 32-byte assertion hash",
		                     req->hash.len);
		return;
	}
	buf_init(&envelope);
	rc = store_get_envelope(api->state->store, req->hash.data, &envelope);
	if (rc == STORE_ERROR) {
		ipc_conn_reply_error(conn, request->request_id, ERR(INTERNAL),
		                     "reading the assertion failed; see the stemedb-api log");
		goto done;
	}

	assertion_init(&a);
	res.found =
	        rc == STORE_OK && assertion_decode_envelope(envelope.data, envelope.len, &a, &hlc);
	assertion_free(&a);
	if (res.found) {
		res.envelope.data = envelope.data;
		res.envelope.len = envelope.len;
		res.hlc_wall_ms = hlc.wall_ms;
		res.hlc_logical = hlc.logical;
		res.hlc_node_id.data = hlc.node_id;
		res.hlc_node_id.len = sizeof(hlc.node_id);
	}
	reply.request_id = request->request_id;
	reply.body_case = BODY(GET_ASSERTION_RESPONSE);
	reply.get_assertion_response = &res;
	ipc_conn_reply(conn, &reply);
done:
	buf_free(&envelope);
}

static void fill_watermark(struct ipc_api *api, Stemedb__Ipc__V1__ArchivedWatermarkResponse *res)
{
	struct commit_pipeline *p = pipeline_of(api);
	static struct wal_listing w;
	struct commit_stats cs = {0};

	if (p != NULL)
		commit_get_stats(p, &cs);
	list_wal(api->state->config->wal_dir, &w);
	update_archive_metrics(api, &w);
	res->watermark = atomic_load(&api->watermark);
	res->archive_enabled = api->state->config->wal_archive;
	res->wal_end_offset = cs.wal_end_offset;
	res->sealed_end_offset = w.count > 1 ? w.bases[w.count - 1] : 0;
}

static void reply_watermark(struct ipc_api *api, struct ipc_conn *conn, uint64_t request_id)
{
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__ArchivedWatermarkResponse res =
	        STEMEDB__IPC__V1__ARCHIVED_WATERMARK_RESPONSE__INIT;

	fill_watermark(api, &res);
	reply.request_id = request_id;
	reply.body_case = BODY(ARCHIVED_WATERMARK_RESPONSE);
	reply.archived_watermark_response = &res;
	ipc_conn_reply(conn, &reply);
}

/* Moves the watermark forward, never back, and persists it before replying. */
static void set_watermark(struct ipc_api *api, struct ipc_conn *conn, const ipc_envelope *request)
{
	uint64_t wanted = request->set_archived_watermark_request->watermark;
	struct commit_pipeline *p = pipeline_of(api);
	struct commit_stats cs;
	char err[256];

	if (p == NULL) {
		ipc_conn_reply_error(conn, request->request_id, ERR(UNAVAILABLE),
		                     "WAL replay is still running; retry when ready");
		return;
	}
	commit_get_stats(p, &cs);
	if (wanted > cs.wal_end_offset) {
		ipc_conn_reply_error(conn, request->request_id, ERR(INVALID_ARGUMENT),
		                     "watermark %" PRIu64 " is past the WAL end offset %" PRIu64
		                     "; report only offsets of archived segments",
		                     wanted, cs.wal_end_offset);
		return;
	}
	if (wanted > atomic_load(&api->watermark)) {
		if (store_set_archived_watermark(api->state->store, wanted, err, sizeof(err)) !=
		    STORE_OK) {
			ipc_conn_reply_error(conn, request->request_id, ERR(INTERNAL), "%s", err);
			return;
		}
		atomic_store(&api->watermark, wanted);
		log_debug("archived WAL watermark moved to %" PRIu64, wanted);
	}
	reply_watermark(api, conn, request->request_id);
}

static void reply_subscribe(struct ipc_api *api, struct ipc_conn *conn, uint64_t request_id)
{
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__SubscribeResponse res = STEMEDB__IPC__V1__SUBSCRIBE_RESPONSE__INIT;
	struct commit_pipeline *p = pipeline_of(api);
	struct commit_stats cs = {0};

	ipc_conn_subscribe(conn);
	if (p != NULL)
		commit_get_stats(p, &cs);
	res.wal_end_offset = cs.wal_end_offset;
	reply.request_id = request_id;
	reply.body_case = BODY(SUBSCRIBE_RESPONSE);
	reply.subscribe_response = &res;
	ipc_conn_reply(conn, &reply);
}

/* ---- jobs: checkpoint, compaction, index rebuild ---- */

static void job_reply_error(struct job *job, Stemedb__Ipc__V1__ErrorCode code, const char *message)
{
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__Error error = STEMEDB__IPC__V1__ERROR__INIT;

	error.code = code;
	error.message = (char *)message;
	reply.request_id = job->request_id;
	reply.body_case = BODY(ERROR);
	reply.error = &error;
	ipc_server_send(job->api->server, job->conn_id, &reply);
}

static void *checkpoint_main(void *arg)
{
	struct job *job = arg;
	struct ipc_api *api = job->api;
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__CreateCheckpointResponse res =
	        STEMEDB__IPC__V1__CREATE_CHECKPOINT_RESPONSE__INIT;
	char err[512];

	if (store_checkpoint(api->state->store, job->target_dir, &res.wal_cursor,
	                     &res.assertion_count, err, sizeof(err)) != STORE_OK) {
		job_reply_error(job, ERR(INTERNAL), err);
		goto done;
	}
	res.created_unix_ms = unix_ms();
	res.node_id = api->state->node_id;
	log_info("created a checkpoint in %s at WAL offset %" PRIu64 " with %" PRIu64 " assertions",
	         job->target_dir, res.wal_cursor, res.assertion_count);
	reply.request_id = job->request_id;
	reply.body_case = BODY(CREATE_CHECKPOINT_RESPONSE);
	reply.create_checkpoint_response = &res;
	ipc_server_send(api->server, job->conn_id, &reply);
done:
	atomic_store(&job->busy, false);
	return NULL;
}

static void *compaction_main(void *arg)
{
	struct job *job = arg;
	struct ipc_api *api = job->api;
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__CompactResponse res = STEMEDB__IPC__V1__COMPACT_RESPONSE__INIT;
	uint64_t started = http_now_ns();

	res.disk_bytes_before = store_disk_bytes(api->state->store);
	store_compact(api->state->store);
	res.disk_bytes_after = store_disk_bytes(api->state->store);
	res.duration_ms = (http_now_ns() - started) / 1000000u;

	reply.request_id = job->request_id;
	reply.body_case = BODY(COMPACT_RESPONSE);
	reply.compact_response = &res;
	ipc_server_send(api->server, job->conn_id, &reply);
	atomic_store(&job->busy, false);
	return NULL;
}

/* Starts fn on job's thread for the request, or replies BUSY when one runs. */
static void job_start(struct job *job, struct ipc_conn *conn, uint64_t request_id,
                      void *(*fn)(void *), const char *what)
{
	if (atomic_load(&job->busy)) {
		ipc_conn_reply_error(conn, request_id, ERR(BUSY),
		                     "a %s is already running; retry when it has finished", what);
		return;
	}
	if (job->joinable)
		pthread_join(job->thread, NULL);
	job->joinable = false;
	job->conn_id = ipc_conn_id(conn);
	job->request_id = request_id;
	atomic_store(&job->busy, true);
	if (pthread_create(&job->thread, NULL, fn, job) != 0) {
		atomic_store(&job->busy, false);
		log_error("pthread_create for a %s failed", what);
		ipc_conn_reply_error(conn, request_id, ERR(INTERNAL),
		                     "could not start a thread for the %s", what);
		return;
	}
	job->joinable = true;
}

/* Accepts an absolute path whose parent exists and which does not exist yet. */
static bool checkpoint_target_valid(const char *dir, char *message, size_t size)
{
	char parent[4096];
	struct stat st;
	char *slash;

	if (dir == NULL || dir[0] != '/' || strlen(dir) >= sizeof(parent)) {
		snprintf(message, size, "target_dir \"%.400s\" is not an absolute path; give one",
		         dir != NULL ? dir : "");
		return false;
	}
	if (lstat(dir, &st) == 0) {
		snprintf(message, size, "target_dir %.400s already exists; give a new directory",
		         dir);
		return false;
	}
	snprintf(parent, sizeof(parent), "%s", dir);
	slash = strrchr(parent, '/');
	if (slash == parent)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(message, size, "the parent directory %.400s of target_dir does not exist",
		         parent);
		return false;
	}
	return true;
}

static void start_checkpoint(struct ipc_api *api, struct ipc_conn *conn,
                             const ipc_envelope *request)
{
	const char *dir = request->create_checkpoint_request->target_dir;
	char message[512];

	if (pipeline_of(api) == NULL) {
		ipc_conn_reply_error(conn, request->request_id, ERR(UNAVAILABLE),
		                     "WAL replay is still running; retry when ready");
		return;
	}
	if (!checkpoint_target_valid(dir, message, sizeof(message))) {
		ipc_conn_reply_error(conn, request->request_id, ERR(INVALID_ARGUMENT), "%s",
		                     message);
		return;
	}
	if (!atomic_load(&api->checkpoint.busy))
		snprintf(api->checkpoint.target_dir, sizeof(api->checkpoint.target_dir), "%s", dir);
	job_start(&api->checkpoint, conn, request->request_id, checkpoint_main, "checkpoint");
}

static void *rebuild_main(void *arg)
{
	struct ipc_api *api = arg;
	char err[256] = "";
	bool ok;

	log_info("index rebuild started over %" PRIu64 " assertions",
	         atomic_load(&api->rebuild_total));
	ok = store_rebuild_index(api->state->store, &api->rebuild_done, err, sizeof(err)) ==
	     STORE_OK;
	pthread_mutex_lock(&api->rebuild_lock);
	snprintf(api->rebuild_error, sizeof(api->rebuild_error), "%s", err);
	pthread_mutex_unlock(&api->rebuild_lock);
	atomic_store(&api->rebuild_finished_ms, unix_ms());
	atomic_store(&api->rebuild_state,
	             ok ? STEMEDB__IPC__V1__REBUILD_STATE__REBUILD_STATE_DONE
	                : STEMEDB__IPC__V1__REBUILD_STATE__REBUILD_STATE_FAILED);
	if (!ok)
		log_error("index rebuild failed: %s", err);
	return NULL;
}

static void start_rebuild(struct ipc_api *api, struct ipc_conn *conn, uint64_t request_id)
{
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__RebuildIndexesResponse res =
	        STEMEDB__IPC__V1__REBUILD_INDEXES_RESPONSE__INIT;
	Stemedb__Ipc__V1__RebuildProgress progress = STEMEDB__IPC__V1__REBUILD_PROGRESS__INIT;

	if (atomic_load(&api->rebuild_state) ==
	    STEMEDB__IPC__V1__REBUILD_STATE__REBUILD_STATE_RUNNING) {
		ipc_conn_reply_error(conn, request_id, ERR(BUSY),
		                     "an index rebuild is already running; follow its progress in "
		                     "the statistics");
		return;
	}
	if (api->rebuild_joinable)
		pthread_join(api->rebuild_thread, NULL);
	api->rebuild_joinable = false;
	atomic_store(&api->rebuild_done, 0);
	atomic_store(&api->rebuild_total, store_assertion_count(api->state->store));
	atomic_store(&api->rebuild_started_ms, unix_ms());
	atomic_store(&api->rebuild_finished_ms, 0);
	atomic_store(&api->rebuild_state, STEMEDB__IPC__V1__REBUILD_STATE__REBUILD_STATE_RUNNING);
	if (pthread_create(&api->rebuild_thread, NULL, rebuild_main, api) != 0) {
		atomic_store(&api->rebuild_state,
		             STEMEDB__IPC__V1__REBUILD_STATE__REBUILD_STATE_FAILED);
		ipc_conn_reply_error(conn, request_id, ERR(INTERNAL),
		                     "could not start the index rebuild thread");
		return;
	}
	api->rebuild_joinable = true;

	fill_rebuild_progress(api, &progress);
	res.progress = &progress;
	reply.request_id = request_id;
	reply.body_case = BODY(REBUILD_INDEXES_RESPONSE);
	reply.rebuild_indexes_response = &res;
	ipc_conn_reply(conn, &reply);
	free(progress.error);
}

/* A trust outcome record on its way through the commit pipeline. The IPC loop waits on
 * done until the writer thread completes the request. */
struct outcome_commit {
	struct commit_request request;
	pthread_mutex_t lock;
	pthread_cond_t done;
	bool finished;
};

static void on_outcome_committed(struct commit_request *request)
{
	struct outcome_commit *c = request->owner;

	pthread_mutex_lock(&c->lock);
	c->finished = true;
	pthread_cond_signal(&c->done);
	pthread_mutex_unlock(&c->lock);
}

/* Builds the record from the request and checks its fields, signer and signature.
 * Replies with an error and returns false when one is invalid. */
static bool build_outcome_record(struct ipc_api *api, struct ipc_conn *conn,
                                 const ipc_envelope *request, struct record *r,
                                 uint8_t id[STEMEDB_HASH_LEN])
{
	const Stemedb__Ipc__V1__RecordTrustOutcomeRequest *req =
	        request->record_trust_outcome_request;
	struct trust_outcome_record *t = &r->u.trust_outcome;
	size_t note_len = req->note != NULL ? strlen(req->note) : 0;
	const char *field = NULL;
	char message[256];
	size_t bad_index;

	if (req->agent_id.len != STEMEDB_AGENT_ID_LEN || req->signer.len != STEMEDB_AGENT_ID_LEN ||
	    req->signature.len != STEMEDB_SIGNATURE_LEN) {
		ipc_conn_reply_error(
		        conn, request->request_id, ERR(INVALID_ARGUMENT),
		        "agent_id is %zu bytes, signer %zu and signature %zu; send a "
		        "32-byte agent id, a 32-byte signer key and a 64-byte signature "
		        "(the gateway needs STEMEDB_ADMIN_SIGNING_KEY_FILE)",
		        req->agent_id.len, req->signer.len, req->signature.len);
		return false;
	}
	memcpy(t->agent_id, req->agent_id.data, STEMEDB_AGENT_ID_LEN);
	t->accurate = req->accurate;
	t->timestamp = req->timestamp;
	record_set_string(&t->note, &t->note_len, note_len > 0 ? req->note : "", note_len);
	if (!record_validate(r, &field, message, sizeof(message))) {
		ipc_conn_reply_error(conn, request->request_id, ERR(INVALID_ARGUMENT), "%s",
		                     message);
		return false;
	}

	if (!api_config_is_trust_authority(api->state->config, req->signer.data)) {
		char signer[2 * STEMEDB_AGENT_ID_LEN + 1];

		hex_encode(req->signer.data, STEMEDB_AGENT_ID_LEN, signer);
		log_warn("rejected a trust outcome signed by %s, which is not in "
		         "STEMEDB_TRUST_AUTHORITY_KEYS",
		         signer);
		ipc_conn_reply_error(
		        conn, request->request_id, ERR(INVALID_ARGUMENT),
		        "signer %s is not a trust authority of this node; add its public "
		        "key to STEMEDB_TRUST_AUTHORITY_KEYS of stemedb-api",
		        signer);
		return false;
	}
	memcpy(r->signers[0].agent_id, req->signer.data, STEMEDB_AGENT_ID_LEN);
	memcpy(r->signers[0].signature, req->signature.data, STEMEDB_SIGNATURE_LEN);
	r->signer_count = 1;
	if (!record_id(r, id) || record_verify(r, id, &bad_index) != RECORD_VALID) {
		ipc_conn_reply_error(
		        conn, request->request_id, ERR(INVALID_ARGUMENT),
		        "the signature does not verify over \"stemedb-trust-outcome-v1\" "
		        "and the record id; sign the record exactly as docs/formats.md "
		        "describes");
		return false;
	}
	return true;
}

/* Writes an admin's trust outcome record to the WAL through the commit pipeline, like a
 * vote, and replies once the record is durable (with STEMEDB_DURABILITY=eventual, once
 * it is written) and applied to the trust view.
 * NOTE: the IPC loop waits for the commit group, which takes one WAL sync. Outcomes are
 * rare admin requests, so the watchdog and the event stream pause only that long. */
static void record_trust_outcome(struct ipc_api *api, struct ipc_conn *conn,
                                 const ipc_envelope *request)
{
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__RecordTrustOutcomeResponse res =
	        STEMEDB__IPC__V1__RECORD_TRUST_OUTCOME_RESPONSE__INIT;
	struct commit_pipeline *pipeline;
	struct outcome_commit c = {.finished = false};
	struct trust_summary summary;
	char id_hex[2 * STEMEDB_HASH_LEN + 1];
	struct record r;

	record_init(&r, STEMEDB_RECORD_TRUST_OUTCOME);
	if (!build_outcome_record(api, conn, request, &r, c.request.hash))
		goto done;
	hex_encode(c.request.hash, STEMEDB_HASH_LEN, id_hex);
	pthread_mutex_lock(&api->write_lock);
	pipeline = api->writes_closed ? NULL : atomic_load(&api->state->pipeline);
	if (pipeline == NULL || !commit_healthy(pipeline)) {
		const char *state = api->writes_closed ? "shutting down"
		                    : pipeline == NULL ? "replaying its WAL"
		                                       : "unhealthy after a WAL failure";

		pthread_mutex_unlock(&api->write_lock);
		log_warn("rejected trust outcome %s because stemedb-api is %s", id_hex, state);
		ipc_conn_reply_error(conn, request->request_id, ERR(UNAVAILABLE),
		                     "stemedb-api is %s; retry when GET /v1/ready returns 200",
		                     state);
		goto done;
	}

	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.done, NULL);
	c.request.record = &r;
	c.request.on_complete = on_outcome_committed;
	c.request.owner = &c;
	commit_submit(pipeline, &c.request);
	pthread_mutex_lock(&c.lock);
	while (!c.finished)
		pthread_cond_wait(&c.done, &c.lock);
	pthread_mutex_unlock(&c.lock);
	pthread_mutex_unlock(&api->write_lock);
	pthread_cond_destroy(&c.done);
	pthread_mutex_destroy(&c.lock);

	if (c.request.status == COMMIT_FAILED ||
	    trust_of_agent(api->state->store, r.u.trust_outcome.agent_id, (uint64_t)time(NULL),
	                   &summary) != STORE_OK) {
		log_error("trust outcome %s was not stored: %s", id_hex,
		          c.request.status == COMMIT_FAILED ? "the WAL write failed"
		                                            : "reading the trust view failed");
		ipc_conn_reply_error(conn, request->request_id, ERR(INTERNAL),
		                     "storing trust outcome %s failed; see the stemedb-api log and "
		                     "retry",
		                     id_hex);
		goto done;
	}
	res.created = c.request.status == COMMIT_CREATED;
	log_info("recorded trust outcome %s (%s, created: %s, trust now %.4f)", id_hex,
	         r.u.trust_outcome.accurate ? "accurate" : "inaccurate", res.created ? "yes" : "no",
	         summary.trust);
	res.outcome_id.data = c.request.hash;
	res.outcome_id.len = STEMEDB_HASH_LEN;
	res.trust = summary.trust;
	reply.request_id = request->request_id;
	reply.body_case = BODY(RECORD_TRUST_OUTCOME_RESPONSE);
	reply.record_trust_outcome_response = &res;
	ipc_conn_reply(conn, &reply);

done:
	record_free(&r);
}

void ipc_api_close_writes(struct ipc_api *api)
{
	pthread_mutex_lock(&api->write_lock);
	api->writes_closed = true;
	pthread_mutex_unlock(&api->write_lock);
}

/* ---- quarantine ---- */

static void fill_quarantine_item(Stemedb__Ipc__V1__QuarantineItem *item, const uint8_t *hash,
                                 struct quarantine_entry *e)
{
	stemedb__ipc__v1__quarantine_item__init(item);
	item->hash.data = (uint8_t *)hash;
	item->hash.len = STEMEDB_HASH_LEN;
	item->reason = (char *)defense_reason_name(e->reason);
	item->status = (char *)quarantine_status_name(e->status);
	item->quality = e->quality;
	item->agent_id.data = e->agent;
	item->agent_id.len = STEMEDB_AGENT_ID_LEN;
	if (e->has_resembled) {
		item->resembles.data = e->resembled;
		item->resembles.len = STEMEDB_HASH_LEN;
		item->similarity = e->similarity;
	}
	item->created_ms = e->created_ms;
	item->decided_ms = e->decided_ms;
}

/* Reads the list filters; replies INVALID_ARGUMENT and returns false on a bad one. */
static bool parse_quarantine_filter(struct ipc_conn *conn, const ipc_envelope *request,
                                    struct quarantine_filter *f)
{
	const Stemedb__Ipc__V1__QuarantineListRequest *req = request->quarantine_list_request;
	const char *problem = NULL;

	memset(f, 0, sizeof(*f));
	f->limit = req->limit == 0 ? QUARANTINE_LIST_DEFAULT : req->limit;
	f->status = QUARANTINE_PENDING;
	if (req->agent_id.len != 0 && req->agent_id.len != STEMEDB_AGENT_ID_LEN)
		problem = "agent_id must be 32 bytes or empty";
	else if (req->after.len != 0 && req->after.len != STEMEDB_HASH_LEN)
		problem = "after must be a 32-byte assertion hash or empty";
	else if (req->limit > QUARANTINE_LIST_MAX)
		problem = "limit must be 1..1000";
	else if (req->reason != NULL && req->reason[0] != '\0' &&
	         !defense_reason_parse(req->reason, &f->reason))
		problem = "reason must be duplicate, low_quality or untrusted_high_confidence";
	else if (req->status != NULL && req->status[0] != '\0' &&
	         !quarantine_status_parse(req->status, &f->status))
		problem = "status must be pending, approved or rejected";
	if (problem != NULL) {
		ipc_conn_reply_error(conn, request->request_id, ERR(INVALID_ARGUMENT), "%s",
		                     problem);
		return false;
	}
	f->has_reason = req->reason != NULL && req->reason[0] != '\0';
	f->has_agent = req->agent_id.len == STEMEDB_AGENT_ID_LEN;
	if (f->has_agent)
		memcpy(f->agent, req->agent_id.data, STEMEDB_AGENT_ID_LEN);
	f->has_after = req->after.len == STEMEDB_HASH_LEN;
	if (f->has_after)
		memcpy(f->after, req->after.data, STEMEDB_HASH_LEN);
	return true;
}

static void reply_quarantine_list(struct ipc_api *api, struct ipc_conn *conn,
                                  const ipc_envelope *request)
{
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__QuarantineListResponse res =
	        STEMEDB__IPC__V1__QUARANTINE_LIST_RESPONSE__INIT;
	Stemedb__Ipc__V1__QuarantineItem *items = NULL, **item_ptrs = NULL;
	Stemedb__Ipc__V1__QuarantineAgentCount *agents = NULL, **agent_ptrs = NULL;
	struct quarantine_filter filter;
	struct quarantine_page page;

	if (!parse_quarantine_filter(conn, request, &filter))
		return;
	if (quarantine_list(api->state->store, &filter, &page) != STORE_OK) {
		ipc_conn_reply_error(conn, request->request_id, ERR(INTERNAL),
		                     "reading the quarantine failed; see the stemedb-api log");
		quarantine_page_free(&page);
		return;
	}
	items = calloc(page.count + 1, sizeof(*items));
	item_ptrs = calloc(page.count + 1, sizeof(*item_ptrs));
	agents = calloc(page.agent_count + 1, sizeof(*agents));
	agent_ptrs = calloc(page.agent_count + 1, sizeof(*agent_ptrs));
	if (items == NULL || item_ptrs == NULL || agents == NULL || agent_ptrs == NULL)
		abort();
	for (size_t i = 0; i < page.count; i++) {
		fill_quarantine_item(&items[i], page.items[i].hash, &page.items[i].entry);
		item_ptrs[i] = &items[i];
	}
	for (size_t i = 0; i < page.agent_count; i++) {
		stemedb__ipc__v1__quarantine_agent_count__init(&agents[i]);
		agents[i].agent_id.data = page.agents[i].agent;
		agents[i].agent_id.len = STEMEDB_AGENT_ID_LEN;
		agents[i].count = page.agents[i].count;
		agent_ptrs[i] = &agents[i];
	}
	res.n_items = page.count;
	res.items = item_ptrs;
	res.n_agents = page.agent_count;
	res.agents = agent_ptrs;
	res.total = page.total;
	if (page.more && page.count > 0) {
		res.next_after.data = page.items[page.count - 1].hash;
		res.next_after.len = STEMEDB_HASH_LEN;
	}
	reply.request_id = request->request_id;
	reply.body_case = BODY(QUARANTINE_LIST_RESPONSE);
	reply.quarantine_list_response = &res;
	ipc_conn_reply(conn, &reply);
	free(items);
	free(item_ptrs);
	free(agents);
	free(agent_ptrs);
	quarantine_page_free(&page);
}

static void reply_quarantine_decision(struct ipc_api *api, struct ipc_conn *conn,
                                      const ipc_envelope *request)
{
	const Stemedb__Ipc__V1__QuarantineDecisionRequest *req =
	        request->quarantine_decision_request;
	struct commit_pipeline *p = pipeline_of(api);
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__QuarantineDecisionResponse res =
	        STEMEDB__IPC__V1__QUARANTINE_DECISION_RESPONSE__INIT;
	Stemedb__Ipc__V1__QuarantineItem item;
	struct quarantine_entry entry;
	char hash_hex[2 * STEMEDB_HASH_LEN + 1];

	if (req->hash.len != STEMEDB_HASH_LEN) {
		ipc_conn_reply_error(conn, request->request_id, ERR(INVALID_ARGUMENT),
		                     "hash is %zu bytes long; send the 32-byte assertion hash",
		                     req->hash.len);
		return;
	}
	if (p == NULL) {
		ipc_conn_reply_error(conn, request->request_id, ERR(UNAVAILABLE),
		                     "WAL replay is running or the node is stopping; retry when "
		                     "the node is ready");
		return;
	}
	hex_encode(req->hash.data, STEMEDB_HASH_LEN, hash_hex);
	switch (quarantine_decide(p, api->state->store, req->hash.data, req->approve, &entry)) {
	case QUARANTINE_DECIDED:
		break;
	case QUARANTINE_NOT_FOUND:
		ipc_conn_reply_error(conn, request->request_id, ERR(NOT_FOUND),
		                     "assertion %s is not in quarantine on this node", hash_hex);
		return;
	case QUARANTINE_CONFLICT:
		ipc_conn_reply_error(conn, request->request_id, ERR(CONFLICT),
		                     "assertion %s was %s already; a decision is final", hash_hex,
		                     quarantine_status_name(entry.status));
		return;
	case QUARANTINE_FAILED:
	default:
		ipc_conn_reply_error(conn, request->request_id, ERR(INTERNAL),
		                     "storing the decision on assertion %s failed; see the "
		                     "stemedb-api log",
		                     hash_hex);
		return;
	}
	fill_quarantine_item(&item, req->hash.data, &entry);
	res.item = &item;
	reply.request_id = request->request_id;
	reply.body_case = BODY(QUARANTINE_DECISION_RESPONSE);
	reply.quarantine_decision_response = &res;
	ipc_conn_reply(conn, &reply);
}

/* ---- dispatch and lifecycle ---- */

static void handle_request(void *ctx, struct ipc_conn *conn, const ipc_envelope *request)
{
	struct ipc_api *api = ctx;
	uint64_t id = request->request_id;

	if (ipc_keys_handle(conn, request))
		return;
	switch (request->body_case) {
	case BODY(STATS_REQUEST):
		reply_stats(api, conn, id);
		break;
	case BODY(READY_REQUEST):
		reply_ready(api, conn, id);
		break;
	case BODY(GET_ASSERTION_REQUEST):
		reply_get_assertion(api, conn, request);
		break;
	case BODY(CREATE_CHECKPOINT_REQUEST):
		start_checkpoint(api, conn, request);
		break;
	case BODY(SET_ARCHIVED_WATERMARK_REQUEST):
		set_watermark(api, conn, request);
		break;
	case BODY(GET_ARCHIVED_WATERMARK_REQUEST):
		reply_watermark(api, conn, id);
		break;
	case BODY(COMPACT_REQUEST):
		job_start(&api->compaction, conn, id, compaction_main, "compaction");
		break;
	case BODY(REBUILD_INDEXES_REQUEST):
		start_rebuild(api, conn, id);
		break;
	case BODY(SUBSCRIBE_REQUEST):
		reply_subscribe(api, conn, id);
		break;
	case BODY(RECORD_TRUST_OUTCOME_REQUEST):
		record_trust_outcome(api, conn, request);
		break;
	case BODY(LIST_CIRCUIT_BREAKERS_REQUEST):
	case BODY(BAN_CIRCUIT_BREAKER_REQUEST):
	case BODY(RESET_CIRCUIT_BREAKER_REQUEST):
		ipc_breakers_handle(api->state, conn, request);
		break;
	case BODY(QUARANTINE_LIST_REQUEST):
		reply_quarantine_list(api, conn, request);
		break;
	case BODY(QUARANTINE_DECISION_REQUEST):
		reply_quarantine_decision(api, conn, request);
		break;
	default:
		log_warn("api.sock: request type %d from pid %d is not served here",
		         (int)request->body_case, (int)ipc_conn_peer(conn)->pid);
		ipc_conn_reply_error(conn, id, ERR(UNSUPPORTED),
		                     "api.sock does not serve request type %d",
		                     (int)request->body_case);
	}
}

bool ipc_api_segment_retention(void *ctx, const char *path, uint64_t base_offset,
                               uint64_t end_offset)
{
	struct ipc_api *api = ctx;
	uint64_t watermark = atomic_load(&api->watermark);

	(void)base_offset;
	if (!api->state->config->wal_archive || end_offset <= watermark)
		return true;
	log_debug("keeping WAL segment %s until it is archived (ends at %" PRIu64
	          ", archived up to %" PRIu64 ")",
	          path, end_offset, watermark);
	return false;
}

void ipc_api_on_ingested(void *ctx, const struct commit_ingested *items, size_t count)
{
	struct ipc_api *api = ctx;

	if (ipc_server_subscriber_count(api->server) == 0)
		return;
	for (size_t i = 0; i < count; i++) {
		ipc_envelope env = STEMEDB__IPC__V1__ENVELOPE__INIT;
		Stemedb__Ipc__V1__IngestedEvent ev = STEMEDB__IPC__V1__INGESTED_EVENT__INIT;

		ev.hash.data = (uint8_t *)items[i].hash;
		ev.hash.len = STEMEDB_HASH_LEN;
		ev.hlc_wall_ms = items[i].hlc.wall_ms;
		ev.hlc_logical = items[i].hlc.logical;
		ev.node_id.data = (uint8_t *)items[i].hlc.node_id;
		ev.node_id.len = sizeof(items[i].hlc.node_id);
		ev.size_bytes = items[i].envelope_bytes;
		ev.wal_offset = items[i].wal_offset;
		env.body_case = BODY(INGESTED_EVENT);
		env.ingested_event = &ev;
		ipc_server_publish(api->server, &env);
	}
}

static void *service_main(void *arg)
{
	struct ipc_api *api = arg;

	event_base_loop(api->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static bool start_loop(struct ipc_api *api, const char *socket_path, char *err, size_t err_size)
{
	struct ipc_server_options options = {
	        .socket_path = socket_path,
	        .max_frame_bytes = (uint32_t)api->state->config->ipc_max_frame,
	        .handler = handle_request,
	        .handler_ctx = api,
	        .connections_gauge = metrics.connections,
	        .frames_rejected = metrics.frames_rejected,
	};
	struct timeval period = {.tv_sec = METRICS_INTERVAL_MS / 1000};

	api->base = event_base_new();
	if (api->base == NULL) {
		snprintf(err, err_size, "event_base_new for api.sock failed");
		return false;
	}
	api->server = ipc_server_start(api->base, &options, err, err_size);
	if (api->server == NULL)
		return false;
	api->watchdog = daemon_watchdog_start(api->base);
	api->metrics_timer = event_new(api->base, -1, EV_PERSIST, metrics_tick, api);
	event_add(api->metrics_timer, &period);
	metrics_tick(-1, 0, api);

	if (pthread_create(&api->thread, NULL, service_main, api) != 0) {
		snprintf(err, err_size, "pthread_create for the api.sock thread failed");
		return false;
	}
	return true;
}

static void free_api(struct ipc_api *api)
{
	if (api->metrics_timer != NULL)
		event_free(api->metrics_timer);
	daemon_watchdog_stop(api->watchdog);
	ipc_server_stop(api->server);
	if (api->base != NULL)
		event_base_free(api->base);
	pthread_mutex_destroy(&api->rebuild_lock);
	pthread_mutex_destroy(&api->write_lock);
	free(api);
}

struct ipc_api *ipc_api_start(struct api_state *state, const char *socket_path, char *err,
                              size_t err_size)
{
	struct ipc_api *api = calloc(1, sizeof(*api));
	uint64_t watermark = 0;

	if (api == NULL)
		abort();
	api->state = state;
	api->checkpoint.api = api;
	api->compaction.api = api;
	pthread_mutex_init(&api->rebuild_lock, NULL);
	pthread_mutex_init(&api->write_lock, NULL);
	if (store_get_archived_watermark(state->store, &watermark) != STORE_OK) {
		snprintf(err, err_size, "reading the archived WAL watermark failed; see the log");
		free_api(api);
		return NULL;
	}
	atomic_store(&api->watermark, watermark);

	if (!start_loop(api, socket_path, err, err_size)) {
		free_api(api);
		return NULL;
	}
	log_info("api.sock ready; WAL archiving %s, archived watermark %" PRIu64,
	         state->config->wal_archive ? "on" : "off", watermark);
	return api;
}

void ipc_api_stop(struct ipc_api *api)
{
	if (api == NULL)
		return;
	atomic_store(&api->stopping, true);
	event_base_loopbreak(api->base);
	pthread_join(api->thread, NULL);
	if (api->checkpoint.joinable)
		pthread_join(api->checkpoint.thread, NULL);
	if (api->compaction.joinable)
		pthread_join(api->compaction.thread, NULL);
	if (api->rebuild_joinable)
		pthread_join(api->rebuild_thread, NULL);
	free_api(api);
}
