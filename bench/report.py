#!/usr/bin/python3
"""Helpers for bench/run.sh.

  report.py pgbench-latency LOG...   prints "p50_ms=... p99_ms=..." from pgbench -l logs
  report.py h2load-latency LOG       prints "p50_ms=... p99_ms=... max_ms=..." from an
                                     h2load --log-file log
  report.py render WORK_DIR OUTPUT   writes the benchmark page from WORK_DIR/results.tsv,
                                     WORK_DIR/meta.tsv and the perf profiles
  report.py protection WORK_DIR OUTPUT
                                     replaces only the protection section of OUTPUT
                                     (BENCH_ONLY=protection), keeping the rest

Uses only the standard library, so Debian's /usr/bin/python3 runs it as it is.
"""

import collections
import statistics
import sys
from pathlib import Path

# Targets the project set for a two-core machine. The page compares every run with them.
GOAL_SINGLE_PER_SEC = 8000
GOAL_BATCH_PER_SEC = 15000
GOAL_QUERY_PER_SEC = 20000
GOAL_QUERY_P99_MS = 5.0


def quantile(sorted_values, q):
    """Return the nearest-rank quantile q (0..1) of an ascending list."""
    rank = max(1, min(len(sorted_values), int(q * len(sorted_values) + 0.999999)))
    return sorted_values[rank - 1]


def pgbench_latency(paths):
    """Print p50 and p99 transaction latency from pgbench per-transaction logs.

    The third column of each log line is the transaction latency in microseconds.
    """
    latencies = []
    for path in paths:
        with open(path, encoding="ascii") as log:
            for line in log:
                fields = line.split()
                if len(fields) >= 3:
                    latencies.append(int(fields[2]) / 1000.0)
    if not latencies:
        sys.exit("report.py: the pgbench logs %s contain no transactions" % " ".join(paths))
    latencies.sort()
    print("p50_ms=%.3f p99_ms=%.3f transactions=%d"
          % (quantile(latencies, 0.50), quantile(latencies, 0.99), len(latencies)))


def h2load_latency(path):
    """Print p50, p99 and max request latency from an h2load --log-file log.

    Each line contains the request's start time, its status code and its duration, both
    times in microseconds.
    """
    latencies = []
    with open(path, encoding="ascii") as log:
        for line in log:
            fields = line.split()
            if len(fields) >= 3:
                latencies.append(int(fields[2]) / 1000.0)
    if not latencies:
        sys.exit("report.py: the h2load log %s contains no requests" % path)
    latencies.sort()
    print("p50_ms=%.3f p99_ms=%.3f max_ms=%.3f requests=%d"
          % (quantile(latencies, 0.50), quantile(latencies, 0.99), latencies[-1],
             len(latencies)))


def load_results(work):
    """Return {metric: [values in run order]} from results.tsv."""
    results = collections.defaultdict(list)
    for line in (work / "results.tsv").read_text(encoding="utf-8").splitlines():
        metric, _run, value = line.split("\t")
        if value:
            results[metric].append(float(value))
    return results


def load_meta(work):
    meta = {}
    for line in (work / "meta.tsv").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("\t")
        meta[key] = value
    return meta


class Figures:
    """Median, min and max of each metric, formatted for the page."""

    def __init__(self, results):
        self.results = results

    def median(self, metric):
        values = self.results.get(metric)
        return statistics.median(values) if values else None

    def cell(self, metric, digits=0):
        values = self.results.get(metric)
        if not values:
            return "not measured"
        fmt = "{:,.%df}" % digits
        if len(values) == 1:
            return fmt.format(values[0])
        return "%s (%s – %s)" % (fmt.format(statistics.median(values)),
                                 fmt.format(min(values)), fmt.format(max(values)))


def ratio_text(ours, theirs):
    if ours is None or theirs is None or theirs == 0:
        return "n/a"
    return "%.2f×" % (ours / theirs)


def goal_text(value, goal, higher_is_better=True):
    """Say whether a median meets its goal and, when it does not, by how much."""
    if value is None:
        return "not measured"
    met = value >= goal if higher_is_better else value <= goal
    if met:
        return "met"
    if higher_is_better:
        return "missed by %.0f%% (%.0f%% of goal)" % (100 * (goal - value) / goal,
                                                     100 * value / goal)
    return "missed: %.2f ms over" % (value - goal)


def busy_machine(meta):
    """Return True when a load average exceeded the number of cores during the run."""
    cores = int(meta.get("cores", "1"))
    samples = (meta.get("load_average", "") + " " + meta.get("load_average_end", "")).split()
    return any(float(value) > cores for value in samples)


def machine_section(meta):
    rows = [
        ("Command", "`%s`" % meta.get("command", "make bench")),
        ("Date", meta.get("date", "?")),
        ("Commit", meta.get("commit", "?")),
        ("CPU", "%s, %s cores" % (meta.get("cpu_model", "?"), meta.get("cores", "?"))),
        ("Memory", meta.get("memory", "?")),
        ("Kernel", meta.get("kernel", "?")),
        ("Data disk", "%s; data directories under %s"
         % (meta.get("disk", "?"), meta.get("data_dir_parent", "?"))),
        ("Software", "PostgreSQL %s (shared_buffers %s; %s), wrk %s, libsodium %s"
         % (meta.get("pg_version", "?"), meta.get("pg_shared_buffers", "?"),
            meta.get("pg_settings", "?"), meta.get("wrk", "?"), meta.get("libsodium", "?"))),
        ("Runs", "%s measured runs per figure; each cell is median (min – max)"
         % meta.get("runs", "?")),
        ("Load average", "%s at the start, %s at the end (other work on the machine "
         "shows up here)" % (meta.get("load_average", "?"), meta.get("load_average_end", "?"))),
        ("Total time", "%s s for the whole script" % meta.get("total_seconds", "?")),
    ]
    if busy_machine(meta):
        rows.append(("Note", "the load average rose above the core count, so other work "
                     "shared the cores with this run and the spread between runs is wider. "
                     "Rerun on an otherwise idle machine for tighter figures."))
    lines = ["| | |", "|---|---|"]
    lines += ["| %s | %s |" % row for row in rows]
    return lines


def thousands(text):
    """Format an integer string with thousands separators; leave anything else as it is."""
    return format(int(text), ",") if text.isdigit() else text


def dataset_section(meta):
    subjects = int(meta.get("subjects", "0"))
    per_subject = int(meta.get("per_subject", "0"))
    return [
        "- Single-assert runs: %s unique claims per run from %s keep-alive connections."
        % (format(int(meta.get("single_count", "0")), ","), meta.get("clients", "?")),
        "- Batch runs: %s unique claims per run in batches of %s from %s connections."
        % (format(int(meta.get("batch_count", "0")), ","), meta.get("batch_size", "?"),
           meta.get("batch_clients", "?")),
        "- Query dataset: %s subjects × %d claims = %s claims for the predicate "
        "`bench_claim`, four competing values per subject, source classes and "
        "confidences spread evenly, every fifth claim co-signed. PostgreSQL loads the "
        "same rows (same hashes and signatures) with COPY."
        % (format(subjects, ","), per_subject, format(subjects * per_subject, ",")),
        "- Store sizes while querying: StemeDB %s assertions, PostgreSQL %s rows "
        "(the query dataset plus the rows the write runs left)."
        % (thousands(meta.get("stemedb_assertions", "?")), thousands(meta.get("pg_rows", "?"))),
        "- Every timed wrk and pgbench run lasts %s s after a 3 s warm-up for queries."
        % meta.get("seconds", "?"),
    ]


def results_table(fig, meta):
    rows = [
        ("Signed single asserts/s, %s clients" % meta.get("clients", "64"),
         "stemedb_single_rate", "pg_single_rate", 0),
        ("  latency p50 (ms)", "stemedb_single_p50_ms", "pg_single_p50_ms", 2),
        ("  latency p99 (ms)", "stemedb_single_p99_ms", "pg_single_p99_ms", 2),
        ("Batch ingest, assertions/s (%s per request)" % meta.get("batch_size", "500"),
         "stemedb_batch_rate", "pg_batch_rate", 0),
        ("  latency per batch p50 (ms)", "stemedb_batch_p50_ms", "pg_batch_p50_ms", 1),
        ("  latency per batch p99 (ms)", "stemedb_batch_p99_ms", "pg_batch_p99_ms", 1),
        ("Best-claim queries/s, %s clients" % meta.get("clients", "64"),
         "stemedb_query_rate", "pg_query_rate", 0),
        ("  latency p50 (ms)", "stemedb_query_p50_ms", "pg_query_p50_ms", 2),
        ("  latency p99 (ms)", "stemedb_query_p99_ms", "pg_query_p99_ms", 2),
        ("Loading the query dataset (s)", "stemedb_preload_seconds", "pg_copy_seconds", 1),
    ]
    lines = ["| Workload | StemeDB | PostgreSQL 15 | StemeDB / PostgreSQL |",
             "|---|---:|---:|---:|"]
    for label, ours, theirs, digits in rows:
        lines.append("| %s | %s | %s | %s |" % (
            label.replace("  ", "&nbsp;&nbsp;"), fig.cell(ours, digits),
            fig.cell(theirs, digits), ratio_text(fig.median(ours), fig.median(theirs))))
    return lines


PROTECTION_HEADING = "## Ingest cost of the protection layers"


def protection_table(fig, meta):
    rows = [
        ("Signed single asserts/s, %s clients" % meta.get("clients", "64"), "single_rate", 0),
        ("  latency p50 (ms)", "single_p50_ms", 2),
        ("  latency p99 (ms)", "single_p99_ms", 2),
        ("  stemedb-api CPU time per assertion (µs)", "single_cpu_us", 0),
        ("Batch ingest, assertions/s (%s per request, %s connections)"
         % (meta.get("batch_size", "500"), meta.get("batch_clients", "4")), "batch_rate", 0),
        ("  latency per batch p50 (ms)", "batch_p50_ms", 1),
        ("  latency per batch p99 (ms)", "batch_p99_ms", 1),
        ("  stemedb-api CPU time per assertion (µs)", "batch_cpu_us", 0),
    ]
    lines = ["| Workload | every layer off | every layer on | on / off |",
             "|---|---:|---:|---:|"]
    for label, metric, digits in rows:
        off = "protection_off_" + metric
        on = "protection_on_" + metric
        lines.append("| %s | %s | %s | %s |" % (
            label.replace("  ", "&nbsp;&nbsp;"), fig.cell(off, digits), fig.cell(on, digits),
            ratio_text(fig.median(on), fig.median(off))))
    return lines


def protection_section(fig, meta):
    """Return the lines of the protection section, without its heading."""
    def count(key):
        return thousands(meta.get(key, "?"))

    lines = [
        "The StemeDB rows of the other sections run with every protection layer off "
        "(`STEMEDB_AUTH_ENABLED`, `STEMEDB_RATE_LIMIT_ENABLED`, "
        "`STEMEDB_CIRCUIT_BREAKER_ENABLED`, `STEMEDB_ADMISSION_ENABLED`, "
        "`STEMEDB_QUOTA_ENABLED` and `STEMEDB_CONTENT_DEFENSE_ENABLED` all `false`), so "
        "they stay comparable with runs from before the layers existed. This section "
        "shows what the layers cost on ingest.",
        "",
        "Two fresh nodes run side by side: one with every layer off, one with every layer "
        "on. The second has `STEMEDB_AUTH_ENABLED=true` with a root key "
        "(`stemedb-ctl keys generate`) that loadgen sends as `X-API-Key`; rate limits, "
        "circuit breaker, admission and content defense at their defaults; and the quota "
        "on with `STEMEDB_QUOTA_TOKENS=%s`, so that the bench load never reaches it. The "
        "figures therefore show what the checks and the accounting cost, not what "
        "rejections save." % count("protection_quota_tokens"),
        "",
        "Both nodes get the same requests: every request carries the key and names its "
        "agent in `X-Agent-Id`, and the subjects end in a 64-digit hash "
        "(`loadgen --distinct-subjects on`). The sequential subjects of the other rows "
        "(`bench/single/s1/1234`) differ only in their last digits, so content defense "
        "finds two of them about 80 %% similar (3-byte shingles). It then compares each "
        "new claim with many stored ones and quarantines some as duplicates. The timed "
        "runs "
        "alternate between the nodes, odd runs starting with the node with every layer "
        "off. %s runs per figure: median (min – max). The CPU time is the user plus "
        "system time of the stemedb-api process (`/proc/PID/stat`) over the run, divided "
        "by the assertions stored; it depends less on other work on a shared machine "
        "than the rate does." % meta.get("runs", "?"),
        "",
    ]
    lines += protection_table(fig, meta)
    lines += [
        "",
        "- Warm-up, untimed: each of loadgen's 16 agents first writes %s claims to each "
        "node, then one claim per agent per round until a round needs no proof of work. "
        "Admission asks a new agent (trust 0.5) for 16 leading zero bits for its first "
        "10 assertions and for 1 bit up to 49, so the timed runs measure the steady "
        "state. On the node with every layer on this took %s s in %s rounds, and "
        "loadgen solved %s proofs in %s s of solving; on the other node it took %s s."
        % (meta.get("protection_warmup_per_agent", "?"),
           meta.get("protection_on_warmup_seconds", "?"),
           meta.get("protection_on_warmup_rounds", "?"),
           count("protection_on_warmup_proofs"),
           meta.get("protection_on_warmup_pow_seconds", "?"),
           meta.get("protection_off_warmup_seconds", "?")),
        "- Content defense quarantined %s assertions on that node "
        "(`stemedb_assertions_quarantined_total`): %s in the warm-up and %s in the timed "
        "runs." % (count("protection_quarantined_total"),
                   count("protection_on_warmup_quarantined"),
                   count("protection_quarantined_timed")),
        "- `stemedb_requests_rejected_total` rose by %s during the timed runs; the bench "
        "fails unless it stays unchanged. Before them it counted %s rejections: the "
        "warm-up's 428 replies (`proof_of_work_required`), which loadgen answered with "
        "a proof, and the 401 of the start check that the node requires an API key."
        % (count("protection_rejected_timed"), count("protection_rejected_warmup")),
        "- Measured by `%s` on %s at commit %s, %s cores, load average %s at the start "
        "of this section and %s at its end."
        % (meta.get("command", "make bench"), meta.get("protection_date", "?"),
           meta.get("commit", "?"), meta.get("cores", "?"),
           meta.get("protection_load_average", "?"),
           meta.get("protection_load_average_end", "?")),
    ]
    return lines


def replace_protection_section(work, output):
    """Replace the protection section of the page at output, or insert it before the
    method section, leaving every other line as it is."""
    section = [PROTECTION_HEADING, ""] + protection_section(
        Figures(load_results(work)), load_meta(work)) + [""]
    page = Path(output)
    old = page.read_text(encoding="utf-8").splitlines() if page.exists() else ["# Benchmarks", ""]
    if PROTECTION_HEADING in old:
        start = old.index(PROTECTION_HEADING)
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")),
                   len(old))
    else:
        start = next((i for i, line in enumerate(old)
                      if line.startswith("## How each figure is measured")), len(old))
        end = start
    lines = old[:start] + section + old[end:]
    page.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")


def read_row(fig, label, metric, authority=True):
    """Format one row of a read table: rate, p50 and p99, and the rate against wrk's
    authority figure."""
    return "| %s | %s | %s | %s | %s |" % (
        label, fig.cell(metric + "_rate"), fig.cell(metric + "_p50_ms", 2),
        fig.cell(metric + "_p99_ms", 2),
        ratio_text(fig.median(metric + "_rate"), fig.median("stemedb_query_rate"))
        if authority else "1.00×")


def views_section(fig, meta):
    subjects = int(meta.get("subjects", "0"))
    lines = [
        "| Read, %s connections (wrk) | requests/s | p50 (ms) | p99 (ms) | rate / authority |"
        % meta.get("clients", "64"),
        "|---|---:|---:|---:|---:|",
        read_row(fig, "`/v1/query`, authority lens", "stemedb_query", authority=False),
        read_row(fig, "`/v1/skeptic`", "stemedb_skeptic"),
        read_row(fig, "`/v1/layered`", "stemedb_layered"),
        read_row(fig, "`/v1/query`, vote lens", "stemedb_vote"),
        "",
        "The authority row repeats the figure from the results table (%s runs); the other "
        "rows have %s runs each. All four read the same store and the same random subjects "
        "(wrk script `bench/query.lua`, same seeds)." % (meta.get("runs", "?"),
                                                       meta.get("view_runs", "?")),
        "",
    ]
    votes = meta.get("votes_loaded", "")
    if votes:
        lines.append(
            "Before the vote-lens runs, `loadgen votes` loaded %s signed votes, one to three "
            "from different agents, on %s of the %s subjects (%s%%), through `POST /v1/vote` "
            "at %s votes/s (one vote per request, %s connections). The other subjects have "
            "no votes, so most vote-lens reads find none and the winner falls to the newest "
            "candidate." % (thousands(votes), thousands(meta.get("voted_subjects", "?")),
                            format(subjects, ","), meta.get("vote_percent", "?"),
                            fig.cell("stemedb_votes_rate"), meta.get("batch_clients", "?")))
        lines.append("")
    lines.append(
        "PostgreSQL has no counterpart in these rows. The skeptic and layered views group "
        "candidates into claims by normalized value and weigh them by decayed confidence "
        "and source tier, and the vote lens sums each voter's latest vote per claim. A SQL "
        "version of any of them would be a different computation, not a fair peer, so "
        "none is measured.")
    return lines


def http2_row(fig, label, shape, metric):
    return "| %s | %s | %s | %s | %s | %s |" % (
        label, shape, fig.cell(metric + "_rate"), fig.cell(metric + "_p50_ms", 2),
        fig.cell(metric + "_p99_ms", 2),
        fig.cell(metric + "_max_ms", 0) if fig.results.get(metric + "_max_ms") else "n/a")


def http2_section(work, fig, meta):
    clients = meta.get("clients", "64")
    streams = meta.get("h2_streams", "10")
    lines = [
        "| Client and protocol | connections × streams | requests/s | p50 (ms) | p99 (ms) "
        "| max (ms) |",
        "|---|---|---:|---:|---:|---:|",
        http2_row(fig, "wrk, HTTP/1.1", "%s × 1" % clients, "stemedb_query"),
        http2_row(fig, "h2load `--h1`, HTTP/1.1", "%s × 1" % clients, "stemedb_h1"),
        http2_row(fig, "h2load, h2c (prior knowledge)", "%s × 1" % clients, "stemedb_h2c"),
        http2_row(fig, "h2load, h2c (prior knowledge)", "%s × %s" % (clients, streams),
                  "stemedb_h2c_mux"),
        "",
        "All four rows send the authority query of the results table to the API port, which "
        "serves HTTP/1.1 and h2c on one socket. The HTTP/2 side forwards every stream as one "
        "HTTP/1.1 request to an internal loopback listener. An h2c request therefore "
        "crosses a second loopback connection and is parsed twice on the same two cores, "
        "and the h2c figures include that hop.",
    ]
    h1 = fig.median("stemedb_h1_rate")
    h2c = fig.median("stemedb_h2c_rate")
    if h1 and h2c:
        lines += ["", "With one stream per connection, h2c serves %s the requests per second "
                  "of HTTP/1.1 under the same client (h2load)." % ratio_text(h2c, h1)]
    lines += mux_sentences(work, fig, meta)
    return lines


def mux_sentences(work, fig, meta):
    """Describe the multiplexed h2c runs: failures, a tail far above the p99, and the
    connections the forwarder left open."""
    runs = int(meta.get("h2_mux_runs", "0"))
    failed = len(fig.results.get("stemedb_h2c_mux_failed", []))
    lines = []
    if failed:
        lines += ["", "%d of %d runs with %s streams per connection failed or did not finish "
                  "their %s requests within %s s, so they are left out of the row."
                  % (failed, runs, meta.get("h2_streams", "?"),
                     thousands(meta.get("h2_mux_requests", "?")), meta.get("h2_timeout", "?"))]

    worst = max(fig.results.get("stemedb_h2c_mux_max_ms", [0]))
    single = max(fig.results.get("stemedb_h2c_max_ms", [0]))
    if worst > 1000:
        lines += ["", "With %s streams per connection some requests waited up to %.1f s, "
                  "while no single-stream h2c request took more than %.0f ms. The forwarder "
                  "keeps at most 8 idle upstream connections per HTTP/2 connection and opens "
                  "a new one for every other stream in flight, closing it after its "
                  "response." % (meta.get("h2_streams", "?"), worst / 1000, single)]
        log = work / "stemedb.log"
        if log.exists() and "reached its share" in log.read_text(encoding="utf-8",
                                                                 errors="replace"):
            lines[-1] += (" The server log of this run shows HTTP workers reaching their "
                          "share of the connection limit, after which new client connections "
                          "wait in the listen backlog.")

    lingering = meta.get("h1_connections_after_mux", "")
    if lingering:
        lines += ["", "After the multiplexed runs, %s connections to the API port "
                  "were still established (`ss`), with no client running."
                  % thousands(lingering)]
    return lines


def goals_table(fig):
    checks = [
        ("Signed single asserts/s ≥ %s" % format(GOAL_SINGLE_PER_SEC, ","),
         fig.median("stemedb_single_rate"), GOAL_SINGLE_PER_SEC, True, "pg_single_rate"),
        ("Batch ingest ≥ %s assertions/s" % format(GOAL_BATCH_PER_SEC, ","),
         fig.median("stemedb_batch_rate"), GOAL_BATCH_PER_SEC, True, "pg_batch_rate"),
        ("Lens queries ≥ %s/s" % format(GOAL_QUERY_PER_SEC, ","),
         fig.median("stemedb_query_rate"), GOAL_QUERY_PER_SEC, True, "pg_query_rate"),
        ("Lens query p99 < %.0f ms" % GOAL_QUERY_P99_MS,
         fig.median("stemedb_query_p99_ms"), GOAL_QUERY_P99_MS, False, "pg_query_p99_ms"),
    ]
    # The read views and h2c are held to the lens-query goals too. They have no PostgreSQL
    # peer, so their last column is n/a.
    for label, metric in (("Skeptic reads", "stemedb_skeptic"),
                          ("Layered reads", "stemedb_layered"),
                          ("Vote-lens queries", "stemedb_vote"),
                          ("Authority queries over h2c, 1 stream per connection",
                           "stemedb_h2c")):
        checks.append(("%s ≥ %s/s" % (label, format(GOAL_QUERY_PER_SEC, ",")),
                       fig.median(metric + "_rate"), GOAL_QUERY_PER_SEC, True, None))
        checks.append(("%s p99 < %.0f ms" % (label, GOAL_QUERY_P99_MS),
                       fig.median(metric + "_p99_ms"), GOAL_QUERY_P99_MS, False, None))
    lines = ["| Goal | StemeDB median | Goal | Ahead of PostgreSQL |", "|---|---:|---|---|"]
    for label, value, goal, higher, peer_metric in checks:
        peer = fig.median(peer_metric) if peer_metric else None
        if value is None or peer is None:
            ahead = "n/a"
        else:
            ahead = "yes" if (value > peer if higher else value < peer) else "no"
        shown = "n/a" if value is None else ("{:,.0f}".format(value) if higher
                                             else "%.2f ms" % value)
        lines.append("| %s | %s | %s | %s |" % (label, shown, goal_text(value, goal, higher),
                                                 ahead))
    return lines


def goals_notes(work, fig):
    """Say, for each read view and for h2c, what limits it when it misses a goal."""
    lines = []
    for label, metric, profile in (("Skeptic reads", "stemedb_skeptic", "skeptic"),
                                   ("Layered reads", "stemedb_layered", "layered"),
                                   ("Vote-lens queries", "stemedb_vote", "vote"),
                                   ("h2c authority queries", "stemedb_h2c", None)):
        rate = fig.median(metric + "_rate")
        p99 = fig.median(metric + "_p99_ms")
        if rate is None or p99 is None:
            continue
        if rate >= GOAL_QUERY_PER_SEC and p99 <= GOAL_QUERY_P99_MS:
            continue
        if profile is None:
            text = ("%s run at %s the rate of the same queries from the same client "
                    "(h2load) over HTTP/1.1. Each of them also crosses the forwarder's "
                    "loopback HTTP/1.1 connection, so on these shared cores every h2c "
                    "request costs the HTTP/1.1 request's work plus the HTTP/2 framing."
                    % (label, ratio_text(rate, fig.median("stemedb_h1_rate"))))
            lines += ["", text]
            continue
        text = ("%s run at %s the rate of the authority query on the same store"
                % (label, ratio_text(rate, fig.median("stemedb_query_rate"))))
        threads = read_profile(work / ("profile-%s-comm.txt" % profile))
        libraries = read_profile(work / ("profile-%s-dso.txt" % profile))
        text += ". " + (bottleneck_sentence(threads, libraries) if threads
                        else "No profile was taken for them.")
        lines += ["", text]
    return lines


def limits_section(fig, meta):
    verify = fig.median("verify_per_sec")
    fsync_p50 = fig.median("fsync_p50_us")
    cores = int(meta.get("cores", "1"))
    lines = [
        "| Physical limit | Measured |",
        "|---|---:|",
        "| Ed25519 verifications/s on one core (libsodium, 60-byte messages) | %s |"
        % fig.cell("verify_per_sec"),
        "| fdatasync after a 4 KiB append, p50 (µs) | %s |" % fig.cell("fsync_p50_us"),
        "| fdatasync after a 4 KiB append, p99 (µs) | %s |" % fig.cell("fsync_p99_us"),
        "",
    ]
    if verify:
        lines.append(
            "Every accepted assertion costs one signature verification on the server, so "
            "signature checking alone caps ingest at about %s assertions/s per core and "
            "%s/s if all %d cores did nothing else. The load driver and the HTTP, JSON, "
            "WAL and RocksDB work share the same cores."
            % (format(round(verify), ","), format(round(verify * cores), ","), cores))
    for name, title in (("stemedb_single", "single-assert"), ("stemedb_batch", "batch")):
        batch = fig.median(name + "_wal_batch_avg")
        sync_us = fig.median(name + "_fsync_avg_us")
        if batch is None or sync_us is None:
            continue
        lines.append("")
        lines.append(
            "During the %s runs the server's own metrics (`stemedb_wal_batch_size`, "
            "`stemedb_wal_fsync_latency_seconds`) show %s WAL fdatasync calls carrying "
            "%.1f assertions each on average, at a mean of %.0f µs per call."
            % (title, format(int(fig.median(name + "_fsyncs")), ","), batch, sync_us))
    return lines


# Role of each library in stemedb-api, used to label the per-library CPU split.
LIBRARY_ROLES = (
    ("libsodium", "Ed25519 verification and BLAKE2b hashing"),
    ("librocksdb", "RocksDB"),
    ("libc", "allocation, copies and system-call wrappers"),
    ("libjansson", "JSON parsing and output"),
    ("libevent", "HTTP server"),
    ("kernel", "sockets, fdatasync and scheduling"),
    ("stemedb-api", "StemeDB's own code"),
)


def read_profile(path):
    """Return [(percent, name)] from a perf report table with one sort key."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith("%"):
            rows.append((float(parts[0][:-1]), " ".join(parts[1:])))
    return rows


def library_role(dso):
    for key, role in LIBRARY_ROLES:
        if key in dso:
            return role
    return None


def process_label(pid_comm):
    """Turn perf's "pid:comm" into the comm, calling the idle task (pid 0) idle."""
    pid, _, comm = pid_comm.partition(":")
    if pid == "0" or comm == "swapper":
        return "idle"
    return comm or pid_comm


def bottleneck_sentence(threads, libraries):
    """Name the limit a profile points at: waiting when the cores were often idle, else
    the library that used most of the server's CPU time."""
    idle = sum(percent for percent, comm in threads if process_label(comm) == "idle")
    if idle >= 20:
        return ("With %.0f%% of CPU time idle while every client had a request in flight, "
                "this workload did not saturate the cores: it is limited by requests "
                "waiting inside the server (for the commit pipeline or a lock), not by "
                "CPU." % idle)
    if libraries:
        percent, dso = libraries[0]
        label = dso.replace("[kernel.kallsyms]", "kernel").split(".so")[0]
        return ("The cores were saturated (%.0f%% idle), and %s took the largest share of "
                "the server's time (%.0f%%)." % (idle, label, percent))
    return "The cores were saturated (%.0f%% idle)." % idle


def profile_summary(work, name, title):
    """Describe one workload's profile in sentences, or return [] without a profile."""
    threads = read_profile(work / ("profile-%s-comm.txt" % name))
    if not threads:
        return []
    server = sum(percent for percent, _ in read_profile(work / ("profile-%s-server.txt" % name)))
    idle = sum(percent for percent, comm in threads if process_label(comm) == "idle")
    driver = sum(percent for percent, comm in threads if comm in ("loadgen", "wrk"))
    lines = ["**%s.** Share of all CPU samples: the benchmarked stemedb-api %.0f%% (all its "
             "threads), the load driver %.0f%%, idle %.0f%%, other work on the machine "
             "%.0f%%." % (title, server, driver, idle, max(0.0, 100 - server - driver - idle))]
    libraries = read_profile(work / ("profile-%s-dso.txt" % name))
    if libraries:
        parts = []
        for percent, dso in libraries[:7]:
            role = library_role(dso)
            label = dso.replace("[kernel.kallsyms]", "kernel").split(".so")[0]
            parts.append("%s %.0f%%%s" % (label, percent, " (%s)" % role if role else ""))
        lines[0] += " Inside stemedb-api: " + "; ".join(parts) + "."
    lines[0] += " " + bottleneck_sentence(threads, libraries)
    calls = work / ("profile-%s-calls.txt" % name)
    if calls.exists() and calls.read_text(encoding="utf-8").strip():
        lines += ["", "StemeDB functions by the share of stemedb-api samples spent in them and "
                  "their callees (first column), and in their own code (second column):", "",
                  "```"] + calls.read_text(encoding="utf-8").rstrip().splitlines() + ["```"]
    symbols = work / ("profile-%s-sym.txt" % name)
    if symbols.exists() and symbols.read_text(encoding="utf-8").strip():
        lines += ["", "Hottest functions of any library, as shares of the server's samples:", "",
                  "```"] + symbols.read_text(encoding="utf-8").rstrip().splitlines() + ["```"]
    return lines + [""]


def profile_section(work):
    lines = []
    for name, title in (("single", "Single asserts"), ("batch", "Batch ingest"),
                        ("query", "Authority-lens queries"), ("skeptic", "Skeptic reads"),
                        ("layered", "Layered reads"), ("vote", "Vote-lens queries")):
        lines += profile_summary(work, name, title)
    if not lines:
        return ["No profile was taken in this run (perf is missing or cannot sample here)."]
    return ["`perf record -a -e cpu-clock` sampled every core for 4 s during an extra, "
            "unmeasured run of each workload, after the driver had built its requests. "
            "Hardware counters are not available in this virtual machine, so these are "
            "timer samples. Idle is the kernel's idle task (`swapper`). A second recording "
            "of the benchmarked stemedb-api alone, with DWARF call graphs, gives its split "
            "by library and the time per StemeDB function.",
            ""] + lines


METHOD = """\
## How each figure is measured

- **Physical limits**: `build/bin/physical_limits verify` signs 1,024 messages shaped like
  the real signing message (20-byte domain, 32-byte hash, 8-byte timestamp) and verifies
  them in a loop for 2 s with `crypto_sign_verify_detached`.
  `physical_limits fsync` appends 1,000 blocks of 4 KiB to a file in the benchmark's data
  directory and calls `fdatasync` after each.
- **Single asserts**: `build/bin/loadgen single` builds and signs every assertion (Ed25519,
  through the project's own assertion code) before the clock starts, then sends them
  over 64 HTTP/1.1 keep-alive connections to `POST /v1/assert` with
  `STEMEDB_DURABILITY=immediate`. Only `201 created` responses count; any other status
  fails the run. Latency runs from the first byte written to the last byte read.
- **Batch ingest**: `loadgen batch` sends the same kind of signed assertions to
  `POST /v1/assert/batch`, 500 per request, from 4 connections, and counts the
  `created` items of each response.
- **Loading the query dataset**: `loadgen preload` builds and signs each batch while
  the previous ones are in flight, so its time includes the driver's signing on the
  same cores. PostgreSQL's time is `\\copy` of the finished rows plus `VACUUM ANALYZE`.
- **Queries**: `loadgen preload` loads the query dataset through the batch endpoint,
  then wrk (Debian's package, script `bench/query.lua`) sends
  `GET /v1/query?subject=bench/q/<random>&predicate=bench_claim&lens=authority`
  from 2 threads and 64 connections. Before measuring, the script checks that a query
  returns a winner and all 10 candidates.
- **Skeptic and layered reads**: the same wrk script with an endpoint argument sends
  `GET /v1/skeptic?subject=bench/q/<random>&predicate=bench_claim` and the same for
  `/v1/layered`, from 2 threads and 64 connections. Before measuring, the script checks
  that each returns all 10 candidates and at least one claim or tier.
- **Vote-lens queries**: `loadgen votes` signs every vote with the voter's Ed25519 key
  through the project's record code (`stemedb-vote-v1` over the record id) before the
  clock starts, and sends them to `POST /v1/vote`, one per request. The votes target
  preloaded claims, whose hashes the driver recomputes from the same deterministic
  fields. The script checks that a voted subject gets a winner and a nonzero vote score,
  then wrk sends `GET /v1/query?...&lens=vote` for the same random subjects.
- **HTTP/2**: stemedb-api serves HTTP/1.1 and h2c on its one API port. h2load
  (Debian's nghttp2-client) sends the authority query over 64 connections to that
  port, with `--h1` for HTTP/1.1 and with h2c prior knowledge for HTTP/2,
  cycling through 10,000 random subjects drawn with a fixed seed. Every run has a fixed
  request count and a time limit. Latency percentiles come from h2load's per-request
  log (`--log-file`).
- **PostgreSQL 15**: a private cluster made by `initdb` in the work directory, run as
  the postgres user, reachable only through a Unix socket in that directory, with
  `fsync=on` and `synchronous_commit=on` and every other setting at its default.
  The table and index are in `bench/pg_schema.sql`. pgbench (`-M prepared -j 2`) runs the
  same three workloads: a one-row `INSERT ... ON CONFLICT DO NOTHING` per transaction
  from 64 clients; one `INSERT ... SELECT ... FROM (VALUES ...)` of 500 rows per
  transaction from 4 clients; and
  `SELECT ... WHERE subject = $1 AND predicate = 'bench_claim' ORDER BY source_class,
  confidence DESC LIMIT 1` from 64 clients. Latency percentiles come from pgbench's
  per-transaction logs (`-l`).

## What the comparison does and does not hold equal

- PostgreSQL does not verify signatures: it stores the signature bytes it is given.
  StemeDB verifies every Ed25519 signature before the write is logged, so each
  StemeDB write carries at least the verification cost shown under physical limits.
- Both sides make every acknowledged write durable with fdatasync on the same disk, and
  both share concurrent commits (StemeDB's group commit, PostgreSQL's WAL flush).
- StemeDB receives JSON over HTTP and hashes the canonical bytes of each assertion.
  pgbench sends prepared statements over a Unix socket, and for the single inserts
  computes the primary key with `sha256()` in SQL.
- The StemeDB query returns the authority-lens winner and up to 100 candidates with
  decayed confidences and scores. The PostgreSQL query returns only the top row by
  source class and confidence, with no decay and no signer trust. The StemeDB query is
  therefore the heavier one.
- The load generators run on the same two cores as the servers (loadgen and wrk for
  StemeDB, pgbench for PostgreSQL), so every figure includes the client's CPU use.
"""


# Sections that other scripts write into the page (bench/audit_cost.sh results); render
# carries each over from the existing page unchanged.
KEPT_SECTIONS = ["## Query audit cost"]


def kept_sections(output):
    """Return the lines of every KEPT_SECTIONS heading found in the current page."""
    try:
        old = Path(output).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    lines = []
    for heading in KEPT_SECTIONS:
        if heading not in old:
            continue
        start = old.index(heading)
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")),
                   len(old))
        section = old[start:end]
        while section and section[-1] == "":
            section.pop()
        lines += [""] + section
    return lines


def render(work, output):
    results = load_results(work)
    meta = load_meta(work)
    fig = Figures(results)
    lines = [
        "# Benchmarks",
        "",
        "This page is written by `make bench` (`bench/run.sh`); rerun it to refresh the "
        "numbers. Every figure below comes from the run described here, on this machine, "
        "with StemeDB and PostgreSQL 15 measured one after the other in that run. Two "
        "sections can come from later runs and name their own: the protection section, "
        "which `BENCH_ONLY=protection make bench` refreshes alone, and the query audit "
        "cost from `bench/audit_cost.sh`.",
        "",
        "## Machine and run",
        "",
    ]
    lines += machine_section(meta)
    lines += ["", "## Datasets", ""] + dataset_section(meta)
    lines += ["", "## Results", ""] + results_table(fig, meta)
    lines += ["", "## Skeptic, layered and vote-lens reads", ""] + views_section(fig, meta)
    lines += ["", "## HTTP/2 (h2c) next to HTTP/1.1", ""] + http2_section(work, fig, meta)
    lines += ["", "## Goals", ""] + goals_table(fig) + goals_notes(work, fig)
    lines += ["", "## Physical limits of this machine", ""] + limits_section(fig, meta)
    lines += ["", "## Where the time goes", ""] + profile_section(work)
    lines += ["", PROTECTION_HEADING, ""] + protection_section(fig, meta)
    lines += kept_sections(output)
    lines += ["", METHOD]
    Path(output).write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")


def main(argv):
    if len(argv) >= 3 and argv[1] == "pgbench-latency":
        pgbench_latency(argv[2:])
        return 0
    if len(argv) == 3 and argv[1] == "h2load-latency":
        h2load_latency(argv[2])
        return 0
    if len(argv) == 4 and argv[1] == "render":
        render(Path(argv[2]), argv[3])
        return 0
    if len(argv) == 4 and argv[1] == "protection":
        replace_protection_section(Path(argv[2]), argv[3])
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
