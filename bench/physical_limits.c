/* Measures the two physical limits that bound durable signed ingest on this machine:
 * Ed25519 signature verifications per second on one core, and the latency of
 * fdatasync after a small append to a file on the data disk.
 *
 *   physical_limits verify [--seconds S]
 *   physical_limits fsync --dir DIR [--count N] [--size BYTES] [--seconds S]
 *
 * Each mode prints one line of key=value pairs on stdout for bench/run.sh to parse.
 * Both loops stop by themselves: verify after S seconds (default 2), fsync after N
 * appends (default 1,000) or S seconds (default 30), whichever comes first. */

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stemedb/assertion.h"

#define VERIFY_SET_SIZE 1024
#define FSYNC_MAX_COUNT 100000
#define FSYNC_MAX_SIZE  (1024 * 1024)

struct options {
	const char *mode;
	const char *dir;
	long count;
	long size;
	double seconds;
};

struct signed_message {
	uint8_t message[60];
	uint8_t signature[crypto_sign_BYTES];
};

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int compare_doubles(const void *a, const void *b)
{
	double x = *(const double *)a;
	double y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Returns the value at quantile q (0..1) of a sorted array, nearest-rank method. */
static double quantile(const double *sorted, size_t n, double q)
{
	size_t rank = (size_t)(q * (double)n + 0.999999);

	if (rank == 0)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

/* Signs VERIFY_SET_SIZE messages shaped like the real signing message (domain, random
 * 32-byte hash, timestamp), so the verify loop sees distinct inputs. */
static void make_signed_messages(struct signed_message *set, uint8_t public_key[32])
{
	uint8_t secret_key[crypto_sign_SECRETKEYBYTES];
	uint8_t hash[STEMEDB_HASH_LEN];

	crypto_sign_keypair(public_key, secret_key);
	for (size_t i = 0; i < VERIFY_SET_SIZE; i++) {
		randombytes_buf(hash, sizeof(hash));
		assertion_signing_message(hash, 1700000000u + i, set[i].message);
		crypto_sign_detached(set[i].signature, NULL, set[i].message, sizeof(set[i].message),
		                     secret_key);
	}
	sodium_memzero(secret_key, sizeof(secret_key));
}

static int run_verify(const struct options *opt)
{
	static struct signed_message set[VERIFY_SET_SIZE];
	uint8_t public_key[crypto_sign_PUBLICKEYBYTES];
	long verified = 0;
	long failed = 0;
	double start;
	double elapsed;

	make_signed_messages(set, public_key);

	start = now_seconds();
	do {
		for (size_t i = 0; i < VERIFY_SET_SIZE; i++) {
			const struct signed_message *m = &set[i];

			if (crypto_sign_verify_detached(m->signature, m->message,
			                                sizeof(m->message), public_key) != 0)
				failed++;
			verified++;
		}
		elapsed = now_seconds() - start;
	} while (elapsed < opt->seconds);

	if (failed != 0) {
		fprintf(stderr, "physical_limits: %ld of %ld signatures failed to verify\n", failed,
		        verified);
		return 1;
	}
	printf("verify_per_sec=%.0f verified=%ld seconds=%.3f message_bytes=60\n",
	       (double)verified / elapsed, verified, elapsed);
	return 0;
}

/* Appends one block and syncs it; returns the latency in microseconds or -1. */
static double append_and_sync(int fd, const uint8_t *block, size_t size, const char *path)
{
	double start = now_seconds();
	ssize_t written = write(fd, block, size);

	if (written != (ssize_t)size) {
		fprintf(stderr, "physical_limits: write(\"%s\", %zu bytes) failed: %s\n", path,
		        size, written < 0 ? strerror(errno) : "short write");
		return -1;
	}
	if (fdatasync(fd) != 0) {
		fprintf(stderr, "physical_limits: fdatasync(\"%s\") failed: %s\n", path,
		        strerror(errno));
		return -1;
	}
	return (now_seconds() - start) * 1e6;
}

static int report_fsync(double *latencies, long done, double elapsed)
{
	if (done == 0) {
		fprintf(stderr, "physical_limits: no append finished within the time limit\n");
		return 1;
	}
	qsort(latencies, (size_t)done, sizeof(double), compare_doubles);
	printf("fsync_p50_us=%.1f fsync_p99_us=%.1f fsync_max_us=%.1f appends=%ld "
	       "seconds=%.3f\n",
	       quantile(latencies, (size_t)done, 0.50), quantile(latencies, (size_t)done, 0.99),
	       latencies[done - 1], done, elapsed);
	return 0;
}

static int run_fsync(const struct options *opt)
{
	char path[4096];
	uint8_t *block = NULL;
	double *latencies = NULL;
	long done = 0;
	double start;
	int fd = -1;
	int rc = 1;

	snprintf(path, sizeof(path), "%s/fdatasync-probe.%ld", opt->dir, (long)getpid());
	block = malloc((size_t)opt->size);
	latencies = calloc((size_t)opt->count, sizeof(double));
	if (block == NULL || latencies == NULL) {
		fprintf(stderr, "physical_limits: out of memory for %ld samples\n", opt->count);
		goto done;
	}
	randombytes_buf(block, (size_t)opt->size);

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "physical_limits: open(\"%s\") failed: %s\n", path,
		        strerror(errno));
		goto done;
	}

	start = now_seconds();
	while (done < opt->count && now_seconds() - start < opt->seconds) {
		double latency = append_and_sync(fd, block, (size_t)opt->size, path);

		if (latency < 0)
			goto done;
		latencies[done++] = latency;
	}
	rc = report_fsync(latencies, done, now_seconds() - start);

done:
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	free(block);
	free(latencies);
	return rc;
}

static void usage(void)
{
	fprintf(stderr, "usage: physical_limits verify [--seconds S]\n"
	                "       physical_limits fsync --dir DIR [--count N] [--size BYTES] "
	                "[--seconds S]\n");
}

static int parse_number(const char *name, const char *text, double min, double max, double *out)
{
	char *end = NULL;
	double value;

	errno = 0;
	value = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
		fprintf(stderr, "physical_limits: invalid %s \"%s\": expected a number in %g..%g\n",
		        name, text, min, max);
		return -1;
	}
	*out = value;
	return 0;
}

static int parse_option(struct options *opt, const char *name, const char *value)
{
	double number;

	if (strcmp(name, "--dir") == 0) {
		opt->dir = value;
		return 0;
	}
	if (strcmp(name, "--seconds") == 0)
		return parse_number(name, value, 0.1, 600, &opt->seconds);
	if (strcmp(name, "--count") == 0) {
		if (parse_number(name, value, 1, FSYNC_MAX_COUNT, &number) != 0)
			return -1;
		opt->count = (long)number;
		return 0;
	}
	if (strcmp(name, "--size") == 0) {
		if (parse_number(name, value, 1, FSYNC_MAX_SIZE, &number) != 0)
			return -1;
		opt->size = (long)number;
		return 0;
	}
	fprintf(stderr, "physical_limits: unknown option \"%s\"\n", name);
	return -1;
}

static int parse_options(int argc, char **argv, struct options *opt)
{
	if (argc < 2) {
		usage();
		return -1;
	}
	opt->mode = argv[1];
	for (int i = 2; i < argc; i += 2) {
		if (i + 1 >= argc) {
			fprintf(stderr, "physical_limits: option \"%s\" needs a value\n", argv[i]);
			return -1;
		}
		if (parse_option(opt, argv[i], argv[i + 1]) != 0)
			return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct options opt = {.count = 1000, .size = 4096, .seconds = 0};

	if (parse_options(argc, argv, &opt) != 0)
		return 2;
	if (sodium_init() < 0) {
		fprintf(stderr, "physical_limits: sodium_init failed\n");
		return 1;
	}

	if (strcmp(opt.mode, "verify") == 0) {
		if (opt.seconds == 0)
			opt.seconds = 2;
		return run_verify(&opt);
	}
	if (strcmp(opt.mode, "fsync") == 0) {
		if (opt.dir == NULL) {
			fprintf(stderr, "physical_limits: fsync mode needs --dir DIR on the data "
			                "disk\n");
			return 2;
		}
		if (opt.seconds == 0)
			opt.seconds = 30;
		return run_fsync(&opt);
	}
	usage();
	return 2;
}
