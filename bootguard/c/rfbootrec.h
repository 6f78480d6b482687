/*
 * rfbootrec: the Ringfence boot record and loader contract, for a loader
 * (a kernel driver, a boot stage) to embed.
 *
 * This is the same logic as the Go package bootguard (Pick and Decide), held
 * to the same answers by the shared vectors in testdata/bootrecord. The byte
 * layout is in docs/boot-record.md.
 *
 * It allocates nothing, keeps no state, uses no floating point and no
 * recursion, and needs nothing from the C library beyond memcpy and memset.
 * It never does I/O: the caller reads and writes the record file.
 *
 * What a loader does before each load of content:
 *
 *   1. Read the first RFBR_FILE_SIZE (1024) bytes of the record file (fewer
 *      if the file is shorter; pass the length read).
 *   2. Call rfbr_select(file, len, &d, &target, out).
 *   3. If it returns 1: write the RFBR_COPY_SIZE bytes of out at byte offset
 *      target * RFBR_COPY_SIZE of the record file, in place, and flush them
 *      to stable storage (FlushFileBuffers, fsync, a cache flush). Only if
 *      the flush succeeded, go on; if it failed, load no content: loading a
 *      trial whose breadcrumb is not on disk would defeat the guard.
 *   4. If d.action is RFBR_ACTION_LOAD, load slot d.slot (1 = a, 2 = b); it
 *      must hold channel d.channel, version d.version, and its manifest's
 *      SHA-256 must equal d.digest. Otherwise load no content.
 *   5. Once the load finished and the agent survived its first events,
 *      record it: rfbr_mark_loaded on the record as it now is, and write and
 *      flush its copy the same way (a driver that loads content in kernel
 *      mode does this itself; an agent with a user-mode side may leave it
 *      to bootguard.MarkLoaded, the same step in Go).
 *   6. When the agent stops cleanly (it no longer runs the content), record
 *      that before it exits: rfbr_mark_stopped, written and flushed the same
 *      way (or bootguard.MarkStopped from a user-mode side), so that the
 *      next load of a trial spends no try. Never on a crash path.
 */
#ifndef RFBOOTREC_H
#define RFBOOTREC_H

#include <stddef.h>
#include <stdint.h>

#define RFBR_COPY_SIZE 512
#define RFBR_FILE_SIZE (2 * RFBR_COPY_SIZE)
#define RFBR_FORMAT_VERSION 1

/* Slots. */
#define RFBR_SLOT_NONE 0
#define RFBR_SLOT_A 1
#define RFBR_SLOT_B 2

/* Slot states. */
#define RFBR_STATE_EMPTY 0
#define RFBR_STATE_STAGED 1
#define RFBR_STATE_TRIAL 2
#define RFBR_STATE_GOOD 3
#define RFBR_STATE_BAD 4

/* Breadcrumbs. */
#define RFBR_CRUMB_NONE 0
#define RFBR_CRUMB_LOADING 1 /* written before a trial load */
#define RFBR_CRUMB_LOADED 2  /* the load finished, the agent survived its first events */
#define RFBR_CRUMB_STOPPED 3 /* after a finished load, the agent stopped cleanly */

/* Reasons a slot is BAD. */
#define RFBR_REASON_NONE 0
#define RFBR_REASON_LOAD_CRASH 1
#define RFBR_REASON_TRIES_EXHAUSTED 2
#define RFBR_REASON_MANUAL 3
#define RFBR_REASON_HEALTH_FAILED 4
#define RFBR_REASON_RECOVERED 5
#define RFBR_REASON_CORRUPT 6

/* Actions. */
#define RFBR_ACTION_LOAD 1
#define RFBR_ACTION_NONE 2 /* valid record, nothing loadable */
#define RFBR_ACTION_SAFE 3 /* no valid copy: safe mode, load nothing */

/* Why, as stable codes; rfbr_why_name gives the strings the Go side uses. */
#define RFBR_WHY_GOOD 1
#define RFBR_WHY_TRIAL 2
#define RFBR_WHY_LOAD_CRASH 3
#define RFBR_WHY_TRIES_EXHAUSTED 4
#define RFBR_WHY_NOT_LOADABLE 5
#define RFBR_WHY_NO_CONTENT 6
#define RFBR_WHY_NO_VALID_COPY 7

struct rfbr_entry {
	uint32_t channel;
	uint32_t version;
	uint8_t digest[32];
	uint8_t state;
	uint8_t tries;      /* boots the trial has left */
	uint8_t load_tries; /* crashes while loading the trial may still suffer */
	uint8_t crumb;
	uint8_t reason;
};

struct rfbr_record {
	uint64_t seq;
	uint8_t active;
	uint8_t fallback;
	struct rfbr_entry slots[2]; /* [0] is slot a, [1] slot b */
};

struct rfbr_decision {
	int action;
	int slot;                /* slot to load (RFBR_ACTION_LOAD) */
	struct rfbr_entry entry; /* its entry, after the decision */
	int why;
	int reverted;            /* slot this decision marked BAD, or RFBR_SLOT_NONE */
	int write;               /* 1: next must be written before loading */
	struct rfbr_record next;
};

/* rfbr_decode_copy parses one copy; 1 if it is a complete, intact copy of
 * this format version, 0 otherwise. */
int rfbr_decode_copy(const uint8_t *buf, size_t len, struct rfbr_record *out);

/* rfbr_encode writes r as 512 bytes, reserved bytes zero, CRC32C at 508. */
void rfbr_encode(const struct rfbr_record *r, uint8_t out[RFBR_COPY_SIZE]);

/* rfbr_seq_newer returns 1 if sequence number a is newer than b in
 * serial-number arithmetic over the whole uint64_t space (RFC 1982 style):
 * (a - b) mod 2^64 in [1, 2^63). Every sequence number is valid, and the
 * write after 2^64-1 is 0, which is newer. Equal numbers, or numbers exactly
 * 2^63 apart, are neither newer than the other: rfbr_pick takes copy 0. That
 * is safe because every write is relative to the copy picked (its sequence
 * + 1, into the other copy): a corrupted copy with any sequence number is
 * picked at most until the next write, never after it. bootguard.Newer is
 * the same function. */
int rfbr_seq_newer(uint64_t a, uint64_t b);

/* rfbr_pick chooses the valid copy that is newer (rfbr_seq_newer), copy 0
 * when neither is. Returns 1 and sets *out and *from (0 or 1), or 0 if
 * neither copy is valid. */
int rfbr_pick(const uint8_t *file, size_t len, struct rfbr_record *out, int *from);

/* rfbr_decide is the loader contract as a pure function of the current
 * record (ok = 0: no valid copy). */
void rfbr_decide(const struct rfbr_record *cur, int ok, struct rfbr_decision *d);

/* rfbr_select picks and decides. When the decision needs a write it encodes
 * the next record into out, sets *target to the copy to overwrite (the one
 * the current record did not come from) and returns 1; otherwise it returns
 * 0 and sets *target to -1. */
int rfbr_select(const uint8_t *file, size_t len, struct rfbr_decision *d, int *target,
		uint8_t out[RFBR_COPY_SIZE]);

/* rfbr_mark_loaded is step 5, bootguard.MarkLoaded: an active TRIAL whose
 * breadcrumb is not LOADED gets LOADED. It returns 1, encodes the next
 * record into out and sets *target to the copy to overwrite when a write is
 * needed; 0 when nothing is to be written (the active slot is GOOD, or the
 * load is already recorded); -1 when there is nothing to mark (no valid
 * copy, no active slot, or an active slot neither TRIAL nor GOOD), which
 * means the record changed under the loader: load nothing more. *target is
 * -1 unless it returns 1. */
int rfbr_mark_loaded(const uint8_t *file, size_t len, int *target, uint8_t out[RFBR_COPY_SIZE]);

/* rfbr_mark_stopped is step 6, bootguard.MarkStopped: an active TRIAL
 * whose breadcrumb is LOADED gets STOPPED. It returns 1, encodes the next
 * record into out and sets *target when a write is needed; 0 when there is
 * nothing to record (GOOD content, no active slot, a load that did not
 * finish, a stop already recorded); -1 when no copy is valid. *target is -1
 * unless it returns 1. */
int rfbr_mark_stopped(const uint8_t *file, size_t len, int *target, uint8_t out[RFBR_COPY_SIZE]);

/* Stable names: "load"/"none"/"safe", "a"/"b"/"-", and the why strings. */
const char *rfbr_action_name(int action);
const char *rfbr_slot_name(int slot);
const char *rfbr_why_name(int why);

#endif /* RFBOOTREC_H */
