/* stemedb-ctl: the StemeDB client and operator CLI. Global options come before the
 * command; each command parses its own options (see --help). */

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_backup.h"
#include "ctl_ipc.h"
#include "stemedb/log.h"

static const char usage_text[] =
        "usage: stemedb-ctl [--url URL] COMMAND [OPTIONS]\n"
        "\n"
        "Commands:\n"
        "  keygen    create an Ed25519 agent key file\n"
        "  assert    sign and write one assertion\n"
        "  query     resolve a subject and predicate through a lens\n"
        "  skeptic   show the conflicting claims of a subject and predicate\n"
        "  health    show the node's health\n"
        "  import    turn a JSON or JSON Lines file into signed assertions\n"
        "  backup    take a consistent backup of a running node\n"
        "  verify    check a backup or a data directory offline\n"
        "  restore   restore a backup, optionally up to a point in time\n"
        "  ipc       call stemedb-api over api.sock (stats, ready, get, subscribe, ...)\n"
        "  keys      create, list and revoke API keys over api.sock\n"
        "  breakers  list, ban or reset per-agent circuit breakers over api.sock\n"
        "  quarantine  list, approve or reject quarantined assertions over api.sock\n"
        "\n"
        "Options:\n"
        "  --url URL   server base URL (default $STEMEDB_API_URL, else " CTL_DEFAULT_URL ")\n"
        "  --help      show this help; `stemedb-ctl COMMAND --help` shows a command's\n"
        "\n"
        "Exit status: 0 success, 1 the server rejected a request or item, 2 usage, local\n"
        "or transport error.\n";

void ctl_error(const char *fmt, ...)
{
	va_list ap;

	fputs("stemedb-ctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

typedef int (*http_command_fn)(struct ctl_http *http, int argc, char **argv);

static const struct {
	const char *name;
	http_command_fn run;
} http_commands[] = {
        {"assert", ctl_cmd_assert}, {"query", ctl_cmd_query},   {"skeptic", ctl_cmd_skeptic},
        {"health", ctl_cmd_health}, {"import", ctl_cmd_import},
};

/* Commands that work on local files and sockets, not through the HTTP API. */
static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} local_commands[] = {
        {"backup", ctl_cmd_backup},         {"verify", ctl_cmd_verify},
        {"restore", ctl_cmd_restore},       {"ipc", ctl_cmd_ipc},
        {"keys", ctl_cmd_apikeys},          {"breakers", ctl_cmd_breakers},
        {"quarantine", ctl_cmd_quarantine},
};

static int run_http_command(http_command_fn run, const char *url, int argc, char **argv)
{
	struct ctl_http *http = ctl_http_new(url);
	int status;

	if (http == NULL)
		return CTL_EXIT_USAGE;
	status = run(http, argc, argv);
	ctl_http_free(http);
	return status;
}

static int dispatch(const char *url, int argc, char **argv)
{
	const char *command = argv[0];

	if (strcmp(command, "keygen") == 0)
		return ctl_cmd_keygen(argc, argv);
	for (size_t i = 0; i < sizeof(local_commands) / sizeof(local_commands[0]); i++) {
		if (strcmp(command, local_commands[i].name) == 0)
			return local_commands[i].run(argc, argv);
	}
	for (size_t i = 0; i < sizeof(http_commands) / sizeof(http_commands[0]); i++) {
		if (strcmp(command, http_commands[i].name) == 0)
			return run_http_command(http_commands[i].run, url, argc, argv);
	}
	if (strcmp(command, "help") == 0) {
		fputs(usage_text, stdout);
		return CTL_EXIT_OK;
	}
	ctl_error("unknown command \"%s\"; run `stemedb-ctl --help` for the list", command);
	return CTL_EXIT_USAGE;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
	        {"url", required_argument, NULL, 'u'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *url = getenv("STEMEDB_API_URL");
	int opt;

	log_init("stemedb-ctl", LOG_LEVEL_INFO);
	if (url == NULL || url[0] == '\0')
		url = CTL_DEFAULT_URL;

	/* "+" stops at the command name, so command options are left for the command. */
	while ((opt = getopt_long(argc, argv, "+", options, NULL)) != -1) {
		if (opt == 'u') {
			url = optarg;
		} else if (opt == 'h') {
			fputs(usage_text, stdout);
			return CTL_EXIT_OK;
		} else {
			fputs(usage_text, stderr);
			return CTL_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		ctl_error("no command given; run `stemedb-ctl --help` for the list");
		return CTL_EXIT_USAGE;
	}

	/* Each command parses its own argv from index 1 with a fresh getopt state. */
	argc -= optind;
	argv += optind;
	optind = 0;
	return dispatch(url, argc, argv);
}
