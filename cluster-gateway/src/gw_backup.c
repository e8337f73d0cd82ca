#include "gw_backup.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stemedb/log.h"

extern char **environ;

/* Bytes of stemedb-ctl output kept for the reply and the log; the last ones matter. */
#define GW_BACKUP_OUTPUT_MAX 2048

struct child_output {
	char text[GW_BACKUP_OUTPUT_MAX];
	size_t len;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Finds stemedb-ctl in the directory of the running executable, because make install
 * and the build tree both put the two programs side by side. */
static bool find_ctl(char *out, size_t out_size)
{
	char self[4096];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (len <= 0)
		return false;
	self[len] = '\0';
	snprintf(out, out_size, "%s/stemedb-ctl", dirname(self));
	return access(out, X_OK) == 0;
}

/* Keeps the last bytes of the output when there is more than fits. */
static void append_output(struct child_output *o, const char *data, size_t len)
{
	if (len >= sizeof(o->text) - 1) {
		data += len - (sizeof(o->text) - 1);
		len = sizeof(o->text) - 1;
	}
	if (o->len + len > sizeof(o->text) - 1) {
		size_t drop = o->len + len - (sizeof(o->text) - 1);

		memmove(o->text, o->text + drop, o->len - drop);
		o->len -= drop;
	}
	memcpy(o->text + o->len, data, len);
	o->len += len;
	o->text[o->len] = '\0';
}

/* Reads the child's output until EOF or the deadline. Returns false on timeout. */
static bool collect_output(int fd, uint64_t deadline, struct child_output *o)
{
	char chunk[512];

	for (;;) {
		uint64_t now = now_ms();
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (now >= deadline)
			return false;
		if (poll(&p, 1, (int)(deadline - now > 1000 ? 1000 : deadline - now)) <= 0)
			continue;
		n = read(fd, chunk, sizeof(chunk));
		if (n == 0)
			return true;
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			return true;
		if (n > 0)
			append_output(o, chunk, (size_t)n);
	}
}

static pid_t spawn_ctl(const char *ctl, char *const argv[], int *read_fd, char *message,
                       size_t message_size)
{
	posix_spawn_file_actions_t actions;
	int pipe_fds[2];
	pid_t pid = -1;
	int rc;

	if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
		snprintf(message, message_size, "pipe2 failed: %s", strerror(errno));
		return -1;
	}
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
	posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	rc = posix_spawn(&pid, ctl, &actions, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&actions);
	close(pipe_fds[1]);

	if (rc != 0) {
		close(pipe_fds[0]);
		snprintf(message, message_size, "posix_spawn of %s failed: %s", ctl, strerror(rc));
		return -1;
	}
	*read_fd = pipe_fds[0];
	return pid;
}

static json_t *load_manifest(const char *dest, char *message, size_t message_size)
{
	char path[4200];
	json_error_t error;
	json_t *manifest;

	snprintf(path, sizeof(path), "%s/MANIFEST.json", dest);
	manifest = json_load_file(path, 0, &error);
	if (manifest == NULL || !json_is_object(manifest)) {
		snprintf(message, message_size,
		         "stemedb-ctl reported success but %s cannot be read: %s", path,
		         manifest == NULL ? error.text : "not a JSON object");
		json_decref(manifest);
		return NULL;
	}
	return manifest;
}

/* Removes the trailing newline and prefixes the program name once. */
static void describe_failure(const struct child_output *o, int status, char *message,
                             size_t message_size)
{
	char text[GW_BACKUP_OUTPUT_MAX];

	snprintf(text, sizeof(text), "%s", o->text);
	while (text[0] != '\0' && text[strlen(text) - 1] == '\n')
		text[strlen(text) - 1] = '\0';
	if (WIFEXITED(status))
		snprintf(message, message_size, "stemedb-ctl backup exited with status %d: %s",
		         WEXITSTATUS(status), text[0] != '\0' ? text : "no output");
	else
		snprintf(message, message_size, "stemedb-ctl backup was killed by signal %d",
		         WTERMSIG(status));
}

enum gw_backup_result gw_backup_run(const struct gw_config *cfg, const char *dest,
                                    json_t **manifest, char *message, size_t message_size)
{
	struct child_output output = {.len = 0};
	char ctl[4200];
	char *argv[] = {ctl,          "backup",      "--dest",
	                (char *)dest, "--socket",    (char *)cfg->api_socket,
	                "--data-dir", cfg->data_dir, NULL};
	uint64_t deadline = now_ms() + cfg->admin_timeout_ms;
	int fd = -1, status = 0;
	bool finished;
	pid_t pid;

	*manifest = NULL;
	if (!find_ctl(ctl, sizeof(ctl))) {
		snprintf(message, message_size,
		         "%s is missing or not executable; install stemedb-ctl next to "
		         "stemedb-gateway",
		         ctl);
		return GW_BACKUP_NOT_STARTED;
	}
	pid = spawn_ctl(ctl, argv, &fd, message, message_size);
	if (pid < 0)
		return GW_BACKUP_NOT_STARTED;

	finished = collect_output(fd, deadline, &output);
	close(fd);
	if (!finished)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;

	if (!finished) {
		snprintf(message, message_size,
		         "stemedb-ctl backup did not finish within %llu ms and was killed; %s is "
		         "incomplete, so delete it",
		         (unsigned long long)cfg->admin_timeout_ms, dest);
		return GW_BACKUP_TIMED_OUT;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		describe_failure(&output, status, message, message_size);
		return WIFEXITED(status) && WEXITSTATUS(status) == 2 ? GW_BACKUP_REJECTED
		                                                     : GW_BACKUP_FAILED;
	}

	*manifest = load_manifest(dest, message, message_size);
	return *manifest != NULL ? GW_BACKUP_OK : GW_BACKUP_FAILED;
}
