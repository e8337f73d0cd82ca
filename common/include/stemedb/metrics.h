#ifndef STEMEDB_METRICS_H
#define STEMEDB_METRICS_H

/* Prometheus metrics registry. Metrics are registered once at start-up (not
 * thread-safe), then updated from any thread with relaxed atomics and rendered in
 * the text exposition format 0.0.4. A labelled family is registered once; each label
 * combination is a child created on first use (thread-safe, a mutex per family). */

#include <stddef.h>
#include <stdint.h>

#include "stemedb/buf.h"

struct metric;        /* counter or gauge child */
struct histogram;     /* histogram child */
struct metric_family; /* a labelled family */

struct metric *metrics_counter(const char *name, const char *help);
struct metric *metrics_gauge(const char *name, const char *help);
/* bounds: ascending upper bounds in the metric's unit, without +Inf. */
struct histogram *metrics_histogram(const char *name, const char *help, const double *bounds,
                                    size_t bound_count);

/* Labelled families; label_names is a NULL-terminated list, at most 4 labels. */
struct metric_family *metrics_counter_family(const char *name, const char *help,
                                             const char *const *label_names);
struct metric_family *metrics_gauge_family(const char *name, const char *help,
                                           const char *const *label_names);
struct metric_family *metrics_histogram_family(const char *name, const char *help,
                                               const char *const *label_names, const double *bounds,
                                               size_t bound_count);
/* label_values has as many entries as the family has label names. */
struct metric *metrics_family_child(struct metric_family *family, const char *const *label_values);
struct histogram *metrics_family_histogram(struct metric_family *family,
                                           const char *const *label_values);

void metric_add(struct metric *m, double delta);
void metric_inc(struct metric *m);
void metric_set(struct metric *m, double value);
double metric_value(const struct metric *m);
void histogram_observe(struct histogram *h, double value);

/* Appends every registered metric in text format. */
void metrics_render(struct buf *out);

/* Default latency buckets in seconds, from 50 µs to 10 s. */
extern const double METRICS_LATENCY_BUCKETS[];
extern const size_t METRICS_LATENCY_BUCKET_COUNT;

#endif
