/* stemedb-api: the public HTTP API of a StemeDB node and the sole owner of its WAL
 * and RocksDB database. Start-up opens the store, starts HTTP at once so that
 * /v1/health and /v1/ready respond during WAL replay, and replays the WAL in a
 * separate thread. SIGTERM or SIGINT stops it cleanly. */

#include <errno.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api_config.h"
#include "audit.h"
#include "auth.h"
#include "commit.h"
#include "defense.h"
#include "http_feed.h"
#include "http_server.h"
#include "http_util.h"
#include "ipc_api.h"
#include "protect.h"
#include "rate_limit.h"
#include "stemedb/daemon.h"
#include "stemedb/hex.h"
#include "stemedb/ipc.h"
#include "stemedb/log.h"
#include "store.h"

/* How long a stop waits for the replies to dispatched requests before it stops the
 * commit pipeline anyway. */
#define STOP_DRAIN_MS 10000
/* Time the workers keep running after the last reply so its bytes leave the socket. */
#define STOP_FLUSH_MS 200

struct recovery {
	struct api_state *state;
	struct commit_options options;
	pthread_t thread;
};

/* Parses a UUID in its 36-character text form, or as 32 hex characters. */
static bool node_id_parse(const char *text, uint8_t out[16])
{
	char hex[33];
	size_t n = 0;

	for (const char *p = text; *p != '\0' && *p != '\n'; p++) {
		if (*p == '-')
			continue;
		if (n == 32)
			return false;
		hex[n++] = *p;
	}
	hex[n] = '\0';
	return n == 32 && hex_decode(hex, 32, out, 16);
}

static void node_id_format(const uint8_t id[16], char out[37])
{
	char hex[33];

	hex_encode(id, 16, hex);
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

/* Writes the node id file through a temporary file, fsync and rename, so that a
 * crash leaves either no file or a complete one. */
static bool node_id_store(const char *data_dir, const char *text, char *err, size_t err_size)
{
	char path[4096], tmp[4096];
	int fd, dir_fd;
	bool ok;

	snprintf(path, sizeof(path), "%s/node_id", data_dir);
	snprintf(tmp, sizeof(tmp), "%s/node_id.tmp", data_dir);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ok = fd >= 0 && dprintf(fd, "%s\n", text) > 0 && fsync(fd) == 0;
	if (fd >= 0)
		close(fd);
	ok = ok && rename(tmp, path) == 0;

	dir_fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ok = ok && dir_fd >= 0 && fsync(dir_fd) == 0;
	if (dir_fd >= 0)
		close(dir_fd);
	if (!ok)
		snprintf(err, err_size, "writing the node id to %.300s failed: %s", path,
		         strerror(errno));
	return ok;
}

/* Sets the node id from STEMEDB_NODE_ID, else from DATA_DIR/node_id, else generates
 * a random (version 4) UUID and stores it there for the next start. */
static bool node_id_load(const struct api_config *cfg, uint8_t id[16], char text[37], char *err,
                         size_t err_size)
{
	char path[4096], line[128] = "";
	FILE *f;

	if (cfg->node_id[0] != '\0') {
		if (!node_id_parse(cfg->node_id, id)) {
			snprintf(err, err_size,
			         "STEMEDB_NODE_ID '%s' is not a UUID; give 36 characters like "
			         "0f8e3c2a-6d1b-4e5f-9a7c-2b4d6e8f0a1c",
			         cfg->node_id);
			return false;
		}
		node_id_format(id, text);
		return true;
	}

	snprintf(path, sizeof(path), "%s/node_id", cfg->data_dir);
	f = fopen(path, "re");
	if (f != NULL) {
		bool ok = fgets(line, sizeof(line), f) != NULL && node_id_parse(line, id);

		fclose(f);
		if (!ok)
			snprintf(err, err_size,
			         "%.300s does not hold a UUID; restore it from a backup, or remove "
			         "it to give this node a new identity",
			         path);
		node_id_format(id, text);
		return ok;
	}

	randombytes_buf(id, 16);
	id[6] = (uint8_t)((id[6] & 0x0f) | 0x40);
	id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
	node_id_format(id, text);
	log_info("generated node id %s, stored in %s", text, path);
	return node_id_store(cfg->data_dir, text, err, err_size);
}

static bool make_dir(const char *path, char *err, size_t err_size)
{
	if (mkdir(path, 0750) == 0 || errno == EEXIST)
		return true;
	snprintf(err, err_size,
	         "mkdir(\"%.300s\") failed: %s; create the directory or fix its parent", path,
	         strerror(errno));
	return false;
}

static void *recovery_main(void *arg)
{
	struct recovery *r = arg;
	struct commit_pipeline *p;
	struct commit_stats stats;
	char err[512];

	p = commit_start(&r->options, r->state->store, err, sizeof(err));
	if (p == NULL) {
		log_error("WAL replay failed, so the node stops: %s", err);
		atomic_store(&r->state->recovery_failed, true);
		kill(getpid(), SIGTERM);
		return NULL;
	}

	commit_get_stats(p, &stats);
	atomic_store_explicit(&r->state->pipeline, p, memory_order_release);
	log_info("ready: replayed %llu WAL records in %.3f s, %llu assertions stored",
	         (unsigned long long)stats.records_replayed, stats.recovery_seconds,
	         (unsigned long long)store_assertion_count(r->state->store));
	daemon_notify_ready("serving; %llu assertions, WAL at offset %llu",
	                    (unsigned long long)store_assertion_count(r->state->store),
	                    (unsigned long long)stats.wal_end_offset);
	return NULL;
}

/* Blocks the stop signals in every thread created from now on, so that only the
 * main thread receives them through sigwait. */
static void block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Stops in the order that keeps every acknowledged write durable: no new
 * connections, reply to what was dispatched, drain the commit pipeline, then close
 * the workers and the store. */
static void shutdown_node(struct http_server *server, struct recovery *recovery)
{
	uint64_t deadline = http_now_ns() + (uint64_t)STOP_DRAIN_MS * 1000000u;
	struct commit_pipeline *p;

	daemon_notify_stopping("stopping: finishing in-flight requests and syncing the WAL");
	http_server_stop_accepting(server);
	pthread_join(recovery->thread, NULL);

	while (http_server_in_flight(server) > 0 && http_now_ns() < deadline)
		usleep(2000);
	if (http_server_in_flight(server) > 0)
		log_warn("%llu requests were still open after %d ms; stopping anyway",
		         (unsigned long long)http_server_in_flight(server), STOP_DRAIN_MS);

	/* IPC keeps serving until after this, so take the pipeline away first: a quarantine
	 * decision that arrives later gets "unavailable" instead of a freed pipeline.
	 * NOTE: a call that loaded the pointer just before still races with the stop. */
	p = atomic_exchange(&recovery->state->pipeline, NULL);
	if (p != NULL)
		commit_stop(p);
	http_server_free(server, STOP_FLUSH_MS);
}

/* Sends newly stored assertions to the IPC subscribers and to the open feed streams. */
static void publish_ingested(void *ctx, const struct commit_ingested *items, size_t count)
{
	ipc_api_on_ingested(ctx, items, count);
	http_feed_publish(items, count);
}

/* Serves api.sock from its own thread and hooks it into the commit pipeline: WAL
 * retention waits for the archived watermark, and stored assertions become events. */
static struct ipc_api *start_ipc(struct api_state *state, struct commit_options *options)
{
	const struct api_config *cfg = state->config;
	char run_dir[4096], socket_path[4096], err[512];
	struct ipc_api *api;

	if (!daemon_resolve_run_dir(cfg->run_dir, cfg->data_dir, run_dir, sizeof(run_dir), err,
	                            sizeof(err)) ||
	    !daemon_socket_path(run_dir, IPC_API_SOCKET_NAME, socket_path, sizeof(socket_path), err,
	                        sizeof(err))) {
		log_error("%s", err);
		return NULL;
	}
	api = ipc_api_start(state, socket_path, err, sizeof(err));
	if (api == NULL) {
		log_error("%s", err);
		return NULL;
	}
	options->segment_retention = ipc_api_segment_retention;
	options->segment_retention_ctx = api;
	options->on_ingested = publish_ingested;
	options->on_ingested_ctx = api;
	return api;
}

/* Starts the query audit writer unless the retention is 0. */
static bool start_audit(struct api_state *state, char *err, size_t err_size)
{
	const struct api_config *cfg = state->config;
	uint64_t retention = cfg->audit_retention_seconds != 0 ? cfg->audit_retention_seconds
	                                                       : cfg->audit_retention_days * 86400;

	state->audit = audit_log_start(state->store, retention, err, err_size);
	return retention == 0 || state->audit != NULL;
}

/* Stops the audit writer, which stores what it has queued, then closes the database. */
/* Loads the API keys and sets up the rate limiter. */
static bool start_protection(struct api_state *state, char *err, size_t err_size)
{
	const struct api_config *cfg = state->config;
	struct auth_settings auth = {.enabled = cfg->auth_enabled, .root_key = cfg->root_api_key};
	struct rate_limit_settings limits = {.enabled = cfg->rate_limit_enabled,
	                                     .max_clients = cfg->rate_limit_max_clients};

	limits.classes[HTTP_ROUTE_CLASS_WRITE] =
	        (struct rate_limit_class){cfg->rate_limit_write_rate, cfg->rate_limit_write_burst};
	limits.classes[HTTP_ROUTE_CLASS_READ] =
	        (struct rate_limit_class){cfg->rate_limit_read_rate, cfg->rate_limit_read_burst};
	limits.classes[HTTP_ROUTE_CLASS_OTHER] =
	        (struct rate_limit_class){cfg->rate_limit_other_rate, cfg->rate_limit_other_burst};
	if (!auth_start(state->store, &auth, err, err_size))
		return false;
	rate_limit_start(&limits);
	return true;
}

static void close_store(struct api_state *state)
{
	rate_limit_stop();
	auth_stop();
	protect_close(state->protect);
	state->protect = NULL;
	audit_log_stop(state->audit);
	state->audit = NULL;
	store_close(state->store);
}

static int run(struct api_config *cfg)
{
	struct api_state state = {.config = cfg, .started_ns = http_now_ns()};
	struct recovery recovery = {.state = &state};
	struct http_server *server;
	struct ipc_api *ipc;
	char err[512], db_path[4096];
	sigset_t signals;
	int sig = 0;

	/* Before store_open, so that RocksDB's background threads inherit the mask too: a
	 * SIGTERM sent before the main thread reaches sigwait then stays pending instead of
	 * killing the process through a thread that does not block it. */
	block_signals(&signals);
	if (!make_dir(cfg->data_dir, err, sizeof(err)) ||
	    !make_dir(cfg->wal_dir, err, sizeof(err)) ||
	    !node_id_load(cfg, recovery.options.node_id, state.node_id, err, sizeof(err))) {
		log_error("%s", err);
		return 1;
	}

	snprintf(db_path, sizeof(db_path), "%s/db", cfg->data_dir);
	state.store = store_open(db_path, err, sizeof(err));
	if (state.store == NULL) {
		log_error("%s", err);
		return 1;
	}
	if (!start_audit(&state, err, sizeof(err)) || !start_protection(&state, err, sizeof(err))) {
		log_error("%s", err);
		close_store(&state);
		return 1;
	}

	state.protect = protect_open(&cfg->protect, state.store, err, sizeof(err));
	if (state.protect == NULL) {
		log_error("%s", err);
		close_store(&state);
		return 1;
	}

	http_metrics_register();
	protect_register_metrics();
	ipc_api_register_metrics();
	defense_metrics_register();
	/* Before WAL replay, which counts the quarantines it creates on top. */
	if (defense_count_pending(state.store) != STORE_OK ||
	    (cfg->defense.enabled && defense_filter_load(state.store) != STORE_OK)) {
		log_error("reading the content defense state in %s failed; see above", db_path);
		close_store(&state);
		return 1;
	}
	server = http_server_start(&state, err, sizeof(err));
	if (server == NULL) {
		log_error("%s", err);
		close_store(&state);
		return 1;
	}
	log_info("started: listening on %s, data dir %s, WAL dir %s, durability %s, %llu HTTP "
	         "threads, node id %s",
	         cfg->listen, cfg->data_dir, cfg->wal_dir, cfg->durability_name,
	         (unsigned long long)cfg->http_threads, state.node_id);

	ipc = start_ipc(&state, &recovery.options);
	if (ipc == NULL) {
		http_server_free(server, 0);
		close_store(&state);
		return 1;
	}

	recovery.options.wal_dir = cfg->wal_dir;
	recovery.options.segment_bytes = cfg->wal_segment_bytes;
	recovery.options.durability = cfg->durability;
	recovery.options.sync_interval_ms = cfg->wal_sync_interval_ms;
	recovery.options.defense = &cfg->defense;
	log_info("content defense is %s (duplicate similarity %.2f, minimum quality %.2f, "
	         "untrusted below %.2f, high confidence above %.2f)",
	         cfg->defense.enabled ? "on" : "off", cfg->defense.duplicate_similarity,
	         cfg->defense.min_quality, cfg->defense.untrusted_below,
	         cfg->defense.high_confidence);
	if (pthread_create(&recovery.thread, NULL, recovery_main, &recovery) != 0) {
		log_error("pthread_create failed for the WAL replay thread");
		ipc_api_stop(ipc);
		http_server_free(server, 0);
		close_store(&state);
		return 1;
	}

	sigwait(&signals, &sig);
	log_info("stopping on %s", strsignal(sig));
	ipc_api_close_writes(ipc);
	shutdown_node(server, &recovery);
	ipc_api_stop(ipc);
	close_store(&state);
	log_info("stopped");
	return atomic_load(&state.recovery_failed) ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct api_config cfg;
	bool help = false;
	char err[512];
	int status;

	if (!api_config_load(&cfg, argc, argv, &help, err, sizeof(err))) {
		fprintf(stderr, "stemedb-api: %s\n", err);
		api_config_free(&cfg);
		return 2;
	}
	if (help) {
		api_config_free(&cfg);
		return 0;
	}

	log_init("stemedb-api", cfg.log_level);
	if (sodium_init() < 0 || evthread_use_pthreads() != 0) {
		log_error("sodium_init or evthread_use_pthreads failed; the process cannot run");
		api_config_free(&cfg);
		return 1;
	}

	status = run(&cfg);
	api_config_free(&cfg);
	return status;
}
