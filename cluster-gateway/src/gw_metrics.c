#include "gw_metrics.h"

#include <time.h>

struct gw_metrics gw_metrics;

/* The label values created at start-up. Others appear on first use. */
static const char *const ipc_calls[] = {"stats", "ready", "compact", "rebuild_indexes"};
static const char *const ipc_reasons[] = {"unreachable", "timeout", "protocol", "remote_error"};
static const char *const admin_operations[] = {"compact", "rebuild_indexes", "backup"};
static const char *const admin_results[] = {"ok", "error", "rejected"};
static const char *const auth_reasons[] = {
        "missing",         "malformed",          "wrong",
        "invalid_api_key", "insufficient_scope", "missing_api_key"};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

void gw_metrics_ipc_error(const char *call, const char *reason)
{
	const char *values[] = {call, reason};

	metric_inc(metrics_family_child(gw_metrics.ipc_errors, values));
}

void gw_metrics_admin(const char *operation, const char *result)
{
	const char *values[] = {operation, result};

	metric_inc(metrics_family_child(gw_metrics.admin, values));
}

static void create_zero_series(void)
{
	for (size_t i = 0; i < COUNT_OF(ipc_calls); i++) {
		const char *call[] = {ipc_calls[i]};

		metrics_family_histogram(gw_metrics.ipc_duration, call);
		for (size_t j = 0; j < COUNT_OF(ipc_reasons); j++) {
			const char *values[] = {ipc_calls[i], ipc_reasons[j]};
			metrics_family_child(gw_metrics.ipc_errors, values);
		}
	}
	for (size_t i = 0; i < COUNT_OF(admin_operations); i++) {
		for (size_t j = 0; j < COUNT_OF(admin_results); j++) {
			const char *values[] = {admin_operations[i], admin_results[j]};
			metrics_family_child(gw_metrics.admin, values);
		}
	}
	for (size_t i = 0; i < COUNT_OF(auth_reasons); i++) {
		const char *values[] = {auth_reasons[i]};
		metrics_family_child(gw_metrics.auth_failures, values);
	}
}

void gw_metrics_register(void)
{
	static const char *const request_labels[] = {"method", "path", "status", NULL};
	static const char *const call_labels[] = {"call", NULL};
	static const char *const error_labels[] = {"call", "reason", NULL};
	static const char *const admin_labels[] = {"operation", "result", NULL};
	static const char *const reason_labels[] = {"reason", NULL};

	gw_metrics.requests = metrics_counter_family("stemedb_gateway_http_requests_total",
	                                             "HTTP requests to the gateway by method, "
	                                             "route and status",
	                                             request_labels);
	gw_metrics.request_duration = metrics_histogram(
	        "stemedb_gateway_http_request_duration_seconds",
	        "Time from dispatch to reply of gateway HTTP requests, in seconds",
	        METRICS_LATENCY_BUCKETS, METRICS_LATENCY_BUCKET_COUNT);
	gw_metrics.ipc_duration = metrics_histogram_family(
	        "stemedb_gateway_ipc_call_duration_seconds",
	        "Duration of IPC calls from the gateway to stemedb-api, failed ones included, "
	        "in seconds",
	        call_labels, METRICS_LATENCY_BUCKETS, METRICS_LATENCY_BUCKET_COUNT);
	gw_metrics.ipc_errors = metrics_counter_family(
	        "stemedb_gateway_ipc_errors_total",
	        "Failed IPC calls from the gateway to stemedb-api, by call and reason",
	        error_labels);
	gw_metrics.admin =
	        metrics_counter_family("stemedb_gateway_admin_operations_total",
	                               "Admin operations by operation and result", admin_labels);
	gw_metrics.auth_failures = metrics_counter_family(
	        "stemedb_gateway_auth_failures_total",
	        "Admin requests rejected for their credentials, by reason", reason_labels);
	gw_metrics.jobs_running =
	        metrics_gauge("stemedb_gateway_ipc_calls_in_flight",
	                      "IPC calls to stemedb-api that have not returned yet");
	gw_metrics.start_time = metrics_gauge("stemedb_gateway_start_time_seconds",
	                                      "Start time of the gateway, in Unix seconds");

	create_zero_series();
	metric_set(gw_metrics.start_time, (double)time(NULL));
}
