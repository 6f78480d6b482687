/*
 * rfbootrec: see rfbootrec.h. The same logic as bootguard/record.go and
 * bootguard/decide.go; keep them in step (the vectors in testdata/bootrecord
 * fail when they are not).
 */
#include <string.h>

#include "rfbootrec.h"

/* Byte offsets within a copy (docs/boot-record.md). */
#define OFF_MAGIC 0
#define OFF_VERSION 4
#define OFF_SIZE 6
#define OFF_SEQ 8
#define OFF_ACTIVE 16
#define OFF_FALLBACK 17
#define OFF_SLOTS 32
#define ENTRY_SIZE 64
#define OFF_CRC (RFBR_COPY_SIZE - 4)

/* Byte offsets within a slot entry. */
#define ENT_CHANNEL 0
#define ENT_VERSION 4
#define ENT_DIGEST 8
#define ENT_STATE 40
#define ENT_TRIES 41
#define ENT_LOAD_TRIES 42
#define ENT_CRUMB 43
#define ENT_REASON 44

static const uint8_t magic[4] = {'R', 'F', 'B', 'R'};

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32); }

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* CRC32C (Castagnoli), reflected polynomial 0x82F63B78, bit by bit: 512
 * bytes at boot do not need a table. */
static uint32_t crc32c(const uint8_t *p, size_t n)
{
	uint32_t crc = 0xFFFFFFFFu;
	size_t i;
	int k;
	for (i = 0; i < n; i++) {
		crc ^= p[i];
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
	}
	return crc ^ 0xFFFFFFFFu;
}

int rfbr_decode_copy(const uint8_t *b, size_t len, struct rfbr_record *out)
{
	struct rfbr_record r;
	int i;
	if (b == NULL || len < RFBR_COPY_SIZE)
		return 0;
	if (b[OFF_MAGIC] != magic[0] || b[OFF_MAGIC + 1] != magic[1] || b[OFF_MAGIC + 2] != magic[2] ||
	    b[OFF_MAGIC + 3] != magic[3] || get16(b + OFF_VERSION) != RFBR_FORMAT_VERSION ||
	    get16(b + OFF_SIZE) != RFBR_COPY_SIZE || get32(b + OFF_CRC) != crc32c(b, OFF_CRC))
		return 0;
	memset(&r, 0, sizeof r);
	r.seq = get64(b + OFF_SEQ);
	r.active = b[OFF_ACTIVE];
	r.fallback = b[OFF_FALLBACK];
	if (r.active > RFBR_SLOT_B || r.fallback > RFBR_SLOT_B)
		return 0;
	for (i = 0; i < 2; i++) {
		const uint8_t *p = b + OFF_SLOTS + i * ENTRY_SIZE;
		struct rfbr_entry *e = &r.slots[i];
		e->channel = get32(p + ENT_CHANNEL);
		e->version = get32(p + ENT_VERSION);
		memcpy(e->digest, p + ENT_DIGEST, 32);
		e->state = p[ENT_STATE];
		e->tries = p[ENT_TRIES];
		e->load_tries = p[ENT_LOAD_TRIES];
		e->crumb = p[ENT_CRUMB];
		e->reason = p[ENT_REASON];
		if (e->state > RFBR_STATE_BAD || e->crumb > RFBR_CRUMB_STOPPED || e->reason > RFBR_REASON_CORRUPT)
			return 0;
	}
	*out = r;
	return 1;
}

void rfbr_encode(const struct rfbr_record *r, uint8_t out[RFBR_COPY_SIZE])
{
	int i;
	memset(out, 0, RFBR_COPY_SIZE);
	memcpy(out + OFF_MAGIC, magic, 4);
	put16(out + OFF_VERSION, RFBR_FORMAT_VERSION);
	put16(out + OFF_SIZE, RFBR_COPY_SIZE);
	put64(out + OFF_SEQ, r->seq);
	out[OFF_ACTIVE] = r->active;
	out[OFF_FALLBACK] = r->fallback;
	for (i = 0; i < 2; i++) {
		uint8_t *p = out + OFF_SLOTS + i * ENTRY_SIZE;
		const struct rfbr_entry *e = &r->slots[i];
		put32(p + ENT_CHANNEL, e->channel);
		put32(p + ENT_VERSION, e->version);
		memcpy(p + ENT_DIGEST, e->digest, 32);
		p[ENT_STATE] = e->state;
		p[ENT_TRIES] = e->tries;
		p[ENT_LOAD_TRIES] = e->load_tries;
		p[ENT_CRUMB] = e->crumb;
		p[ENT_REASON] = e->reason;
	}
	put32(out + OFF_CRC, crc32c(out, OFF_CRC));
}

int rfbr_seq_newer(uint64_t a, uint64_t b)
{
	uint64_t d = a - b; /* unsigned: wraps modulo 2^64 */
	return d != 0 && d < 0x8000000000000000ull;
}

int rfbr_pick(const uint8_t *file, size_t len, struct rfbr_record *out, int *from)
{
	struct rfbr_record r0, r1;
	int ok0 = rfbr_decode_copy(file, len, &r0);
	int ok1 = len > RFBR_COPY_SIZE && rfbr_decode_copy(file + RFBR_COPY_SIZE, len - RFBR_COPY_SIZE, &r1);
	if ((ok0 && ok1 && rfbr_seq_newer(r1.seq, r0.seq)) || (!ok0 && ok1)) {
		*out = r1;
		*from = 1;
		return 1;
	}
	if (ok0) {
		*out = r0;
		*from = 0;
		return 1;
	}
	*from = 0;
	return 0;
}

/* fall_back makes the fallback active if it is GOOD; reverted is the slot
 * just marked BAD in d->next (RFBR_SLOT_NONE if none). */
static void fall_back(struct rfbr_decision *d, int reverted, int why)
{
	struct rfbr_record *next = &d->next;
	int fb = next->fallback;
	d->why = why;
	d->reverted = reverted;
	if (fb != RFBR_SLOT_NONE && fb != next->active && next->slots[fb - 1].state == RFBR_STATE_GOOD) {
		next->active = (uint8_t)fb;
		next->fallback = RFBR_SLOT_NONE;
		d->action = RFBR_ACTION_LOAD;
		d->slot = fb;
		d->entry = next->slots[fb - 1];
		d->write = 1;
		return;
	}
	d->action = RFBR_ACTION_NONE;
	if (reverted == RFBR_SLOT_NONE)
		return; /* nothing changed: no write on every boot */
	next->active = RFBR_SLOT_NONE;
	next->fallback = RFBR_SLOT_NONE;
	d->write = 1;
}

void rfbr_decide(const struct rfbr_record *cur, int ok, struct rfbr_decision *d)
{
	struct rfbr_entry *e;
	int a, fail;
	memset(d, 0, sizeof *d);
	if (!ok) {
		d->action = RFBR_ACTION_SAFE;
		d->why = RFBR_WHY_NO_VALID_COPY;
		return;
	}
	d->next = *cur;
	d->next.seq = cur->seq + 1; /* 2^64-1 wraps to 0, which is newer */
	a = cur->active;
	if (a == RFBR_SLOT_NONE) {
		d->action = RFBR_ACTION_NONE;
		d->why = RFBR_WHY_NO_CONTENT;
		return;
	}
	e = &d->next.slots[a - 1];
	if (e->state == RFBR_STATE_GOOD) {
		d->action = RFBR_ACTION_LOAD;
		d->slot = a;
		d->entry = *e;
		d->why = RFBR_WHY_GOOD;
		return;
	}
	if (e->state == RFBR_STATE_TRIAL) {
		/* After a clean stop (STOPPED) nothing is spent, tries 0
		 * included; the next crash of any kind reverts it. */
		if (e->crumb != RFBR_CRUMB_STOPPED) {
			fail = RFBR_REASON_NONE;
			if (e->crumb == RFBR_CRUMB_LOADING) {
				if (e->load_tries > 0)
					e->load_tries--;
				if (e->load_tries == 0)
					fail = RFBR_REASON_LOAD_CRASH;
			}
			if (fail == RFBR_REASON_NONE && e->tries == 0)
				fail = RFBR_REASON_TRIES_EXHAUSTED;
			if (fail != RFBR_REASON_NONE) {
				e->state = RFBR_STATE_BAD;
				e->reason = (uint8_t)fail;
				e->crumb = RFBR_CRUMB_NONE;
				fall_back(d, a, fail == RFBR_REASON_TRIES_EXHAUSTED ? RFBR_WHY_TRIES_EXHAUSTED : RFBR_WHY_LOAD_CRASH);
				return;
			}
			e->tries--;
		}
		e->crumb = RFBR_CRUMB_LOADING;
		d->action = RFBR_ACTION_LOAD;
		d->slot = a;
		d->entry = *e;
		d->why = RFBR_WHY_TRIAL;
		d->write = 1;
		return;
	}
	fall_back(d, RFBR_SLOT_NONE, RFBR_WHY_NOT_LOADABLE);
}

int rfbr_select(const uint8_t *file, size_t len, struct rfbr_decision *d, int *target,
		uint8_t out[RFBR_COPY_SIZE])
{
	struct rfbr_record cur;
	int from = 0;
	int ok = rfbr_pick(file, len, &cur, &from);
	rfbr_decide(&cur, ok, d);
	*target = -1;
	if (!d->write)
		return 0;
	rfbr_encode(&d->next, out);
	*target = 1 - from;
	return 1;
}

int rfbr_mark_loaded(const uint8_t *file, size_t len, int *target, uint8_t out[RFBR_COPY_SIZE])
{
	struct rfbr_record r;
	struct rfbr_entry *e;
	int from = 0;
	*target = -1;
	if (!rfbr_pick(file, len, &r, &from) || r.active == RFBR_SLOT_NONE)
		return -1;
	e = &r.slots[r.active - 1];
	if (e->state == RFBR_STATE_GOOD || (e->state == RFBR_STATE_TRIAL && e->crumb == RFBR_CRUMB_LOADED))
		return 0;
	if (e->state != RFBR_STATE_TRIAL)
		return -1;
	e->crumb = RFBR_CRUMB_LOADED;
	r.seq++; /* 2^64-1 wraps to 0, which is newer */
	rfbr_encode(&r, out);
	*target = 1 - from;
	return 1;
}

int rfbr_mark_stopped(const uint8_t *file, size_t len, int *target, uint8_t out[RFBR_COPY_SIZE])
{
	struct rfbr_record r;
	struct rfbr_entry *e;
	int from = 0;
	*target = -1;
	if (!rfbr_pick(file, len, &r, &from))
		return -1;
	if (r.active == RFBR_SLOT_NONE)
		return 0;
	e = &r.slots[r.active - 1];
	if (e->state != RFBR_STATE_TRIAL || e->crumb != RFBR_CRUMB_LOADED)
		return 0;
	e->crumb = RFBR_CRUMB_STOPPED;
	r.seq++; /* 2^64-1 wraps to 0, which is newer */
	rfbr_encode(&r, out);
	*target = 1 - from;
	return 1;
}

const char *rfbr_action_name(int action)
{
	switch (action) {
	case RFBR_ACTION_LOAD:
		return "load";
	case RFBR_ACTION_NONE:
		return "none";
	case RFBR_ACTION_SAFE:
		return "safe";
	}
	return "?";
}

const char *rfbr_slot_name(int slot)
{
	switch (slot) {
	case RFBR_SLOT_A:
		return "a";
	case RFBR_SLOT_B:
		return "b";
	}
	return "-";
}

const char *rfbr_why_name(int why)
{
	switch (why) {
	case RFBR_WHY_GOOD:
		return "good";
	case RFBR_WHY_TRIAL:
		return "trial";
	case RFBR_WHY_LOAD_CRASH:
		return "load-crash";
	case RFBR_WHY_TRIES_EXHAUSTED:
		return "tries-exhausted";
	case RFBR_WHY_NOT_LOADABLE:
		return "not-loadable";
	case RFBR_WHY_NO_CONTENT:
		return "no-content";
	case RFBR_WHY_NO_VALID_COPY:
		return "no-valid-copy";
	}
	return "?";
}
