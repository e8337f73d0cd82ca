/* stemedb-walarchiver: ships every sealed WAL segment of the local stemedb-api to an
 * archive and reports the archived watermark to it. The archiving runs on its own
 * thread, because an archive command may legitimately take minutes. The main thread
 * runs a libevent loop for the stop signals and the systemd watchdog. */

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archiver.h"
#include "stemedb/daemon.h"
#include "stemedb/ipc.h"
#include "stemedb/log.h"

#define METRICS_FILE_NAME "walarchiver.prom"

static void on_stop(void *ctx, int signo)
{
	struct event_base *base = ctx;

	log_info("stopping on %s", strsignal(signo));
	daemon_notify_stopping("stopping on %s", strsignal(signo));
	event_base_loopbreak(base);
}

static int run(const struct archiver_config *cfg)
{
	char run_dir[4096], socket_path[4096], metrics_path[4200], err[512];
	struct event_base *base = NULL;
	struct daemon_signals *signals = NULL;
	struct daemon_watchdog *watchdog = NULL;
	struct archiver *a = NULL;
	int status = 1;

	if (!daemon_resolve_run_dir(cfg->run_dir, cfg->data_dir, run_dir, sizeof(run_dir), err,
	                            sizeof(err)) ||
	    !daemon_socket_path(run_dir, IPC_API_SOCKET_NAME, socket_path, sizeof(socket_path), err,
	                        sizeof(err))) {
		log_error("%s", err);
		return 1;
	}
	snprintf(metrics_path, sizeof(metrics_path), "%s/%s", run_dir, METRICS_FILE_NAME);

	base = event_base_new();
	if (base == NULL) {
		log_error("event_base_new() failed");
		goto done;
	}
	signals = daemon_signals_install(base, on_stop, base);
	watchdog = daemon_watchdog_start(base);
	a = archiver_new(cfg, socket_path, metrics_path);
	if (signals == NULL || !archiver_start(a))
		goto done;

	log_info("started: WAL dir %s, archive %s%s, api socket %s, metrics file %s", cfg->wal_dir,
	         cfg->archive_dir[0] != '\0' ? "directory " : "command ",
	         cfg->archive_dir[0] != '\0' ? cfg->archive_dir : cfg->archive_command, socket_path,
	         metrics_path);
	daemon_notify_ready("archiving %s", cfg->wal_dir);
	event_base_dispatch(base);
	status = 0;

done:
	if (a != NULL) {
		archiver_stop(a);
		archiver_free(a);
	}
	daemon_watchdog_stop(watchdog);
	daemon_signals_free(signals);
	if (base != NULL)
		event_base_free(base);
	log_info("stopped");
	return status;
}

int main(int argc, char **argv)
{
	struct archiver_config cfg;
	bool help = false;
	char err[512];
	int status;

	if (!archiver_config_load(&cfg, argc, argv, &help, err, sizeof(err))) {
		fprintf(stderr, "stemedb-walarchiver: %s\n", err);
		archiver_config_free(&cfg);
		return 2;
	}
	if (help) {
		archiver_config_free(&cfg);
		return 0;
	}

	log_init("stemedb-walarchiver", cfg.log_level);
	status = run(&cfg);
	archiver_config_free(&cfg);
	return status;
}
