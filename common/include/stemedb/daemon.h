#ifndef STEMEDB_DAEMON_H
#define STEMEDB_DAEMON_H

/* Plumbing shared by the StemeDB daemons: systemd notifications (sd_notify), the
 * watchdog, the run and data directories, and SIGTERM/SIGINT as libevent events.
 * Without systemd (NOTIFY_SOCKET unset) every notification is a no-op. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

/* Sends READY=1 with STATUS=<formatted text>. Call it once recovery has finished and
 * the daemon serves its sockets. */
void daemon_notify_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sends STOPPING=1 with STATUS=<formatted text> when a graceful stop begins. */
void daemon_notify_stopping(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sends STATUS=<formatted text>, shown by systemctl status. */
void daemon_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct daemon_watchdog;

/* When systemd enabled the watchdog for this process (sd_watchdog_enabled, from
 * WatchdogSec=), adds a persistent timer to base that sends WATCHDOG=1 at half the
 * interval, so a stuck loop stops the pings and systemd restarts the daemon. Returns
 * NULL when the watchdog is not enabled, which is not an error. */
struct daemon_watchdog *daemon_watchdog_start(struct event_base *base);

/* Watchdog interval in microseconds that systemd requested, 0 when disabled. */
uint64_t daemon_watchdog_interval_usec(const struct daemon_watchdog *w);
void daemon_watchdog_stop(struct daemon_watchdog *w);

/* Data directory default: the first entry of $STATE_DIRECTORY (set by systemd from
 * StateDirectory=), else "./var". Writes it to out; false when it does not fit. */
bool daemon_default_data_dir(char *out, size_t out_size);

/* Run directory for the sockets: configured (STEMEDB_RUN_DIR) when not empty, else the
 * first entry of $RUNTIME_DIRECTORY (systemd RuntimeDirectory=), else <data_dir>/run.
 * Creates it with mode 0750 when missing. Returns false with a message in err that
 * names the path when it cannot be created or is not a directory. */
bool daemon_resolve_run_dir(const char *configured, const char *data_dir, char *out,
                            size_t out_size, char *err, size_t err_size);

/* Joins run_dir and a socket file name (IPC_*_SOCKET_NAME). Returns false, with a
 * message in err, when the result exceeds the sun_path limit of 108 bytes. */
bool daemon_socket_path(const char *run_dir, const char *name, char *out, size_t out_size,
                        char *err, size_t err_size);

struct daemon_signals;

/* Turns SIGTERM and SIGINT into events on base: on_stop runs on the loop's thread
 * with the signal number, once per delivered signal. Also ignores SIGPIPE, because
 * writes to closed sockets must fail with EPIPE instead of killing the daemon. */
struct daemon_signals *daemon_signals_install(struct event_base *base,
                                              void (*on_stop)(void *ctx, int signo), void *ctx);
void daemon_signals_free(struct daemon_signals *s);

#endif
