#include "gw_ipc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "gw_http.h"
#include "gw_job.h"
#include "gw_metrics.h"
#include "stemedb/log.h"

/* Reconnection waits inside one call's deadline. They are short because the deadline
 * of a health call is about a second. */
#define GW_IPC_BACKOFF_INITIAL_MS 50
#define GW_IPC_BACKOFF_MAX_MS     200

/* Idle clients, kept so that their connections and their connect backoff carry over
 * from one call to the next. A call takes one (or makes one) and puts it back, so no
 * two threads use a client at once. */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ipc_client *pool[GW_JOBS_MAX];
static size_t pool_count;

/* At most one failure line per second, so a monitor that polls a dead stemedb-api
 * does not flood the journal. The metrics count every failure. */
static atomic_llong last_failure_log_second;
static atomic_ullong failures_not_logged;

static const char *failure_reason(enum ipc_result result)
{
	switch (result) {
	case IPC_ERR_TIMEOUT:
		return "timeout";
	case IPC_ERR_PROTOCOL:
		return "protocol";
	case IPC_ERR_REMOTE:
		return "remote_error";
	case IPC_OK:
	case IPC_ERR_UNAVAILABLE:
	case IPC_ERR_CLOSED:
	case IPC_ERR_IO:
		break;
	}
	return "unreachable";
}

static void log_failure(const struct gw_config *cfg, const char *call,
                        const struct gw_ipc_status *status)
{
	long long now = (long long)time(NULL);
	long long last = atomic_load(&last_failure_log_second);
	unsigned long long skipped;

	if (now == last || !atomic_compare_exchange_strong(&last_failure_log_second, &last, now)) {
		atomic_fetch_add(&failures_not_logged, 1);
		return;
	}
	skipped = atomic_exchange(&failures_not_logged, 0);
	log_warn("IPC call %s to %s failed (%s): %s%s", call, cfg->api_socket,
	         ipc_result_name(status->result), status->message,
	         skipped > 0 ? " (and earlier failures, counted in "
	                       "stemedb_gateway_ipc_errors_total)"
	                     : "");
}

static struct ipc_client *client_take(const struct gw_config *cfg)
{
	const struct ipc_client_options options = {
	        .socket_path = cfg->api_socket,
	        .backoff_initial_ms = GW_IPC_BACKOFF_INITIAL_MS,
	        .backoff_max_ms = GW_IPC_BACKOFF_MAX_MS,
	};
	struct ipc_client *client = NULL;

	pthread_mutex_lock(&pool_lock);
	if (pool_count > 0)
		client = pool[--pool_count];
	pthread_mutex_unlock(&pool_lock);
	return client != NULL ? client : ipc_client_new(&options);
}

static void client_give_back(struct ipc_client *client)
{
	pthread_mutex_lock(&pool_lock);
	if (pool_count < GW_JOBS_MAX) {
		pool[pool_count++] = client;
		client = NULL;
	}
	pthread_mutex_unlock(&pool_lock);
	ipc_client_free(client);
}

void gw_ipc_free_idle(void)
{
	pthread_mutex_lock(&pool_lock);
	while (pool_count > 0)
		ipc_client_free(pool[--pool_count]);
	pthread_mutex_unlock(&pool_lock);
}

/* Adds the likely cause to an "unavailable" message, which after a failed connect
 * only reports the backoff. */
static void explain_unavailable(const struct gw_config *cfg, struct gw_ipc_status *status)
{
	struct stat st;
	size_t len = strlen(status->message);

	if (status->result != IPC_ERR_UNAVAILABLE || len >= sizeof(status->message) - 1)
		return;
	if (stat(cfg->api_socket, &st) != 0)
		snprintf(status->message + len, sizeof(status->message) - len,
		         " (stat: %s; is stemedb-api running with the same STEMEDB_RUN_DIR?)",
		         strerror(errno));
	else if (!S_ISSOCK(st.st_mode))
		snprintf(status->message + len, sizeof(status->message) - len,
		         " (the path exists but is not a socket)");
}

/* Makes one call on client and records its duration and any failure. */
static ipc_envelope *call_on(struct ipc_client *client, const struct gw_config *cfg,
                             const char *call, ipc_envelope *request, ipc_body_case expected,
                             uint64_t timeout_ms, struct gw_ipc_status *status)
{
	const char *labels[] = {call};
	ipc_envelope *reply = NULL;
	uint64_t started = gw_now_ns();

	status->remote_code = STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED;
	status->message[0] = '\0';
	status->result =
	        ipc_client_call(client, request, expected, (uint32_t)timeout_ms, &reply,
	                        &status->remote_code, status->message, sizeof(status->message));
	histogram_observe(metrics_family_histogram(gw_metrics.ipc_duration, labels),
	                  (double)(gw_now_ns() - started) / 1e9);

	if (status->result == IPC_OK)
		return reply;

	ipc_envelope_free(reply);
	if (status->message[0] == '\0')
		snprintf(status->message, sizeof(status->message), "%s",
		         ipc_result_name(status->result));
	explain_unavailable(cfg, status);
	gw_metrics_ipc_error(call, failure_reason(status->result));
	log_failure(cfg, call, status);
	return NULL;
}

/* Checks within the short deadline that stemedb-api replies and is ready. A long call
 * made without it would keep retrying the connection until its own deadline, which
 * can be minutes, when stemedb-api is down. */
static bool check_ready(struct ipc_client *client, const struct gw_config *cfg,
                        struct gw_ipc_status *status)
{
	Stemedb__Ipc__V1__ReadyRequest body = STEMEDB__IPC__V1__READY_REQUEST__INIT;
	ipc_envelope request = STEMEDB__IPC__V1__ENVELOPE__INIT;
	ipc_envelope *reply;
	bool ready;

	request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_READY_REQUEST;
	request.ready_request = &body;
	reply = call_on(client, cfg, "ready", &request,
	                STEMEDB__IPC__V1__ENVELOPE__BODY_READY_RESPONSE, cfg->ipc_timeout_ms,
	                status);
	if (reply == NULL)
		return false;

	ready = reply->ready_response->ready;
	if (!ready) {
		status->result = IPC_ERR_REMOTE;
		status->remote_code = STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_UNAVAILABLE;
		snprintf(status->message, sizeof(status->message), "stemedb-api reports %s",
		         reply->ready_response->status);
	}
	ipc_envelope_free(reply);
	return ready;
}

ipc_envelope *gw_ipc_call(const struct gw_config *cfg, const char *call, ipc_envelope *request,
                          ipc_body_case expected, uint64_t timeout_ms, struct gw_ipc_status *status)
{
	struct ipc_client *client = client_take(cfg);
	ipc_envelope *reply = NULL;

	if (timeout_ms <= cfg->ipc_timeout_ms || check_ready(client, cfg, status))
		reply = call_on(client, cfg, call, request, expected, timeout_ms, status);
	client_give_back(client);
	return reply;
}

bool gw_ipc_ready(const struct gw_config *cfg, struct gw_ipc_status *status)
{
	struct ipc_client *client = client_take(cfg);
	bool ready = check_ready(client, cfg, status);

	client_give_back(client);
	return ready;
}

ipc_envelope *gw_ipc_stats(const struct gw_config *cfg, struct gw_ipc_status *status)
{
	Stemedb__Ipc__V1__StatsRequest body = STEMEDB__IPC__V1__STATS_REQUEST__INIT;
	ipc_envelope request = STEMEDB__IPC__V1__ENVELOPE__INIT;

	request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_STATS_REQUEST;
	request.stats_request = &body;
	return gw_ipc_call(cfg, "stats", &request, STEMEDB__IPC__V1__ENVELOPE__BODY_STATS_RESPONSE,
	                   cfg->ipc_timeout_ms, status);
}

ipc_envelope *gw_ipc_compact(const struct gw_config *cfg, struct gw_ipc_status *status)
{
	Stemedb__Ipc__V1__CompactRequest body = STEMEDB__IPC__V1__COMPACT_REQUEST__INIT;
	ipc_envelope request = STEMEDB__IPC__V1__ENVELOPE__INIT;

	request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_COMPACT_REQUEST;
	request.compact_request = &body;
	return gw_ipc_call(cfg, "compact", &request,
	                   STEMEDB__IPC__V1__ENVELOPE__BODY_COMPACT_RESPONSE, cfg->admin_timeout_ms,
	                   status);
}

ipc_envelope *gw_ipc_rebuild_indexes(const struct gw_config *cfg, struct gw_ipc_status *status)
{
	Stemedb__Ipc__V1__RebuildIndexesRequest body =
	        STEMEDB__IPC__V1__REBUILD_INDEXES_REQUEST__INIT;
	ipc_envelope request = STEMEDB__IPC__V1__ENVELOPE__INIT;

	request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_REBUILD_INDEXES_REQUEST;
	request.rebuild_indexes_request = &body;
	return gw_ipc_call(cfg, "rebuild_indexes", &request,
	                   STEMEDB__IPC__V1__ENVELOPE__BODY_REBUILD_INDEXES_RESPONSE,
	                   cfg->ipc_timeout_ms, status);
}
