#ifndef STEMEDB_LOG_H
#define STEMEDB_LOG_H

/* Logging: to journald (with structured fields PRIORITY and SYSLOG_IDENTIFIER) when
 * stderr is connected to the journal, else one line per message to stderr:
 * "2026-12-04T20:06:14.123Z info stemedb-api: message". Thread-safe. */

#include <stdarg.h>

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

void log_init(const char *program, enum log_level min_level);
void log_set_level(enum log_level min_level);
/* Parses debug, info, warn or error. */
int log_level_parse(const char *text, enum log_level *out);

void log_message(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_message(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_message(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...)  log_message(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_message(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
