/* stemedb-gateway: the internal HTTP port of a StemeDB node (18181 by default). It
 * serves the node's aggregate health, its own metrics, the cluster status and the
 * admin endpoints, and reaches the data only through stemedb-api's Unix socket. One
 * event loop serves HTTP; blocking IPC calls run on job threads. SIGTERM or SIGINT
 * stops it after the open calls have replied. */

#include <event2/event.h>
#include <event2/thread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_auth.h"
#include "gw_config.h"
#include "gw_http.h"
#include "gw_ipc.h"
#include "gw_metrics.h"
#include "stemedb/daemon.h"
#include "stemedb/hex.h"
#include "stemedb/log.h"

/* How long a stop waits for job threads to return before the process exits anyway.
 * Health and status calls end within their deadline; a compaction may not. */
#define GW_STOP_WAIT_MS 5000

/* Tokens shorter than this are accepted with a warning. */
#define GW_ADMIN_TOKEN_WEAK_LENGTH 16

struct stop_state {
	struct event_base *base;
	int signal_number;
};

static void on_stop(void *ctx, int signo)
{
	struct stop_state *stop = ctx;

	stop->signal_number = signo;
	event_base_loopbreak(stop->base);
}

/* Names the public key that signs trust outcomes, which stemedb-api must list in
 * STEMEDB_TRUST_AUTHORITY_KEYS. */
static void log_trust_signer(const struct gw_config *cfg)
{
	char public_key[65];

	if (!cfg->has_admin_signing_key) {
		log_info("STEMEDB_ADMIN_SIGNING_KEY_FILE is not set, so POST "
		         "/v1/admin/trust/outcome "
		         "returns 503");
		return;
	}
	hex_encode(cfg->admin_signing_key + 32, 32, public_key);
	log_info("trust outcomes are signed by %s from %s", public_key,
	         cfg->admin_signing_key_file);
}

static void warn_about_token(const struct gw_config *cfg)
{
	size_t len = strlen(cfg->admin_token);

	if (len == 0 && cfg->auth_enabled)
		log_info("STEMEDB_ADMIN_TOKEN is not set and STEMEDB_AUTH_ENABLED is true, so the "
		         "admin endpoints require an admin-scope API key in X-API-Key");
	else if (len == 0)
		log_warn("STEMEDB_ADMIN_TOKEN is not set, so the admin endpoints accept every "
		         "client that can reach %s; set a token unless that listener is private",
		         cfg->listen);
	else if (len < GW_ADMIN_TOKEN_WEAK_LENGTH)
		log_warn("STEMEDB_ADMIN_TOKEN has only %zu characters; use at least %d random "
		         "ones (for instance the output of `openssl rand -hex 32`)",
		         len, GW_ADMIN_TOKEN_WEAK_LENGTH);
}

/* Keeps the loop running until every job thread has come back, so that no thread
 * schedules its reply on a freed event base. Returns false when time ran out. */
static bool wait_for_jobs(struct gateway *gw)
{
	const struct timeval tick = {0, 20000};
	uint64_t deadline = gw_now_ns() + (uint64_t)GW_STOP_WAIT_MS * 1000000u;

	while (atomic_load(&gw->jobs_running) > 0 && gw_now_ns() < deadline) {
		event_base_loopexit(gw->base, &tick);
		event_base_dispatch(gw->base);
	}
	return atomic_load(&gw->jobs_running) == 0;
}

static int run(const struct gw_config *cfg)
{
	struct gateway gw = {.config = cfg, .started_ns = gw_now_ns()};
	struct stop_state stop = {0};
	struct daemon_signals *signals = NULL;
	struct daemon_watchdog *watchdog = NULL;
	struct gw_http_server *server = NULL;
	char err[512];
	int status = 1;

	gw.base = event_base_new();
	if (gw.base == NULL) {
		log_error("event_base_new failed");
		return 1;
	}
	stop.base = gw.base;

	gw_metrics_register();
	gw_auth_init(cfg->admin_token);
	signals = daemon_signals_install(gw.base, on_stop, &stop);
	server = gw_http_start(&gw, err, sizeof(err));
	if (signals == NULL || server == NULL) {
		log_error("%s", server == NULL ? err : "installing the signal events failed");
		goto done;
	}

	watchdog = daemon_watchdog_start(gw.base);
	log_info("started: listening on %s, stemedb-api socket %s, admin token %s, admin API "
	         "keys %s",
	         cfg->listen, cfg->api_socket,
	         cfg->admin_token[0] != '\0' ? "required" : "not required",
	         cfg->auth_enabled ? "accepted" : "not accepted");
	warn_about_token(cfg);
	log_trust_signer(cfg);
	daemon_notify_ready("serving on %s", cfg->listen);

	event_base_dispatch(gw.base);

	log_info("stopping on %s", strsignal(stop.signal_number));
	daemon_notify_stopping("stopping");
	gw_http_stop_accepting(server);
	if (!wait_for_jobs(&gw)) {
		/* A job thread still blocks in an IPC call. Freeing the loop now would let
		 * it reply into freed memory, so the process exits with the loop allocated. */
		log_warn("%u calls to stemedb-api were still open after %d ms; their replies are "
		         "lost",
		         atomic_load(&gw.jobs_running), GW_STOP_WAIT_MS);
		log_info("stopped");
		exit(0);
	}
	status = 0;
	gw_ipc_free_idle();
	log_info("stopped");

done:
	daemon_watchdog_stop(watchdog);
	gw_http_free(server);
	daemon_signals_free(signals);
	event_base_free(gw.base);
	return status;
}

int main(int argc, char **argv)
{
	struct gw_config cfg;
	bool help = false;
	char err[512];
	int status;

	if (!gw_config_load(&cfg, argc, argv, &help, err, sizeof(err))) {
		fprintf(stderr, "stemedb-gateway: %s\n", err);
		gw_config_free(&cfg);
		return 2;
	}
	if (help) {
		gw_config_free(&cfg);
		return 0;
	}

	log_init("stemedb-gateway", cfg.log_level);
	if (sodium_init() < 0 || evthread_use_pthreads() != 0) {
		log_error("sodium_init or evthread_use_pthreads failed; the process cannot run");
		gw_config_free(&cfg);
		return 1;
	}

	status = run(&cfg);
	gw_config_free(&cfg);
	return status;
}
