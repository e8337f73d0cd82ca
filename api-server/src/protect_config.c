/* Configuration options of the circuit breaker, admission and quota layers. */

#include "protect.h"

static size_t breaker_options(struct protect_config *cfg, struct config_option *o)
{
	size_t n = 0;

	o[n++] = (struct config_option){"STEMEDB_CIRCUIT_BREAKER_ENABLED",
	                                "circuit-breaker-enabled",
	                                CONFIG_BOOL,
	                                &cfg->breaker_enabled,
	                                "true",
	                                0,
	                                0,
	                                NULL,
	                                "reject agents whose recent requests keep failing"};
	o[n++] = (struct config_option){"STEMEDB_CIRCUIT_BREAKER_FAILURES",
	                                "circuit-breaker-failures",
	                                CONFIG_UINT,
	                                &cfg->breaker_failures,
	                                "5",
	                                1,
	                                BREAKER_THRESHOLD_MAX,
	                                NULL,
	                                "failures within the window that open an agent's breaker"};
	o[n++] = (struct config_option){"STEMEDB_CIRCUIT_BREAKER_WINDOW_SECONDS",
	                                "circuit-breaker-window-seconds",
	                                CONFIG_UINT,
	                                &cfg->breaker_window_seconds,
	                                "60",
	                                1,
	                                86400,
	                                NULL,
	                                "window in which failures are counted, in seconds"};
	o[n++] = (struct config_option){"STEMEDB_CIRCUIT_BREAKER_OPEN_SECONDS",
	                                "circuit-breaker-open-seconds",
	                                CONFIG_UINT,
	                                &cfg->breaker_open_seconds,
	                                "30",
	                                1,
	                                86400,
	                                NULL,
	                                "time an opened breaker rejects the agent, in seconds"};
	o[n++] = (struct config_option){"STEMEDB_CIRCUIT_BREAKER_MAX_AGENTS",
	                                "circuit-breaker-max-agents",
	                                CONFIG_UINT,
	                                &cfg->breaker_max_agents,
	                                "100000",
	                                16,
	                                100000000,
	                                NULL,
	                                "agents tracked in memory by the breakers and the "
	                                "assertion count cache"};
	return n;
}

static size_t admission_options(struct protect_config *cfg, struct config_option *o)
{
	size_t n = 0;

	o[n++] = (struct config_option){"STEMEDB_ADMISSION_ENABLED",
	                                "admission-enabled",
	                                CONFIG_BOOL,
	                                &cfg->admission_enabled,
	                                "true",
	                                0,
	                                0,
	                                NULL,
	                                "require proof of work from new and untrusted agents"};
	o[n++] = (struct config_option){"STEMEDB_POW_NEW_AGENT_BITS",
	                                "pow-new-agent-bits",
	                                CONFIG_UINT,
	                                &cfg->rules.new_agent_bits,
	                                "16",
	                                0,
	                                POW_DIFFICULTY_MAX,
	                                NULL,
	                                "leading zero bits asked of agents below "
	                                "POW_NEW_AGENT_ASSERTIONS"};
	o[n++] = (struct config_option){"STEMEDB_POW_GROWING_AGENT_BITS",
	                                "pow-growing-agent-bits",
	                                CONFIG_UINT,
	                                &cfg->rules.growing_agent_bits,
	                                "1",
	                                0,
	                                POW_DIFFICULTY_MAX,
	                                NULL,
	                                "leading zero bits asked of agents below "
	                                "POW_ESTABLISHED_ASSERTIONS and of untrusted tiers"};
	o[n++] = (struct config_option){"STEMEDB_POW_NEW_AGENT_ASSERTIONS",
	                                "pow-new-agent-assertions",
	                                CONFIG_UINT,
	                                &cfg->rules.new_agent_assertions,
	                                "10",
	                                0,
	                                1000000,
	                                NULL,
	                                "stored assertions below which an agent is new"};
	o[n++] = (struct config_option){"STEMEDB_POW_ESTABLISHED_ASSERTIONS",
	                                "pow-established-assertions",
	                                CONFIG_UINT,
	                                &cfg->rules.established_assertions,
	                                "50",
	                                0,
	                                1000000,
	                                NULL,
	                                "stored assertions from which an agent needs no proof"};
	o[n++] = (struct config_option){"STEMEDB_POW_EXEMPT_TRUST",
	                                "pow-exempt-trust",
	                                CONFIG_DOUBLE,
	                                &cfg->rules.exempt_trust,
	                                "0.6",
	                                0,
	                                1,
	                                NULL,
	                                "trust from which an agent needs no proof"};
	o[n++] = (struct config_option){"STEMEDB_POW_VALIDITY_SECONDS",
	                                "pow-validity-seconds",
	                                CONFIG_UINT,
	                                &cfg->pow_validity_seconds,
	                                "300",
	                                1,
	                                86400,
	                                NULL,
	                                "largest difference between X-PoW-Timestamp and the "
	                                "server clock, in seconds"};
	o[n++] = (struct config_option){"STEMEDB_POW_REPLAY_CAPACITY",
	                                "pow-replay-capacity",
	                                CONFIG_UINT,
	                                &cfg->pow_replay_capacity,
	                                "100000",
	                                16,
	                                100000000,
	                                NULL,
	                                "used proofs remembered to reject replays"};
	o[n++] = (struct config_option){"STEMEDB_ADMISSION_COUNT_CACHE_SECONDS",
	                                "admission-count-cache-seconds",
	                                CONFIG_UINT,
	                                &cfg->count_cache_seconds,
	                                "60",
	                                0,
	                                86400,
	                                NULL,
	                                "age after which an agent's cached assertion count is "
	                                "read again from the store, in seconds"};
	return n;
}

static size_t quota_options(struct protect_config *cfg, struct config_option *o)
{
	size_t n = 0;

	o[n++] = (struct config_option){"STEMEDB_QUOTA_ENABLED",
	                                "quota-enabled",
	                                CONFIG_BOOL,
	                                &cfg->quota_enabled,
	                                "true",
	                                0,
	                                0,
	                                NULL,
	                                "charge every agent-scoped request to an hourly token "
	                                "quota"};
	o[n++] =
	        (struct config_option){"STEMEDB_QUOTA_TOKENS",
	                               "quota-tokens",
	                               CONFIG_UINT,
	                               &cfg->quota_tokens,
	                               "10000",
	                               1,
	                               1000000000,
	                               NULL,
	                               "tokens per window of a verified agent (tiers multiply it)"};
	o[n++] = (struct config_option){"STEMEDB_QUOTA_WINDOW_SECONDS",
	                                "quota-window-seconds",
	                                CONFIG_UINT,
	                                &cfg->quota_window_seconds,
	                                "3600",
	                                1,
	                                604800,
	                                NULL,
	                                "length of a quota window, in seconds"};
	o[n++] = (struct config_option){"STEMEDB_QUOTA_MAX_AGENTS",
	                                "quota-max-agents",
	                                CONFIG_UINT,
	                                &cfg->quota_max_agents,
	                                "100000",
	                                16,
	                                100000000,
	                                NULL,
	                                "agents whose quota is tracked in memory"};
	o[n++] = (struct config_option){"STEMEDB_QUOTA_ASSERT_COST",
	                                "quota-assert-cost",
	                                CONFIG_UINT,
	                                &cfg->costs.assert_tokens,
	                                "10",
	                                0,
	                                1000000,
	                                NULL,
	                                "tokens of an assertion, batch, epoch, alias or source"};
	o[n++] = (struct config_option){"STEMEDB_QUOTA_VOTE_COST",
	                                "quota-vote-cost",
	                                CONFIG_UINT,
	                                &cfg->costs.vote_tokens,
	                                "1",
	                                0,
	                                1000000,
	                                NULL,
	                                "tokens of a vote or co-signature"};
	o[n++] = (struct config_option){"STEMEDB_QUOTA_QUERY_COST",
	                                "quota-query-cost",
	                                CONFIG_UINT,
	                                &cfg->costs.query_tokens,
	                                "5",
	                                0,
	                                1000000,
	                                NULL,
	                                "tokens of a lens query before its lenses"};
	o[n++] = (struct config_option){"STEMEDB_QUOTA_LENS_COST",
	                                "quota-lens-cost",
	                                CONFIG_UINT,
	                                &cfg->costs.lens_tokens,
	                                "1",
	                                0,
	                                1000000,
	                                NULL,
	                                "tokens per lens that a query evaluates"};
	o[n++] = (struct config_option){"STEMEDB_QUOTA_READ_COST",
	                                "quota-read-cost",
	                                CONFIG_UINT,
	                                &cfg->costs.read_tokens,
	                                "1",
	                                0,
	                                1000000,
	                                NULL,
	                                "tokens of any other agent-scoped read"};
	return n;
}

size_t protect_config_options(struct protect_config *cfg, struct config_option *o)
{
	size_t n = 0;

	n += breaker_options(cfg, o + n);
	n += admission_options(cfg, o + n);
	n += quota_options(cfg, o + n);
	o[n++] = (struct config_option){"STEMEDB_QUOTA_KIB_COST",
	                                "quota-kib-cost",
	                                CONFIG_UINT,
	                                &cfg->costs.tokens_per_kib,
	                                "1",
	                                0,
	                                1000000,
	                                NULL,
	                                "tokens per started KiB of request body"};
	return n;
}
