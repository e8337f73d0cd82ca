/* The archive command in the style of PostgreSQL's archive_command: a shell command
 * template in which %p becomes the segment's full path, %f its file name and %% a
 * literal percent sign. */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "archiver.h"
#include "stemedb/buf.h"

#define WAIT_STEP_NS 5000000L /* 5 ms between checks on the child */

/* Appends text in single quotes, writing each embedded ' as '\'' so that the shell
 * receives exactly the original bytes. */
static void append_quoted(struct buf *out, const char *text)
{
	buf_put_u8(out, '\'');
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == '\'')
			buf_append(out, "'\\''", 4);
		else
			buf_put_u8(out, (uint8_t)*p);
	}
	buf_put_u8(out, '\'');
}

char *archive_command_expand(const char *template, const char *path, const char *file_name,
                             char *err, size_t err_size)
{
	struct buf out;

	buf_init(&out);
	for (const char *p = template; *p != '\0'; p++) {
		if (*p != '%') {
			buf_put_u8(&out, (uint8_t)*p);
			continue;
		}
		p++;
		if (*p == 'p') {
			append_quoted(&out, path);
		} else if (*p == 'f') {
			append_quoted(&out, file_name);
		} else if (*p == '%') {
			buf_put_u8(&out, '%');
		} else {
			snprintf(err, err_size,
			         "the archive command \"%s\" contains %%%c; use %%p for the path, "
			         "%%f for the file name or %%%% for a percent sign",
			         template, *p == '\0' ? ' ' : *p);
			buf_free(&out);
			return NULL;
		}
	}
	buf_put_u8(&out, '\0');
	return (char *)out.data;
}

static void describe_status(int status, char *err, size_t err_size)
{
	if (WIFEXITED(status))
		snprintf(err, err_size, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(err, err_size, "was killed by signal %d (%s)", WTERMSIG(status),
		         strsignal(WTERMSIG(status)));
	else
		snprintf(err, err_size, "ended with wait status %d", status);
}

/* Waits for pid until timeout_ms passes; then kills it. Returns the wait status, or -1
 * after a timeout. */
static int wait_child(pid_t pid, uint64_t timeout_ms)
{
	const struct timespec step = {0, WAIT_STEP_NS};
	uint64_t waited_ns = 0;
	int status = 0;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		if (r < 0 && errno != EINTR)
			return -1;
		if (waited_ns >= timeout_ms * 1000000ull)
			break;
		nanosleep(&step, NULL);
		waited_ns += WAIT_STEP_NS;
	}
	kill(-pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

bool archive_command_run(const char *command, uint64_t timeout_ms, char *err, size_t err_size)
{
	pid_t pid = fork();
	int status;

	if (pid < 0) {
		snprintf(err, err_size, "fork() for the command failed: %s", strerror(errno));
		return false;
	}
	if (pid == 0) {
		/* A process group of its own lets a timeout kill the commands the shell started
		 * too, not only the shell. */
		setpgid(0, 0);
		execl("/bin/sh", "sh", "-c", command, (char *)NULL);
		_exit(127);
	}

	status = wait_child(pid, timeout_ms);
	if (status == -1) {
		snprintf(err, err_size, "timed out after %llu ms and was killed",
		         (unsigned long long)timeout_ms);
		return false;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return true;
	describe_status(status, err, err_size);
	return false;
}
