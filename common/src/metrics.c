/* Prometheus metrics registry and text exposition format 0.0.4. Every metric is stored
 * as a family: an unlabelled metric is a family with no label names and one child.
 * Values are doubles kept as their bit patterns in _Atomic uint64_t, so updates need
 * no lock. Children are only ever added, so a child pointer stays valid for the life
 * of the process. */
#include "stemedb/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_MAX_LABELS 4

enum metric_kind { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

static const char *const KIND_NAMES[] = {"counter", "gauge", "histogram"};

struct metric {
	enum metric_kind kind;
	_Atomic uint64_t bits;
};

struct histogram {
	const double *bounds;
	size_t bound_count;
	_Atomic uint64_t *bucket_counts; /* per bucket, not cumulative, with +Inf last */
	_Atomic uint64_t sum_bits;
};

struct family_child {
	char *label_values[METRICS_MAX_LABELS];
	struct metric metric;
	struct histogram histogram;
	struct family_child *next;
};

struct metric_family {
	char *name;
	char *help;
	enum metric_kind kind;
	char *label_names[METRICS_MAX_LABELS];
	size_t label_count;
	double *bounds;
	size_t bound_count;
	pthread_mutex_t mutex;
	struct family_child *first_child;
	struct family_child *last_child;
	struct metric_family *next;
};

static struct metric_family *registry_first;
static struct metric_family *registry_last;

const double METRICS_LATENCY_BUCKETS[] = {
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
        0.05,    0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0,
};
const size_t METRICS_LATENCY_BUCKET_COUNT =
        sizeof(METRICS_LATENCY_BUCKETS) / sizeof(METRICS_LATENCY_BUCKETS[0]);

/* Registration errors are programming errors found at start-up, so they abort. */
__attribute__((format(printf, 1, 2), noreturn)) static void registration_failed(const char *fmt,
                                                                                ...)
{
	va_list args;

	va_start(args, fmt);
	fprintf(stderr, "metrics: ");
	vfprintf(stderr, fmt, args);
	fprintf(stderr, "\n");
	va_end(args);
	abort();
}

static void *checked_calloc(size_t count, size_t size)
{
	void *p = calloc(count, size);

	if (p == NULL)
		registration_failed("calloc of %zu x %zu bytes failed", count, size);
	return p;
}

static char *checked_strdup(const char *s)
{
	char *copy = strdup(s);

	if (copy == NULL)
		registration_failed("strdup of %zu bytes failed", strlen(s) + 1);
	return copy;
}

/* Checks [a-zA-Z_:][a-zA-Z0-9_:]* for metric names. Label names may not contain ':'. */
static bool valid_name(const char *name, bool allow_colon)
{
	if (name == NULL || name[0] == '\0' || (name[0] >= '0' && name[0] <= '9'))
		return false;

	for (const char *p = name; *p != '\0'; p++) {
		bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		          (*p >= '0' && *p <= '9') || *p == '_' || (allow_colon && *p == ':');
		if (!ok)
			return false;
	}
	return true;
}

static void check_family_names(const char *name, enum metric_kind kind,
                               const char *const *label_names, size_t *label_count)
{
	if (!valid_name(name, true))
		registration_failed("metric name \"%s\" is invalid; use [a-zA-Z_:][a-zA-Z0-9_:]*",
		                    name ? name : "(null)");
	for (struct metric_family *f = registry_first; f != NULL; f = f->next) {
		if (strcmp(f->name, name) == 0)
			registration_failed("metric %s is registered twice", name);
	}

	*label_count = 0;
	for (size_t i = 0; label_names != NULL && label_names[i] != NULL; i++) {
		const char *label = label_names[i];
		if (i >= METRICS_MAX_LABELS)
			registration_failed("metric %s has more than %d labels", name,
			                    METRICS_MAX_LABELS);
		if (!valid_name(label, false) || strncmp(label, "__", 2) == 0 ||
		    (kind == METRIC_HISTOGRAM && strcmp(label, "le") == 0))
			registration_failed("label name \"%s\" of metric %s is invalid", label,
			                    name);
		*label_count = i + 1;
	}
}

static struct metric_family *family_register(const char *name, const char *help,
                                             enum metric_kind kind, const char *const *label_names,
                                             const double *bounds, size_t bound_count)
{
	size_t label_count;

	check_family_names(name, kind, label_names, &label_count);
	for (size_t i = 1; i < bound_count; i++) {
		if (!(bounds[i] > bounds[i - 1]))
			registration_failed("bucket bounds of %s are not ascending at index %zu",
			                    name, i);
	}

	struct metric_family *f = checked_calloc(1, sizeof(*f));
	f->name = checked_strdup(name);
	f->help = checked_strdup(help ? help : "");
	f->kind = kind;
	f->label_count = label_count;
	for (size_t i = 0; label_names != NULL && i < label_count; i++)
		f->label_names[i] = checked_strdup(label_names[i]);
	if (kind == METRIC_HISTOGRAM && bound_count > 0) {
		f->bounds = checked_calloc(bound_count, sizeof(double));
		memcpy(f->bounds, bounds, bound_count * sizeof(double));
	}
	f->bound_count = bound_count;
	pthread_mutex_init(&f->mutex, NULL);

	if (registry_last != NULL)
		registry_last->next = f;
	else
		registry_first = f;
	registry_last = f;
	return f;
}

static struct family_child *child_create(struct metric_family *f, const char *const *label_values)
{
	struct family_child *child = checked_calloc(1, sizeof(*child));

	for (size_t i = 0; label_values != NULL && i < f->label_count; i++)
		child->label_values[i] = checked_strdup(label_values[i] ? label_values[i] : "");
	child->metric.kind = f->kind;
	atomic_init(&child->metric.bits, 0);

	if (f->kind == METRIC_HISTOGRAM) {
		child->histogram.bounds = f->bounds;
		child->histogram.bound_count = f->bound_count;
		child->histogram.bucket_counts =
		        checked_calloc(f->bound_count + 1, sizeof(_Atomic uint64_t));
		for (size_t i = 0; i <= f->bound_count; i++)
			atomic_init(&child->histogram.bucket_counts[i], 0);
		atomic_init(&child->histogram.sum_bits, 0);
	}
	return child;
}

static bool labels_match(const struct metric_family *f, const struct family_child *child,
                         const char *const *label_values)
{
	for (size_t i = 0; label_values != NULL && i < f->label_count; i++) {
		const char *value = label_values[i] ? label_values[i] : "";
		if (strcmp(child->label_values[i], value) != 0)
			return false;
	}
	return true;
}

/* Finds or creates the child for label_values under the family mutex. */
static struct family_child *family_child(struct metric_family *f, const char *const *label_values)
{
	struct family_child *child;

	if (f->label_count > 0 && label_values == NULL)
		registration_failed("metric %s needs %zu label values, got none", f->name,
		                    f->label_count);

	pthread_mutex_lock(&f->mutex);
	for (child = f->first_child; child != NULL; child = child->next) {
		if (labels_match(f, child, label_values))
			goto done;
	}

	child = child_create(f, label_values);
	if (f->last_child != NULL)
		f->last_child->next = child;
	else
		f->first_child = child;
	f->last_child = child;
done:
	pthread_mutex_unlock(&f->mutex);
	return child;
}

struct metric *metrics_counter(const char *name, const char *help)
{
	struct metric_family *f = family_register(name, help, METRIC_COUNTER, NULL, NULL, 0);

	return &family_child(f, NULL)->metric;
}

struct metric *metrics_gauge(const char *name, const char *help)
{
	struct metric_family *f = family_register(name, help, METRIC_GAUGE, NULL, NULL, 0);

	return &family_child(f, NULL)->metric;
}

struct histogram *metrics_histogram(const char *name, const char *help, const double *bounds,
                                    size_t bound_count)
{
	struct metric_family *f =
	        family_register(name, help, METRIC_HISTOGRAM, NULL, bounds, bound_count);

	return &family_child(f, NULL)->histogram;
}

struct metric_family *metrics_counter_family(const char *name, const char *help,
                                             const char *const *label_names)
{
	return family_register(name, help, METRIC_COUNTER, label_names, NULL, 0);
}

struct metric_family *metrics_gauge_family(const char *name, const char *help,
                                           const char *const *label_names)
{
	return family_register(name, help, METRIC_GAUGE, label_names, NULL, 0);
}

struct metric_family *metrics_histogram_family(const char *name, const char *help,
                                               const char *const *label_names, const double *bounds,
                                               size_t bound_count)
{
	return family_register(name, help, METRIC_HISTOGRAM, label_names, bounds, bound_count);
}

struct metric *metrics_family_child(struct metric_family *family, const char *const *label_values)
{
	if (family->kind == METRIC_HISTOGRAM)
		registration_failed("metric %s is a histogram; use metrics_family_histogram",
		                    family->name);
	return &family_child(family, label_values)->metric;
}

struct histogram *metrics_family_histogram(struct metric_family *family,
                                           const char *const *label_values)
{
	if (family->kind != METRIC_HISTOGRAM)
		registration_failed("metric %s is not a histogram; use metrics_family_child",
		                    family->name);
	return &family_child(family, label_values)->histogram;
}

static double bits_to_double(uint64_t bits)
{
	double value;

	memcpy(&value, &bits, sizeof(value));
	return value;
}

static uint64_t double_to_bits(double value)
{
	uint64_t bits;

	memcpy(&bits, &value, sizeof(bits));
	return bits;
}

static void atomic_add_double(_Atomic uint64_t *target, double delta)
{
	uint64_t old = atomic_load_explicit(target, memory_order_relaxed);
	uint64_t updated;

	do {
		updated = double_to_bits(bits_to_double(old) + delta);
	} while (!atomic_compare_exchange_weak_explicit(target, &old, updated, memory_order_relaxed,
	                                                memory_order_relaxed));
}

/* A counter only goes up, so a negative or NaN delta on a counter is ignored. */
void metric_add(struct metric *m, double delta)
{
	if (m->kind == METRIC_COUNTER && !(delta >= 0))
		return;
	atomic_add_double(&m->bits, delta);
}

void metric_inc(struct metric *m)
{
	metric_add(m, 1.0);
}

/* On a counter this is meant for mirroring a count kept elsewhere. */
void metric_set(struct metric *m, double value)
{
	atomic_store_explicit(&m->bits, double_to_bits(value), memory_order_relaxed);
}

double metric_value(const struct metric *m)
{
	return bits_to_double(atomic_load_explicit(&m->bits, memory_order_relaxed));
}

/* NaN observations are dropped, because one would turn _sum into NaN for good. */
void histogram_observe(struct histogram *h, double value)
{
	size_t low = 0;
	size_t high = h->bound_count;

	if (isnan(value))
		return;

	/* Binary search for the first bound >= value. Index bound_count is +Inf. */
	while (low < high) {
		size_t mid = low + (high - low) / 2;
		if (h->bounds[mid] >= value)
			high = mid;
		else
			low = mid + 1;
	}

	atomic_fetch_add_explicit(&h->bucket_counts[low], 1, memory_order_relaxed);
	atomic_add_double(&h->sum_bits, value);
}

/* Formats a float the way Prometheus reads it: NaN, +Inf, -Inf or the shortest
 * decimal that reads back as the same double. */
static void format_number(double value, char *text, size_t text_size)
{
	if (isnan(value)) {
		snprintf(text, text_size, "NaN");
		return;
	}
	if (isinf(value)) {
		snprintf(text, text_size, "%sInf", value > 0 ? "+" : "-");
		return;
	}
	for (int precision = 15; precision <= 17; precision++) {
		snprintf(text, text_size, "%.*g", precision, value);
		if (strtod(text, NULL) == value)
			return;
	}
}

static void put_number(struct buf *out, double value)
{
	char text[40];

	format_number(value, text, sizeof(text));
	buf_append(out, text, strlen(text));
}

static void put_text(struct buf *out, const char *text)
{
	buf_append(out, text, strlen(text));
}

/* Escapes backslash and newline in HELP text, and also the double quote in label
 * values, as the text format requires. */
static void put_escaped(struct buf *out, const char *text, bool escape_quote)
{
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == '\\')
			put_text(out, "\\\\");
		else if (*p == '\n')
			put_text(out, "\\n");
		else if (*p == '"' && escape_quote)
			put_text(out, "\\\"");
		else
			buf_put_u8(out, (uint8_t)*p);
	}
}

/* Writes {a="x",b="y"} with an optional extra le label; writes nothing when there
 * are no labels at all. */
static void put_labels(struct buf *out, const struct metric_family *f,
                       const struct family_child *child, const char *le)
{
	if (f->label_count == 0 && le == NULL)
		return;

	buf_put_u8(out, '{');
	for (size_t i = 0; i < f->label_count; i++) {
		if (i > 0)
			buf_put_u8(out, ',');
		put_text(out, f->label_names[i]);
		put_text(out, "=\"");
		put_escaped(out, child->label_values[i], true);
		buf_put_u8(out, '"');
	}
	if (le != NULL) {
		if (f->label_count > 0)
			buf_put_u8(out, ',');
		put_text(out, "le=\"");
		put_text(out, le);
		buf_put_u8(out, '"');
	}
	buf_put_u8(out, '}');
}

static void put_sample(struct buf *out, const struct metric_family *f,
                       const struct family_child *child, const char *suffix, const char *le,
                       double value)
{
	put_text(out, f->name);
	put_text(out, suffix);
	put_labels(out, f, child, le);
	buf_put_u8(out, ' ');
	put_number(out, value);
	buf_put_u8(out, '\n');
}

/* _count is the cumulative +Inf bucket, so the two always agree even while other
 * threads observe. */
static void render_histogram(struct buf *out, const struct metric_family *f,
                             const struct family_child *child)
{
	const struct histogram *h = &child->histogram;
	uint64_t cumulative = 0;
	char le[40];

	for (size_t i = 0; i <= h->bound_count; i++) {
		cumulative += atomic_load_explicit(&h->bucket_counts[i], memory_order_relaxed);
		if (i < h->bound_count)
			format_number(h->bounds[i], le, sizeof(le));
		else
			snprintf(le, sizeof(le), "+Inf");
		put_sample(out, f, child, "_bucket", le, (double)cumulative);
	}

	double sum = bits_to_double(atomic_load_explicit(&h->sum_bits, memory_order_relaxed));
	put_sample(out, f, child, "_sum", NULL, sum);
	put_sample(out, f, child, "_count", NULL, (double)cumulative);
}

static void render_family(struct buf *out, struct metric_family *f)
{
	put_text(out, "# HELP ");
	put_text(out, f->name);
	buf_put_u8(out, ' ');
	put_escaped(out, f->help, false);
	put_text(out, "\n# TYPE ");
	put_text(out, f->name);
	buf_put_u8(out, ' ');
	put_text(out, KIND_NAMES[f->kind]);
	buf_put_u8(out, '\n');

	pthread_mutex_lock(&f->mutex);
	for (const struct family_child *child = f->first_child; child != NULL;
	     child = child->next) {
		if (f->kind == METRIC_HISTOGRAM)
			render_histogram(out, f, child);
		else
			put_sample(out, f, child, "", NULL, metric_value(&child->metric));
	}
	pthread_mutex_unlock(&f->mutex);
}

void metrics_render(struct buf *out)
{
	for (struct metric_family *f = registry_first; f != NULL; f = f->next)
		render_family(out, f);
}
