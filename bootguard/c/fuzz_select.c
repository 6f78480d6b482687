/*
 * libFuzzer target for rfbootrec (not part of the loader). fuzz/run.sh builds
 * it with clang -fsanitize=fuzzer,address,undefined and runs it (make fuzz,
 * make fuzz-smoke), seeded with the .bin files of testdata/bootrecord.
 *
 * The input is a record file, as a loader reads it (its first RFBR_FILE_SIZE
 * bytes). The target checks what the guard relies on, and aborts when it does
 * not hold:
 *
 *   - every valid copy re-encodes to the same bytes (reserved bytes aside,
 *     which are written as zero) and decodes to the same record;
 *   - rfbr_select on the file: when it writes, the copy it encoded, placed at
 *     target * RFBR_COPY_SIZE in a RFBR_FILE_SIZE file holding the input,
 *     decodes, is the copy rfbr_pick picks next, and is the record decided
 *     (d.next, sequence one past the current record's, the slot to load
 *     active). A write the next read cannot find would lose the breadcrumb.
 *     A trial loads with the breadcrumb LOADING in that record, and after a
 *     clean stop (STOPPED) without spending a try.
 *
 * Each failure prints what failed on stderr before abort(), and libFuzzer
 * writes the input to its artifact prefix (fuzz/run.sh names it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rfbootrec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, what)                                                  \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "fuzz_select: %s\n", what);        \
			abort();                                           \
		}                                                          \
	} while (0)

static int entry_equal(const struct rfbr_entry *a, const struct rfbr_entry *b)
{
	return a->channel == b->channel && a->version == b->version &&
	       memcmp(a->digest, b->digest, sizeof a->digest) == 0 && a->state == b->state &&
	       a->tries == b->tries && a->load_tries == b->load_tries && a->crumb == b->crumb &&
	       a->reason == b->reason;
}

/* record_equal compares field by field: memcmp would compare padding. */
static int record_equal(const struct rfbr_record *a, const struct rfbr_record *b)
{
	return a->seq == b->seq && a->active == b->active && a->fallback == b->fallback &&
	       entry_equal(&a->slots[0], &b->slots[0]) && entry_equal(&a->slots[1], &b->slots[1]);
}

/* reserved reports whether byte off of a copy is reserved (written as zero,
 * ignored on read) or the CRC, which covers the reserved bytes. */
static int reserved(size_t off)
{
	size_t e;
	if ((off >= 18 && off < 32) || off >= 160)
		return 1;
	if (off >= 32 && off < 160) {
		e = (off - 32) % 64;
		return e >= 45;
	}
	return 0;
}

/* round_trip checks a copy that decodes: encoding the record gives the same
 * bytes but reserved ones, and decodes to the same record. */
static void round_trip(const uint8_t *b, size_t len)
{
	struct rfbr_record r, again;
	uint8_t enc[RFBR_COPY_SIZE];
	size_t i;
	if (!rfbr_decode_copy(b, len, &r))
		return;
	rfbr_encode(&r, enc);
	for (i = 0; i < RFBR_COPY_SIZE; i++)
		CHECK(reserved(i) || enc[i] == b[i], "a valid copy re-encodes to other bytes");
	CHECK(rfbr_decode_copy(enc, sizeof enc, &again), "a re-encoded copy does not decode");
	CHECK(record_equal(&again, &r), "a re-encoded copy decodes to another record");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t file[RFBR_FILE_SIZE];
	uint8_t out[RFBR_COPY_SIZE], again[RFBR_COPY_SIZE];
	struct rfbr_decision d;
	struct rfbr_record cur, got;
	size_t n = size < RFBR_FILE_SIZE ? size : RFBR_FILE_SIZE;
	int from = -1, got_from = -1, target = -1, ok, wrote, stopped;

	/* The loader reads at most RFBR_FILE_SIZE bytes; a shorter file is
	 * passed with its length, and reads as zeros once written to. */
	memset(file, 0, sizeof file);
	memcpy(file, data, n);

	round_trip(file, n);
	if (n > RFBR_COPY_SIZE)
		round_trip(file + RFBR_COPY_SIZE, n - RFBR_COPY_SIZE);

	ok = rfbr_pick(file, n, &cur, &from);
	stopped = ok && cur.active != RFBR_SLOT_NONE && cur.slots[cur.active - 1].state == RFBR_STATE_TRIAL &&
		  cur.slots[cur.active - 1].crumb == RFBR_CRUMB_STOPPED;
	wrote = rfbr_select(file, n, &d, &target, out);
	CHECK(wrote == d.write, "rfbr_select's result and d.write disagree");
	CHECK(!stopped || (wrote && d.why == RFBR_WHY_TRIAL), "after a clean stop the trial does not load, or is not written");
	if (!wrote) {
		CHECK(target == -1, "no write, but a target");
		return 0;
	}
	CHECK(ok, "a write without a valid copy");
	CHECK(target == 1 - from, "the write does not go over the copy the record was not read from");
	CHECK(d.next.seq == (uint64_t)(cur.seq + 1u), "the written sequence is not the current one + 1");

	memcpy(file + (size_t)target * RFBR_COPY_SIZE, out, RFBR_COPY_SIZE);
	CHECK(rfbr_pick(file, sizeof file, &got, &got_from), "the written copy does not decode");
	CHECK(got_from == target, "the written copy is not the one picked next");
	CHECK(record_equal(&got, &d.next), "the copy picked next is not the decided record");
	rfbr_encode(&got, again);
	CHECK(memcmp(again, out, sizeof out) == 0, "the copy picked next does not re-encode to the bytes written");
	if (d.action == RFBR_ACTION_LOAD)
		CHECK(got.active == d.slot, "the decision loads a slot the written record does not make active");
	if (d.why == RFBR_WHY_TRIAL)
		CHECK(got.slots[d.slot - 1].crumb == RFBR_CRUMB_LOADING, "a trial loads without the breadcrumb LOADING on disk");
	if (stopped)
		CHECK(got.slots[cur.active - 1].tries == cur.slots[cur.active - 1].tries, "after a clean stop the trial spends a try");
	return 0;
}
