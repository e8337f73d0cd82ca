/* `stemedb-ctl ipc`: calls stemedb-api over api.sock and prints each reply as one JSON
 * object per line, for operators and for the integration tests. */

#include "ctl_ipc.h"

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stemedb/hex.h"
#include "stemedb/ipc.h"

static const char usage_text[] =
        "usage: stemedb-ctl ipc [--socket PATH] [--timeout-ms N] CALL [ARG]\n"
        "\n"
        "Calls:\n"
        "  stats                 node statistics\n"
        "  ready                 readiness and health\n"
        "  get HASH              stored envelope of one assertion (64 hex digits)\n"
        "  watermark             archived WAL watermark\n"
        "  set-watermark OFFSET  report segments archived up to OFFSET\n"
        "  checkpoint DIR        RocksDB checkpoint into DIR (absolute, must not exist)\n"
        "  compact               compact every column family\n"
        "  rebuild               start an index rebuild\n"
        "  subscribe             print an event per stored assertion; stops after\n"
        "                        --count events (0: never) or --timeout-ms of silence\n"
        "\n"
        "Options:\n"
        "  --socket PATH     api.sock (default $STEMEDB_RUN_DIR/api.sock, else\n"
        "                    ./var/run/api.sock)\n"
        "  --timeout-ms N    deadline of the call in milliseconds (default 5000)\n"
        "  --count N         subscribe: events to print before exiting (default 0)\n";

struct ipc_opts {
	char socket[4096];
	uint32_t timeout_ms;
	uint64_t count;
};

static void print_json(json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);

	printf("%s\n", text);
	fflush(stdout);
	free(text);
	json_decref(obj);
}

static json_t *hex_value(const uint8_t *data, size_t len)
{
	char *text = malloc(len * 2 + 1);
	json_t *value;

	if (text == NULL)
		abort();
	hex_encode(data, len, text);
	value = json_string(text);
	free(text);
	return value;
}

static json_t *rebuild_json(const Stemedb__Ipc__V1__RebuildProgress *p)
{
	static const char *const states[] = {"idle", "running", "done", "failed"};

	if (p == NULL)
		return json_null();
	return json_pack("{s:s,s:I,s:I,s:I,s:I,s:s}", "state",
	                 (unsigned)p->state < 4 ? states[p->state] : "unknown", "assertions_done",
	                 (json_int_t)p->assertions_done, "assertions_total",
	                 (json_int_t)p->assertions_total, "started_unix_ms",
	                 (json_int_t)p->started_unix_ms, "finished_unix_ms",
	                 (json_int_t)p->finished_unix_ms, "error", p->error);
}

static json_t *stats_json(const Stemedb__Ipc__V1__StatsResponse *s)
{
	json_t *segments = json_array();

	for (size_t i = 0; i < s->n_sealed_segments; i++)
		json_array_append_new(segments,
		                      json_pack("{s:I,s:I,s:s}", "base_offset",
		                                (json_int_t)s->sealed_segments[i]->base_offset,
		                                "size_bytes",
		                                (json_int_t)s->sealed_segments[i]->size_bytes,
		                                "file_name", s->sealed_segments[i]->file_name));
	return json_pack(
	        "{s:I,s:I,s:I,s:o,s:I,s:I,s:b,s:b,s:s,s:s,s:s,s:o,s:I,s:b,s:I}", "assertion_count",
	        (json_int_t)s->assertion_count, "wal_end_offset", (json_int_t)s->wal_end_offset,
	        "wal_segment_count", (json_int_t)s->wal_segment_count, "sealed_segments", segments,
	        "disk_bytes", (json_int_t)s->disk_bytes, "uptime_seconds",
	        (json_int_t)s->uptime_seconds, "ready", s->ready, "healthy", s->healthy,
	        "durability", s->durability, "node_id", s->node_id, "version", s->version,
	        "index_rebuild", rebuild_json(s->index_rebuild), "archived_watermark",
	        (json_int_t)s->archived_watermark, "wal_archive_enabled", s->wal_archive_enabled,
	        "wal_applied_offset", (json_int_t)s->wal_applied_offset);
}

static json_t *event_json(const Stemedb__Ipc__V1__IngestedEvent *e)
{
	return json_pack("{s:s,s:o,s:I,s:i,s:o,s:I,s:I}", "event", "ingested", "hash",
	                 hex_value(e->hash.data, e->hash.len), "hlc_wall_ms",
	                 (json_int_t)e->hlc_wall_ms, "hlc_logical", (int)e->hlc_logical, "node_id",
	                 hex_value(e->node_id.data, e->node_id.len), "size_bytes",
	                 (json_int_t)e->size_bytes, "wal_offset", (json_int_t)e->wal_offset);
}

/* Converts a reply to JSON; NULL for a body this command does not print. */
static json_t *reply_json(const ipc_envelope *r)
{
	switch (r->body_case) {
	case STEMEDB__IPC__V1__ENVELOPE__BODY_STATS_RESPONSE:
		return stats_json(r->stats_response);
	case STEMEDB__IPC__V1__ENVELOPE__BODY_READY_RESPONSE:
		return json_pack("{s:b,s:b,s:s}", "ready", r->ready_response->ready, "healthy",
		                 r->ready_response->healthy, "status", r->ready_response->status);
	case STEMEDB__IPC__V1__ENVELOPE__BODY_GET_ASSERTION_RESPONSE: {
		const Stemedb__Ipc__V1__GetAssertionResponse *g = r->get_assertion_response;

		return json_pack("{s:b,s:o,s:I,s:i,s:o}", "found", g->found, "envelope",
		                 hex_value(g->envelope.data, g->envelope.len), "hlc_wall_ms",
		                 (json_int_t)g->hlc_wall_ms, "hlc_logical", (int)g->hlc_logical,
		                 "hlc_node_id", hex_value(g->hlc_node_id.data, g->hlc_node_id.len));
	}
	case STEMEDB__IPC__V1__ENVELOPE__BODY_ARCHIVED_WATERMARK_RESPONSE: {
		const Stemedb__Ipc__V1__ArchivedWatermarkResponse *w =
		        r->archived_watermark_response;

		return json_pack("{s:I,s:b,s:I,s:I}", "watermark", (json_int_t)w->watermark,
		                 "archive_enabled", w->archive_enabled, "wal_end_offset",
		                 (json_int_t)w->wal_end_offset, "sealed_end_offset",
		                 (json_int_t)w->sealed_end_offset);
	}
	case STEMEDB__IPC__V1__ENVELOPE__BODY_CREATE_CHECKPOINT_RESPONSE: {
		const Stemedb__Ipc__V1__CreateCheckpointResponse *c = r->create_checkpoint_response;

		return json_pack("{s:I,s:I,s:I,s:s}", "wal_cursor", (json_int_t)c->wal_cursor,
		                 "assertion_count", (json_int_t)c->assertion_count,
		                 "created_unix_ms", (json_int_t)c->created_unix_ms, "node_id",
		                 c->node_id);
	}
	case STEMEDB__IPC__V1__ENVELOPE__BODY_COMPACT_RESPONSE:
		return json_pack("{s:I,s:I,s:I}", "disk_bytes_before",
		                 (json_int_t)r->compact_response->disk_bytes_before,
		                 "disk_bytes_after",
		                 (json_int_t)r->compact_response->disk_bytes_after, "duration_ms",
		                 (json_int_t)r->compact_response->duration_ms);
	case STEMEDB__IPC__V1__ENVELOPE__BODY_REBUILD_INDEXES_RESPONSE:
		return rebuild_json(r->rebuild_indexes_response->progress);
	case STEMEDB__IPC__V1__ENVELOPE__BODY_INGESTED_EVENT:
		return event_json(r->ingested_event);
	default:
		return NULL;
	}
}

static bool parse_u64(const char *text, uint64_t *out)
{
	char *end;

	if (text == NULL || text[0] < '0' || text[0] > '9')
		return false;
	*out = strtoull(text, &end, 10);
	return *end == '\0';
}

static int subscribe(const struct ipc_opts *o)
{
	struct ipc_client_options options = {.socket_path = o->socket};
	struct ipc_subscription *s;
	ipc_envelope *event;
	enum ipc_result r;
	char err[512];
	uint64_t printed = 0;

	s = ipc_subscribe(&options, o->timeout_ms, &r, err, sizeof(err));
	if (s == NULL) {
		fprintf(stderr, "stemedb-ctl ipc: subscribing on %s failed: %s: %s\n", o->socket,
		        ipc_result_name(r), err);
		return 1;
	}
	print_json(json_pack("{s:s,s:I}", "event", "subscribed", "wal_end_offset",
	                     (json_int_t)ipc_subscription_start_offset(s)));

	while (o->count == 0 || printed < o->count) {
		r = ipc_subscription_next(s, o->timeout_ms, &event, err, sizeof(err));
		if (r != IPC_OK)
			break;
		json_t *obj = reply_json(event);
		if (obj != NULL) {
			print_json(obj);
			printed++;
		}
		ipc_envelope_free(event);
	}
	ipc_subscription_free(s);
	if (o->count != 0 && printed < o->count) {
		fprintf(stderr,
		        "stemedb-ctl ipc: the subscription ended after %" PRIu64 " of %" PRIu64
		        " events: %s: %s\n",
		        printed, o->count, ipc_result_name(r), err);
		return 1;
	}
	return 0;
}

/* Runs one request-reply call named by argv[0]. Returns 2 on a usage error. */
static int call(const struct ipc_opts *o, int argc, char **argv)
{
	struct ipc_client_options options = {.socket_path = o->socket};
	struct ipc_client *c = ipc_client_new(&options);
	const char *name = argv[0];
	ipc_envelope *reply = NULL;
	enum ipc_result r;
	uint8_t hash[32];
	uint64_t value;
	char err[512];

	if (strcmp(name, "stats") == 0 && argc == 1)
		r = ipc_call_stats(c, o->timeout_ms, &reply, err, sizeof(err));
	else if (strcmp(name, "ready") == 0 && argc == 1)
		r = ipc_call_ready(c, o->timeout_ms, &reply, err, sizeof(err));
	else if (strcmp(name, "get") == 0 && argc == 2 && strlen(argv[1]) == 64 &&
	         hex_decode(argv[1], 64, hash, 32))
		r = ipc_call_get_assertion(c, hash, o->timeout_ms, &reply, err, sizeof(err));
	else if (strcmp(name, "watermark") == 0 && argc == 1)
		r = ipc_call_get_archived_watermark(c, o->timeout_ms, &reply, err, sizeof(err));
	else if (strcmp(name, "set-watermark") == 0 && argc == 2 && parse_u64(argv[1], &value))
		r = ipc_call_set_archived_watermark(c, value, o->timeout_ms, &reply, err,
		                                    sizeof(err));
	else if (strcmp(name, "checkpoint") == 0 && argc == 2)
		r = ipc_call_create_checkpoint(c, argv[1], o->timeout_ms, &reply, err, sizeof(err));
	else if (strcmp(name, "compact") == 0 && argc == 1)
		r = ipc_call_compact(c, o->timeout_ms, &reply, err, sizeof(err));
	else if (strcmp(name, "rebuild") == 0 && argc == 1)
		r = ipc_call_rebuild_indexes(c, o->timeout_ms, &reply, err, sizeof(err));
	else {
		ipc_client_free(c);
		fprintf(stderr, "stemedb-ctl ipc: invalid call or arguments for \"%s\"\n%s", name,
		        usage_text);
		return 2;
	}

	ipc_client_free(c);
	if (r != IPC_OK) {
		fprintf(stderr, "stemedb-ctl ipc %s on %s failed: %s: %s\n", name, o->socket,
		        ipc_result_name(r), err);
		return 1;
	}
	print_json(reply_json(reply));
	ipc_envelope_free(reply);
	return 0;
}

static void default_socket(struct ipc_opts *o)
{
	const char *run = getenv("STEMEDB_RUN_DIR");

	if (run != NULL && run[0] != '\0')
		snprintf(o->socket, sizeof(o->socket), "%.4000s/%s", run, IPC_API_SOCKET_NAME);
	else
		snprintf(o->socket, sizeof(o->socket), "./var/run/%s", IPC_API_SOCKET_NAME);
}

int ctl_cmd_ipc(int argc, char **argv)
{
	static const struct option options[] = {
	        {"socket", required_argument, NULL, 's'},
	        {"timeout-ms", required_argument, NULL, 't'},
	        {"count", required_argument, NULL, 'c'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct ipc_opts o = {.timeout_ms = 5000};
	uint64_t value;
	int opt;

	default_socket(&o);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "+", options, NULL)) != -1) {
		if (opt == 's') {
			snprintf(o.socket, sizeof(o.socket), "%s", optarg);
		} else if (opt == 't' && parse_u64(optarg, &value) && value > 0 &&
		           value <= 86400000) {
			o.timeout_ms = (uint32_t)value;
		} else if (opt == 'c' && parse_u64(optarg, &o.count)) {
			continue;
		} else if (opt == 'h') {
			fputs(usage_text, stdout);
			return 0;
		} else {
			fprintf(stderr,
			        "stemedb-ctl ipc: invalid option value; --timeout-ms takes 1 to "
			        "86400000 and --count a non-negative integer\n%s",
			        usage_text);
			return 2;
		}
	}
	if (optind >= argc) {
		fputs(usage_text, stderr);
		return 2;
	}
	if (strcmp(argv[optind], "subscribe") == 0 && optind + 1 == argc)
		return subscribe(&o);
	return call(&o, argc - optind, argv + optind);
}
