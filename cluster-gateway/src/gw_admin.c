/* POST /v1/admin/compact, /v1/admin/indexes/rebuild and /v1/admin/backup. stemedb-api,
 * the only owner of the database, carries out each one: compaction and the rebuild
 * through one IPC call, the backup's checkpoint through stemedb-ctl backup. */
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_backup.h"
#include "gw_handlers.h"
#include "gw_job.h"
#include "gw_metrics.h"
#include "gw_node.h"
#include "stemedb/log.h"

/* Maximum length of a backup path in bytes. It leaves room below PATH_MAX (4096) for
 * the names of the files inside. */
#define GW_BACKUP_PATH_MAX 3800

struct admin_job {
	struct gw_job job;
	const char *operation; /* metrics label and log name */
	char peer[64];         /* client address, for the log */
	char *path;            /* backup target, owned */
	ipc_envelope *reply;
	struct gw_ipc_status status;
	bool backup_ran; /* stemedb-api was ready, so stemedb-ctl backup ran */
	enum gw_backup_result backup_result;
	json_t *manifest; /* MANIFEST.json of a finished backup */
	char backup_message[1024];
};

static const char *const no_fields[] = {NULL};
static const char *const backup_fields[] = {"path", NULL};

static void admin_job_free(struct admin_job *a)
{
	ipc_envelope_free(a->reply);
	json_decref(a->manifest);
	free(a->path);
	free(a);
}

/* Maps a failed IPC call to an HTTP error, logs it and replies. */
static void reply_ipc_failure(struct admin_job *a)
{
	struct gw_request *r = a->job.request;
	const char *socket = r->gw->config->api_socket;
	const char *message = a->status.message;

	gw_metrics_admin(a->operation, "error");
	log_warn("admin %s from %s failed: %s: %s", a->operation, a->peer,
	         ipc_result_name(a->status.result), message);

	switch (a->status.result) {
	case IPC_ERR_TIMEOUT:
		gw_reply_error(r, 504, "timed_out", NULL,
		               "stemedb-api did not finish %s in time; its outcome is unknown, so "
		               "check the stemedb-api log before retrying",
		               a->operation);
		return;
	case IPC_ERR_REMOTE:
		break;
	case IPC_ERR_PROTOCOL:
		gw_reply_error(r, 502, "bad_gateway", NULL,
		               "stemedb-api sent an invalid reply on %s: %s", socket, message);
		return;
	case IPC_OK:
	case IPC_ERR_UNAVAILABLE:
	case IPC_ERR_CLOSED:
	case IPC_ERR_IO:
		gw_reply_error(r, 503, "unavailable", NULL,
		               "stemedb-api is not reachable: %s; start it and retry", message);
		return;
	}

	switch (a->status.remote_code) {
	case STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT:
		gw_reply_error(r, 400, "invalid_field", a->path != NULL ? "path" : NULL,
		               "stemedb-api rejected the request: %s", message);
		return;
	case STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_BUSY:
		gw_reply_error(r, 409, "conflict", NULL, "%s; retry when it has finished", message);
		return;
	case STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_UNAVAILABLE:
		gw_reply_error(r, 503, "unavailable", NULL, "stemedb-api is not ready: %s",
		               message);
		return;
	default:
		gw_reply_error(r, 500, "internal_error", NULL, "stemedb-api failed the %s: %s",
		               a->operation, message);
		return;
	}
}

static void compact_work(struct gw_job *job)
{
	struct admin_job *a = (struct admin_job *)job;

	a->reply = gw_ipc_compact(job->request->gw->config, &a->status);
}

static void compact_finish(struct gw_job *job)
{
	struct admin_job *a = (struct admin_job *)job;
	struct gw_request *r = job->request;
	const Stemedb__Ipc__V1__CompactResponse *c;

	if (a->reply == NULL) {
		reply_ipc_failure(a);
		admin_job_free(a);
		return;
	}

	c = a->reply->compact_response;
	gw_metrics_admin(a->operation, "ok");
	log_info("admin compact from %s: done in %llu ms, disk bytes %llu before, %llu after",
	         a->peer, (unsigned long long)c->duration_ms,
	         (unsigned long long)c->disk_bytes_before, (unsigned long long)c->disk_bytes_after);
	gw_reply_json(r, 200,
	              json_pack("{s:I, s:I, s:I}", "disk_bytes_before",
	                        (json_int_t)c->disk_bytes_before, "disk_bytes_after",
	                        (json_int_t)c->disk_bytes_after, "duration_ms",
	                        (json_int_t)c->duration_ms));
	admin_job_free(a);
}

static void rebuild_work(struct gw_job *job)
{
	struct admin_job *a = (struct admin_job *)job;

	a->reply = gw_ipc_rebuild_indexes(job->request->gw->config, &a->status);
}

static void rebuild_finish(struct gw_job *job)
{
	struct admin_job *a = (struct admin_job *)job;
	struct gw_request *r = job->request;
	const Stemedb__Ipc__V1__RebuildProgress *p;

	if (a->reply == NULL) {
		reply_ipc_failure(a);
		admin_job_free(a);
		return;
	}

	p = a->reply->rebuild_indexes_response->progress;
	gw_metrics_admin(a->operation, "ok");
	log_info("admin rebuild_indexes from %s: started over %llu assertions", a->peer,
	         (unsigned long long)(p != NULL ? p->assertions_total : 0));
	gw_reply_json(r, 202, json_pack("{s:o}", "index_rebuild", gw_rebuild_progress_json(p)));
	admin_job_free(a);
}

static void backup_work(struct gw_job *job)
{
	struct admin_job *a = (struct admin_job *)job;
	const struct gw_config *cfg = job->request->gw->config;

	if (!gw_ipc_ready(cfg, &a->status))
		return;
	a->backup_result = gw_backup_run(cfg, a->path, &a->manifest, a->backup_message,
	                                 sizeof(a->backup_message));
	a->backup_ran = true;
}

/* Replies to a backup that stemedb-ctl did not complete. */
static void reply_backup_failure(struct admin_job *a)
{
	struct gw_request *r = a->job.request;

	gw_metrics_admin(a->operation, "error");
	log_warn("admin backup from %s into %s failed: %s", a->peer, a->path, a->backup_message);
	switch (a->backup_result) {
	case GW_BACKUP_REJECTED:
		gw_reply_error(r, 400, "invalid_field", "path", "%s", a->backup_message);
		return;
	case GW_BACKUP_TIMED_OUT:
		gw_reply_error(r, 504, "timed_out", NULL, "%s", a->backup_message);
		return;
	case GW_BACKUP_OK:
	case GW_BACKUP_FAILED:
	case GW_BACKUP_NOT_STARTED:
		break;
	}
	gw_reply_error(r, 500, "internal_error", NULL, "%s", a->backup_message);
}

static void backup_finish(struct gw_job *job)
{
	struct admin_job *a = (struct admin_job *)job;
	struct gw_request *r = job->request;
	json_t *m = a->manifest;

	if (!a->backup_ran) {
		reply_ipc_failure(a);
		admin_job_free(a);
		return;
	}
	if (a->backup_result != GW_BACKUP_OK) {
		reply_backup_failure(a);
		admin_job_free(a);
		return;
	}

	gw_metrics_admin(a->operation, "ok");
	log_info("admin backup from %s: written to %s with %lld assertions up to WAL offset %lld",
	         a->peer, a->path, json_integer_value(json_object_get(m, "assertion_count")),
	         json_integer_value(json_object_get(m, "wal_end")));
	gw_reply_json(r, 201,
	              json_pack("{s:s, s:O*, s:O*, s:O*, s:O*, s:O*, s:O*, s:I}", "path", a->path,
	                        "node_id", json_object_get(m, "node_id"), "created_at",
	                        json_object_get(m, "created_at"), "wal_cursor",
	                        json_object_get(m, "wal_cursor"), "wal_end",
	                        json_object_get(m, "wal_end"), "wal_records",
	                        json_object_get(m, "wal_records"), "assertion_count",
	                        json_object_get(m, "assertion_count"), "files",
	                        (json_int_t)json_array_size(json_object_get(m, "files"))));
	admin_job_free(a);
}

static struct admin_job *admin_job_new(struct gw_request *r, const char *operation)
{
	struct admin_job *a = calloc(1, sizeof(*a));
	char *address = NULL;
	uint16_t port = 0;

	if (a == NULL)
		abort();
	a->job.request = r;
	a->job.data = a;
	a->operation = operation;
	evhttp_connection_get_peer(evhttp_request_get_connection(r->req), &address, &port);
	snprintf(a->peer, sizeof(a->peer), "%.40s:%u", address != NULL ? address : "?", port);
	return a;
}

/* Starts the job, or replies 503 and frees it when no job thread is available. */
static void admin_job_launch(struct admin_job *a)
{
	struct gw_request *r = a->job.request;

	log_info("admin %s requested by %s", a->operation, a->peer);
	if (gw_job_start(&a->job))
		return;

	gw_metrics_admin(a->operation, "error");
	admin_job_free(a);
	gw_reply_error(r, 503, "unavailable", NULL,
	               "the gateway has %d calls to stemedb-api open already; retry later",
	               GW_JOBS_MAX);
}

/* Accepts an empty body or a JSON object without fields. Replies and returns false
 * otherwise. */
static bool read_empty_body(struct gw_request *r, const char *operation)
{
	json_t *body = gw_read_json_object(r);
	bool ok;

	if (body == NULL) {
		gw_metrics_admin(operation, "rejected");
		return false;
	}
	ok = gw_reject_unknown_fields(r, body, no_fields);
	json_decref(body);
	if (!ok)
		gw_metrics_admin(operation, "rejected");
	return ok;
}

void gw_handle_admin_compact(struct gw_request *r)
{
	struct admin_job *a;

	if (!read_empty_body(r, "compact"))
		return;
	a = admin_job_new(r, "compact");
	a->job.work = compact_work;
	a->job.finish = compact_finish;
	admin_job_launch(a);
}

void gw_handle_admin_rebuild(struct gw_request *r)
{
	struct admin_job *a;

	if (!read_empty_body(r, "rebuild_indexes"))
		return;
	a = admin_job_new(r, "rebuild_indexes");
	a->job.work = rebuild_work;
	a->job.finish = rebuild_finish;
	admin_job_launch(a);
}

/* Returns NULL when path is an absolute path without "." or ".." components, empty
 * components or control bytes, else a message saying what is wrong. */
static const char *backup_path_problem(const char *path, size_t len)
{
	if (len == 0 || path[0] != '/')
		return "is not an absolute path; give a directory like "
		       "/var/backups/stemedb/2026-12-04";
	if (len == 1)
		return "is the root directory; give a new directory for the backup";
	if (len > GW_BACKUP_PATH_MAX)
		return "is too long; use at most 3800 bytes";

	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
			return "contains a control character";
	}
	for (const char *c = path; c != NULL && *c != '\0'; c = strchr(c + 1, '/')) {
		const char *next = c + 1;
		size_t part = strcspn(next, "/");

		if (part == 0 && next[0] != '\0')
			return "contains an empty component (//); write each separator once";
		if ((part == 1 && next[0] == '.') ||
		    (part == 2 && next[0] == '.' && next[1] == '.'))
			return "contains a . or .. component; give the path without them";
	}
	return NULL;
}

/* Reads {"path": "/abs/dir"}. Replies 400 and returns NULL on a bad body. */
static char *read_backup_path(struct gw_request *r)
{
	json_t *body = gw_read_json_object(r);
	const char *problem;
	char *path = NULL;
	json_t *value;

	if (body == NULL || !gw_reject_unknown_fields(r, body, backup_fields))
		goto done;

	value = json_object_get(body, "path");
	if (value == NULL) {
		gw_reply_error(
		        r, 400, "missing_field", "path",
		        "field \"path\" is required: the directory to create for the backup");
		goto done;
	}
	if (!json_is_string(value)) {
		gw_reply_error(r, 400, "invalid_field", "path", "field \"path\" must be a string");
		goto done;
	}

	problem = backup_path_problem(json_string_value(value), json_string_length(value));
	if (problem != NULL) {
		gw_reply_error(r, 400, "invalid_field", "path", "path \"%.200s\" %s",
		               json_string_value(value), problem);
		goto done;
	}
	path = strdup(json_string_value(value));
	if (path == NULL)
		abort();

	/* A trailing slash names the same directory. */
	if (path[strlen(path) - 1] == '/')
		path[strlen(path) - 1] = '\0';

done:
	json_decref(body);
	return path;
}

void gw_handle_admin_backup(struct gw_request *r)
{
	struct admin_job *a;
	char *path = read_backup_path(r);

	if (path == NULL) {
		gw_metrics_admin("backup", "rejected");
		return;
	}
	a = admin_job_new(r, "backup");
	a->path = path;
	a->job.work = backup_work;
	a->job.finish = backup_finish;
	admin_job_launch(a);
}
