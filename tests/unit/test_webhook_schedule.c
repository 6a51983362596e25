/* test_webhook_schedule.c — the webhook plugin's retry schedule (parsing, delays with
 * jitter) and event-type patterns. */
#include "tap.h"
#include "wh_logic.h"

int main(void)
{
	unsigned d[WH_SCHEDULE_MAX];
	char err[160];

	int n = wh_schedule_parse("5,30,60,300,1200,3600,14400,21600,43200,43200,86400", d, err,
	                          sizeof(err));
	is_int(n, 11, "the default schedule has 11 delays");
	ok(n == 11 && d[0] == 5 && d[1] == 30 && d[5] == 3600 && d[10] == 86400, "in order");
	is_int(wh_schedule_parse("1,1,1", d, err, sizeof(err)), 3, "a short test schedule");
	is_int(wh_schedule_parse(" 2 , 3\t,4 ", d, err, sizeof(err)), 3, "spaces around commas");
	ok(d[0] == 2 && d[1] == 3 && d[2] == 4, "values read");
	is_int(wh_schedule_parse("7", d, err, sizeof(err)), 1, "one delay");
	const char *bad[] = { "",    ",",  "1,", ",1",  "1,,2",   "a",
		              "1;2", "-1", "0",  "1.5", "604801", "99999999999999999999",
		              "1 2" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ok(wh_schedule_parse(bad[i], d, err, sizeof(err)) == -1 && err[0],
		   "'%s' refused with a message (%s)", bad[i], err);
	}
	ok(wh_schedule_parse(NULL, d, err, sizeof(err)) == -1, "NULL refused");
	char many[400] = "1";
	for (int i = 1; i < WH_SCHEDULE_MAX; i++)
		strcat(many, ",1");
	is_int(wh_schedule_parse(many, d, err, sizeof(err)), WH_SCHEDULE_MAX, "30 delays fit");
	strcat(many, ",1");
	is_int(wh_schedule_parse(many, d, err, sizeof(err)), -1, "31 do not");
	is_int(wh_schedule_parse("604800", d, err, sizeof(err)), 1, "a week is the longest delay");

	/* Delays: attempt n failed → the n-th delay, ±10%. */
	unsigned s[] = { 5, 30, 60, 300 };
	is_int(wh_schedule_delay(s, 4, 1, 5000), 5, "after attempt 1: 5 s (no jitter at mid)");
	is_int(wh_schedule_delay(s, 4, 2, 5000), 30, "after attempt 2: 30 s");
	is_int(wh_schedule_delay(s, 4, 4, 5000), 300, "after attempt 4: 300 s");
	is_int(wh_schedule_delay(s, 4, 9, 5000), 300, "past the end: the last delay");
	is_int(wh_schedule_delay(s, 4, 0, 5000), 5, "attempt 0 is read as 1");
	is_int(wh_schedule_delay(s, 4, 4, 0), 270, "jitter down to -10%%");
	is_int(wh_schedule_delay(s, 4, 4, 10000), 330, "jitter up to +10%%");
	is_int(wh_schedule_delay(s, 4, 4, 99999), 330, "out-of-range randomness is clamped");
	unsigned one[] = { 1 };
	ok(wh_schedule_delay(one, 1, 1, 0) == 1 && wh_schedule_delay(one, 1, 1, 10000) == 1,
	   "never below one second");
	is_int(wh_schedule_delay(NULL, 0, 1, 0), 1, "no schedule: one second");
	bool spread = false;
	for (uint32_t r = 0; r <= 10000; r += 250)
		spread |= wh_schedule_delay(s, 4, 3, r) != 60;
	ok(spread, "jitter moves the delay");

	/* Patterns. */
	const char *good[] = { "*", "registration.confirmed", "registration.*", "a", "a_b.c9" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ok(wh_pattern_valid(good[i]), "pattern '%s' valid", good[i]);
	const char *badp[] = { "", ".*", "*.x", "a*", "A.b", "a.**", "a b", "a.*.b", "é" };
	for (size_t i = 0; i < sizeof(badp) / sizeof(badp[0]); i++)
		ok(!wh_pattern_valid(badp[i]), "pattern '%s' refused", badp[i]);
	char longp[WH_PATTERN_MAX + 2];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	ok(!wh_pattern_valid(longp), "a pattern over 100 bytes refused");
	ok(!wh_pattern_valid(NULL), "NULL refused");
	ok(wh_pattern_matches("*", "call.published"), "* matches everything");
	ok(wh_pattern_matches("call.published", "call.published"), "exact match");
	ok(!wh_pattern_matches("call.published", "call.published2"), "no prefix match for types");
	ok(wh_pattern_matches("registration.*", "registration.confirmed"), "prefix.* matches");
	ok(!wh_pattern_matches("registration.*", "registration"), "but not the bare prefix");
	ok(!wh_pattern_matches("registration.*", "registrations.x"), "nor a longer word");

	/* UUIDs. */
	ok(wh_is_uuid("0b9c3f3e-8a55-4c61-9d8f-2f0e6d3b1a77"), "a UUID");
	ok(wh_is_uuid("0B9C3F3E-8A55-4C61-9D8F-2F0E6D3B1A77"), "upper case");
	ok(!wh_is_uuid("0b9c3f3e8a554c619d8f2f0e6d3b1a77"), "no dashes refused");
	ok(!wh_is_uuid("0b9c3f3e-8a55-4c61-9d8f-2f0e6d3b1a7g"), "a non-hex digit refused");
	ok(!wh_is_uuid("0b9c3f3e-8a55-4c61-9d8f-2f0e6d3b1a777"), "too long refused");
	ok(!wh_is_uuid(NULL), "NULL refused");
	return tap_done();
}
