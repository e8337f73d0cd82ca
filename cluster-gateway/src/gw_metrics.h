#ifndef STEMEDB_GW_METRICS_H
#define STEMEDB_GW_METRICS_H

/* The gateway's own metrics, served on GET /metrics. Every series is created at
 * start-up at zero, so rate() works from the first scrape. */

#include "stemedb/metrics.h"

struct gw_metrics {
	struct metric_family *requests;      /* stemedb_gateway_http_requests_total */
	struct histogram *request_duration;  /* stemedb_gateway_http_request_duration_seconds */
	struct metric_family *ipc_duration;  /* stemedb_gateway_ipc_call_duration_seconds{call} */
	struct metric_family *ipc_errors;    /* stemedb_gateway_ipc_errors_total{call,reason} */
	struct metric_family *admin;         /* stemedb_gateway_admin_operations_total */
	struct metric_family *auth_failures; /* stemedb_gateway_auth_failures_total{reason} */
	struct metric *jobs_running;         /* stemedb_gateway_ipc_calls_in_flight */
	struct metric *start_time;           /* stemedb_gateway_start_time_seconds */
};

extern struct gw_metrics gw_metrics;

/* Registers every metric. Call once, before the listener starts. */
void gw_metrics_register(void);

/* Counts one IPC failure of call ("stats", "compact", ...) under reason. */
void gw_metrics_ipc_error(const char *call, const char *reason);

/* Counts one admin operation ("compact", "rebuild_indexes", "backup") by result
 * ("ok", "error", "rejected"). */
void gw_metrics_admin(const char *operation, const char *result);

#endif
