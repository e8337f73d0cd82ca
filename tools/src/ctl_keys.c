/* Agent key files: JSON {"agent_id": hex, "seed": hex} holding an Ed25519 seed, created
 * with mode 0600 and never overwritten. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"
#include "stemedb/hex.h"

static const char keygen_help[] =
        "usage: stemedb-ctl keygen --out FILE\n"
        "\n"
        "Creates a new Ed25519 agent key and writes it to FILE as JSON\n"
        "{\"agent_id\": hex, \"seed\": hex} with mode 0600. An existing FILE is never\n"
        "overwritten. Prints the agent id (the public key, 64 hex characters).\n";

void ctl_key_wipe(struct ctl_key *key)
{
	sodium_memzero(key, sizeof(*key));
}

static bool write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		data += n;
		len -= (size_t)n;
	}
	return true;
}

/* Writes the key file; O_EXCL makes creation fail rather than replace another key. */
static int write_key_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int status = CTL_EXIT_USAGE;

	if (fd < 0) {
		ctl_error("keygen: open(\"%s\") failed: %s%s", path, strerror(errno),
		          errno == EEXIST
		                  ? "; choose another --out file, keys are never overwritten"
		                  : "");
		return CTL_EXIT_USAGE;
	}
	if (fchmod(fd, 0600) != 0 || !write_all(fd, text, strlen(text)) || fsync(fd) != 0) {
		ctl_error("keygen: writing \"%s\" failed: %s", path, strerror(errno));
		unlink(path);
		goto done;
	}
	status = CTL_EXIT_OK;

done:
	close(fd);
	return status;
}

static int generate_key(const char *path)
{
	uint8_t seed[STEMEDB_SEED_LEN];
	struct ctl_key key;
	char seed_hex[2 * STEMEDB_SEED_LEN + 1];
	char id_hex[2 * STEMEDB_AGENT_ID_LEN + 1];
	char text[256];
	int status;

	randombytes_buf(seed, sizeof(seed));
	crypto_sign_seed_keypair(key.agent_id, key.secret_key, seed);
	hex_encode(seed, sizeof(seed), seed_hex);
	hex_encode(key.agent_id, sizeof(key.agent_id), id_hex);
	snprintf(text, sizeof(text), "{\"agent_id\": \"%s\", \"seed\": \"%s\"}\n", id_hex,
	         seed_hex);

	status = write_key_file(path, text);
	if (status == CTL_EXIT_OK)
		printf("%s\n", id_hex);

	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(seed_hex, sizeof(seed_hex));
	sodium_memzero(text, sizeof(text));
	ctl_key_wipe(&key);
	return status;
}

int ctl_cmd_keygen(int argc, char **argv)
{
	static const struct option options[] = {
	        {"out", required_argument, NULL, 'o'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *out = NULL;
	int opt;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'o')
			out = optarg;
		else if (opt == 'h') {
			fputs(keygen_help, stdout);
			return CTL_EXIT_OK;
		} else
			return ctl_usage_error("keygen");
	}
	if (optind < argc) {
		ctl_error("keygen: unexpected argument \"%s\"; use --out FILE", argv[optind]);
		return CTL_EXIT_USAGE;
	}
	if (!ctl_require("keygen", "--out FILE", out))
		return CTL_EXIT_USAGE;
	if (sodium_init() < 0) {
		ctl_error("keygen: sodium_init failed");
		return CTL_EXIT_USAGE;
	}
	return generate_key(out);
}

static bool parse_key_json(const char *path, const json_t *doc, struct ctl_key *key)
{
	const char *seed_hex = json_string_value(json_object_get(doc, "seed"));
	const char *id_hex = json_string_value(json_object_get(doc, "agent_id"));
	uint8_t seed[STEMEDB_SEED_LEN];
	uint8_t stated_id[STEMEDB_AGENT_ID_LEN];
	bool ok = false;

	if (seed_hex == NULL || !hex_decode(seed_hex, strlen(seed_hex), seed, sizeof(seed))) {
		ctl_error("key file %s has no valid \"seed\" (64 hex characters); create one "
		          "with `stemedb-ctl keygen --out FILE`",
		          path);
		return false;
	}
	crypto_sign_seed_keypair(key->agent_id, key->secret_key, seed);
	sodium_memzero(seed, sizeof(seed));

	if (id_hex != NULL && (!hex_decode(id_hex, strlen(id_hex), stated_id, sizeof(stated_id)) ||
	                       memcmp(stated_id, key->agent_id, sizeof(stated_id)) != 0)) {
		ctl_error("key file %s: \"agent_id\" does not match the public key of its seed; "
		          "the file is damaged",
		          path);
		goto done;
	}
	ok = true;

done:
	if (!ok)
		ctl_key_wipe(key);
	return ok;
}

bool ctl_key_load(const char *path, struct ctl_key *key)
{
	json_error_t jerr;
	json_t *doc;
	struct stat st;
	bool ok;

	if (sodium_init() < 0) {
		ctl_error("sodium_init failed");
		return false;
	}
	doc = json_load_file(path, 0, &jerr);
	if (doc == NULL) {
		ctl_error("cannot read key file %s: %s", path, jerr.text);
		return false;
	}
	if (stat(path, &st) == 0 && (st.st_mode & 077) != 0)
		ctl_error("warning: key file %s is readable by other users; run chmod 600 %s", path,
		          path);
	ok = parse_key_json(path, doc, key);
	json_decref(doc);
	return ok;
}

static bool has_key_suffix(const char *name)
{
	size_t len = strlen(name);

	return len > 4 && strcmp(name + len - 4, ".key") == 0;
}

/* Adds one key file's agent id; files that are not key files are skipped. */
static void add_key_name(json_t *names, const char *dir, const char *file)
{
	char *path;
	json_t *doc;
	const char *id;
	uint8_t raw[STEMEDB_AGENT_ID_LEN];

	if (asprintf(&path, "%s/%s", dir, file) < 0)
		abort();
	doc = json_load_file(path, 0, NULL);
	id = json_string_value(json_object_get(doc, "agent_id"));
	if (id != NULL && hex_decode(id, strlen(id), raw, sizeof(raw))) {
		char lower[2 * STEMEDB_AGENT_ID_LEN + 1];

		hex_encode(raw, sizeof(raw), lower);
		json_object_set_new(names, lower, json_stringn(file, strlen(file) - 4));
	} else {
		ctl_error("warning: skipping %s: no \"agent_id\" of 64 hex characters", path);
	}
	json_decref(doc);
	free(path);
}

json_t *ctl_key_names(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *entry;
	json_t *names;

	if (d == NULL) {
		ctl_error("--names: opendir(\"%s\") failed: %s", dir, strerror(errno));
		return NULL;
	}
	names = json_object();
	while ((entry = readdir(d)) != NULL) {
		if (has_key_suffix(entry->d_name))
			add_key_name(names, dir, entry->d_name);
	}
	closedir(d);
	return names;
}
