/* Logging to journald or to stderr. systemd sets JOURNAL_STREAM to "<device>:<inode>"
 * of the stream it connected to stderr. When fd 2 is still that stream, messages go to
 * the journal with structured fields instead of as plain lines. */
#include "stemedb/log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <systemd/sd-journal.h>
#include <time.h>

static const char *const LEVEL_NAMES[] = {"debug", "info", "warn", "error"};
static const int LEVEL_PRIORITIES[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};

static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;
static char log_program[64] = "stemedb";
static enum log_level log_min_level = LOG_LEVEL_INFO;
static bool log_to_journal;

/* Compares JOURNAL_STREAM with the device and inode of fd 2. */
static bool stderr_is_journal(void)
{
	const char *stream = getenv("JOURNAL_STREAM");
	uintmax_t device;
	uintmax_t inode;
	struct stat st;

	if (stream == NULL || sscanf(stream, "%ju:%ju", &device, &inode) != 2)
		return false;
	if (fstat(2, &st) != 0)
		return false;
	return (uintmax_t)st.st_dev == device && (uintmax_t)st.st_ino == inode;
}

void log_init(const char *program, enum log_level min_level)
{
	pthread_mutex_lock(&log_mutex);
	snprintf(log_program, sizeof(log_program), "%s", program ? program : "stemedb");
	log_min_level = min_level;
	log_to_journal = stderr_is_journal();
	pthread_mutex_unlock(&log_mutex);
}

void log_set_level(enum log_level min_level)
{
	pthread_mutex_lock(&log_mutex);
	log_min_level = min_level;
	pthread_mutex_unlock(&log_mutex);
}

int log_level_parse(const char *text, enum log_level *out)
{
	for (int i = LOG_LEVEL_DEBUG; i <= LOG_LEVEL_ERROR; i++) {
		if (text != NULL && strcmp(text, LEVEL_NAMES[i]) == 0) {
			*out = (enum log_level)i;
			return 1;
		}
	}
	return 0;
}

/* Writes "2026-12-04T20:06:14.123Z" (UTC, milliseconds) into out. */
static void format_timestamp(char *out, size_t out_size)
{
	struct timespec now;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	size_t len = strftime(out, out_size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + len, out_size - len, ".%03dZ", (int)(now.tv_nsec / 1000000 % 1000));
}

/* Emits one message; the caller holds log_mutex. */
static void emit(enum log_level level, const char *message)
{
	if (log_to_journal) {
		sd_journal_send("MESSAGE=%s", message, "PRIORITY=%d", LEVEL_PRIORITIES[level],
		                "SYSLOG_IDENTIFIER=%s", log_program, NULL);
		return;
	}

	char timestamp[64];
	format_timestamp(timestamp, sizeof(timestamp));
	fprintf(stderr, "%s %s %s: %s\n", timestamp, LEVEL_NAMES[level], log_program, message);
	fflush(stderr);
}

void log_message(enum log_level level, const char *fmt, ...)
{
	int saved_errno = errno;
	char message[2048];
	va_list args;

	if (level < LOG_LEVEL_DEBUG || level > LOG_LEVEL_ERROR)
		level = LOG_LEVEL_ERROR;

	va_start(args, fmt);
	vsnprintf(message, sizeof(message), fmt, args);
	va_end(args);

	/* One message is one line on stderr, so a newline inside it becomes a space. */
	for (char *p = message; *p != '\0'; p++) {
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	}

	pthread_mutex_lock(&log_mutex);
	if (level >= log_min_level)
		emit(level, message);
	pthread_mutex_unlock(&log_mutex);
	errno = saved_errno;
}
