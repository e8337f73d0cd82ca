/* Unit tests for the admission proof of work: the digest layout, leading zero bits,
 * verification and the solver. The vector was computed independently with Python's
 * hashlib.blake2b(digest_size=32); docs/formats.md lists the same values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "stemedb/hex.h"
#include "stemedb/pow.h"

#define VECTOR_TIMESTAMP 1700000000u

static void vector_agent(uint8_t agent[POW_AGENT_ID_LEN])
{
	for (int i = 0; i < POW_AGENT_ID_LEN; i++)
		agent[i] = (uint8_t)i;
}

static void digest_matches_vector(void **state)
{
	uint8_t agent[POW_AGENT_ID_LEN], digest[POW_DIGEST_LEN];
	char hex[2 * POW_DIGEST_LEN + 1];

	(void)state;
	vector_agent(agent);
	pow_digest(0, agent, VECTOR_TIMESTAMP, digest);
	hex_encode(digest, sizeof(digest), hex);
	assert_string_equal(hex,
	                    "3ddefb3fd66879828fd1b72418d6a70626d567542bb27318caffaa8c61a788c4");

	pow_digest(18316, agent, VECTOR_TIMESTAMP, digest);
	hex_encode(digest, sizeof(digest), hex);
	assert_string_equal(hex,
	                    "0000ab8e3500a9e26a2f338e8a8a12cd5c358de3abbbe77be256098cfa8b448d");
}

static void leading_zero_bits_counts(void **state)
{
	uint8_t digest[POW_DIGEST_LEN];

	(void)state;
	memset(digest, 0, sizeof(digest));
	assert_int_equal(pow_leading_zero_bits(digest), 256);
	digest[0] = 0x80;
	assert_int_equal(pow_leading_zero_bits(digest), 0);
	digest[0] = 0x01;
	assert_int_equal(pow_leading_zero_bits(digest), 7);
	digest[0] = 0x00;
	digest[1] = 0x0f;
	assert_int_equal(pow_leading_zero_bits(digest), 12);
}

static void check_accepts_and_rejects(void **state)
{
	uint8_t agent[POW_AGENT_ID_LEN];

	(void)state;
	vector_agent(agent);
	assert_true(pow_check(18316, agent, VECTOR_TIMESTAMP, 16));
	assert_false(pow_check(18316, agent, VECTOR_TIMESTAMP, 17));
	assert_false(pow_check(0, agent, VECTOR_TIMESTAMP, 16));
	/* The same nonce for another timestamp or agent is a different digest. */
	assert_false(pow_check(18316, agent, VECTOR_TIMESTAMP + 1, 16));
	agent[31] ^= 1;
	assert_false(pow_check(18316, agent, VECTOR_TIMESTAMP, 16));
	assert_true(pow_check(0, agent, VECTOR_TIMESTAMP, 0));
}

static void solver_finds_first_nonce(void **state)
{
	uint8_t agent[POW_AGENT_ID_LEN];
	uint64_t nonce = 0;

	(void)state;
	vector_agent(agent);
	assert_true(pow_solve(agent, VECTOR_TIMESTAMP, 16, 0, 1u << 24, &nonce));
	assert_int_equal(nonce, 18316);
	assert_false(pow_solve(agent, VECTOR_TIMESTAMP, 16, 0, 18316, &nonce));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(digest_matches_vector),
	        cmocka_unit_test(leading_zero_bits_counts),
	        cmocka_unit_test(check_accepts_and_rejects),
	        cmocka_unit_test(solver_finds_first_nonce),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
