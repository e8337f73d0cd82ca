/* systemd notifications, the watchdog timer, run and data directories, and stop
 * signals as libevent events. */

#include "stemedb/daemon.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include "stemedb/log.h"

static void notify_with_status(const char *state, const char *fmt, va_list ap)
{
	char status[512];
	int rc;

	vsnprintf(status, sizeof(status), fmt, ap);
	if (state != NULL)
		rc = sd_notifyf(0, "%s\nSTATUS=%s", state, status);
	else
		rc = sd_notifyf(0, "STATUS=%s", status);
	if (rc < 0)
		log_warn("sd_notify(%s) failed: %s", state != NULL ? state : "STATUS",
		         strerror(-rc));
}

void daemon_notify_ready(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	notify_with_status("READY=1", fmt, ap);
	va_end(ap);
}

void daemon_notify_stopping(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	notify_with_status("STOPPING=1", fmt, ap);
	va_end(ap);
}

void daemon_notify_status(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	notify_with_status(NULL, fmt, ap);
	va_end(ap);
}

struct daemon_watchdog {
	struct event *timer;
	uint64_t interval_usec;
};

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	sd_notify(0, "WATCHDOG=1");
}

struct daemon_watchdog *daemon_watchdog_start(struct event_base *base)
{
	struct daemon_watchdog *w;
	uint64_t usec = 0;
	struct timeval half;
	int rc;

	rc = sd_watchdog_enabled(0, &usec);
	if (rc < 0)
		log_warn("sd_watchdog_enabled failed: %s; the watchdog stays off", strerror(-rc));
	if (rc <= 0 || usec == 0)
		return NULL;

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		abort();
	w->interval_usec = usec;
	half.tv_sec = (time_t)(usec / 2 / 1000000u);
	half.tv_usec = (suseconds_t)(usec / 2 % 1000000u);
	w->timer = event_new(base, -1, EV_PERSIST, watchdog_cb, w);
	event_add(w->timer, &half);
	sd_notify(0, "WATCHDOG=1");
	log_info("systemd watchdog enabled: interval %llu ms, pings every %llu ms",
	         (unsigned long long)(usec / 1000u), (unsigned long long)(usec / 2000u));
	return w;
}

uint64_t daemon_watchdog_interval_usec(const struct daemon_watchdog *w)
{
	return w != NULL ? w->interval_usec : 0;
}

void daemon_watchdog_stop(struct daemon_watchdog *w)
{
	if (w == NULL)
		return;
	event_free(w->timer);
	free(w);
}

/* Copies the first entry of a colon-separated systemd directory list, or returns
 * false when the variable is unset or empty. */
static bool first_dir_entry(const char *variable, char *out, size_t out_size)
{
	const char *value = getenv(variable);
	size_t len;

	if (value == NULL || value[0] == '\0')
		return false;
	len = strcspn(value, ":");
	if (len == 0 || len >= out_size)
		return false;
	memcpy(out, value, len);
	out[len] = '\0';
	return true;
}

bool daemon_default_data_dir(char *out, size_t out_size)
{
	if (first_dir_entry("STATE_DIRECTORY", out, out_size))
		return true;
	return (size_t)snprintf(out, out_size, "./var") < out_size;
}

bool daemon_resolve_run_dir(const char *configured, const char *data_dir, char *out,
                            size_t out_size, char *err, size_t err_size)
{
	struct stat st;
	int n;

	if (configured != NULL && configured[0] != '\0')
		n = snprintf(out, out_size, "%s", configured);
	else if (first_dir_entry("RUNTIME_DIRECTORY", out, out_size))
		n = (int)strlen(out);
	else
		n = snprintf(out, out_size, "%s/run", data_dir);
	if (n < 0 || (size_t)n >= out_size) {
		snprintf(err, err_size, "the run directory path is longer than %zu bytes",
		         out_size - 1);
		return false;
	}

	if (mkdir(out, 0750) != 0 && errno != EEXIST) {
		snprintf(err, err_size,
		         "mkdir(\"%s\") of the run directory failed: %s; create it or "
		         "set STEMEDB_RUN_DIR",
		         out, strerror(errno));
		return false;
	}
	if (stat(out, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, err_size,
		         "run directory %s is not a directory; set STEMEDB_RUN_DIR to "
		         "a directory",
		         out);
		return false;
	}
	return true;
}

bool daemon_socket_path(const char *run_dir, const char *name, char *out, size_t out_size,
                        char *err, size_t err_size)
{
	size_t limit = sizeof(((struct sockaddr_un *)0)->sun_path);
	int n = snprintf(out, out_size, "%s/%s", run_dir, name);

	if (n < 0 || (size_t)n >= out_size || (size_t)n >= limit) {
		snprintf(err, err_size,
		         "socket path %s/%s is longer than %zu bytes; set "
		         "STEMEDB_RUN_DIR to a shorter directory",
		         run_dir, name, limit - 1);
		return false;
	}
	return true;
}

struct daemon_signals {
	struct event *term, *interrupt;
	void (*on_stop)(void *ctx, int signo);
	void *ctx;
};

static void signal_cb(evutil_socket_t signo, short what, void *arg)
{
	struct daemon_signals *s = arg;

	(void)what;
	s->on_stop(s->ctx, (int)signo);
}

struct daemon_signals *daemon_signals_install(struct event_base *base,
                                              void (*on_stop)(void *ctx, int signo), void *ctx)
{
	struct daemon_signals *s = calloc(1, sizeof(*s));

	if (s == NULL)
		abort();
	signal(SIGPIPE, SIG_IGN);
	s->on_stop = on_stop;
	s->ctx = ctx;
	s->term = evsignal_new(base, SIGTERM, signal_cb, s);
	s->interrupt = evsignal_new(base, SIGINT, signal_cb, s);
	evsignal_add(s->term, NULL);
	evsignal_add(s->interrupt, NULL);
	return s;
}

void daemon_signals_free(struct daemon_signals *s)
{
	if (s == NULL)
		return;
	event_free(s->term);
	event_free(s->interrupt);
	free(s);
}
