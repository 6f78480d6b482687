/*
 * rfinterp: the Ringfence channel-file parser and content interpreter in
 * C, for a kernel agent (or any other C host) to embed.
 *
 * This is the same logic as the Go reference sensor: validator.Parse
 * (validator/parse.go, validator/format.go) for the parser, and
 * sensor.Program.Eval and sensor.Synthesize (sensor/sensor.go,
 * sensor/events.go) for the interpreter. It is held to the same results by
 * the differential fuzz target FuzzCInterpreterMatchesGo in sensor/cinterp,
 * which compiles this very file through cgo: the same error code for the
 * same file, and the same verdict (or the same out-of-range field, on the
 * same event) for the same events. The byte layout is in
 * docs/channel-file-format.md. After editing this file or rfinterp.c, run
 * `go test ./sensor/cinterp -update` once: cgo does not notice a change to
 * a file outside its package's directory, so the binding keeps a digest of
 * both (sensor/cinterp/csource.go) and its tests refuse to run stale C.
 *
 * It is freestanding, because a Linux kernel module compiles it unchanged
 * (kernel CFLAGS, -Werror): it includes only <stddef.h>, <stdint.h> and
 * <string.h>, and calls nothing but memcpy, memset and memcmp. It allocates
 * nothing (the caller allocates what the counting pass asks for), keeps no
 * global state, uses no floating point, no recursion and no variable-length
 * arrays, and no function has a large stack frame (the kernel stack is 16
 * KiB). It does no 64-bit division, so 32-bit kernels need no libgcc.
 *
 * Loading a channel file:
 *
 *   1. rfi_check_header(data, len, &end): the checks validator.Parse makes
 *      before it verifies the checksum.
 *   2. The caller verifies the trailer: SHA-256 over data[0, end) must equal
 *      the 32 bytes at data[end] (a kernel with its crypto API). If not, the
 *      file is refused, and RFI_E_CHECKSUM is its code. This file has no
 *      SHA-256 of its own; everything after step 1 treats the trailer as
 *      opaque bytes. Doing the steps in this order gives, for every file,
 *      the code validator.Parse gives.
 *   3. rfi_parse_count(data, len, &ninst, &nmatch): every other check
 *      validator.Parse makes, in its order, and the sizes to allocate.
 *   4. Allocate ninst struct rfi_instance and nmatch struct rfi_matcher
 *      (kvmalloc_array: nmatch can reach millions for a 32 MiB file, as the
 *      Go parser's matcher pool can), and call rfi_parse.
 *
 * Evaluating events: allocate rfi_frame_size(ninputs) bytes, where ninputs
 * is how many input fields this sensor build supplies for the template type
 * (20 for IPC in sensor 7.11, 21 in 7.12), rfi_prepare once, then rfi_eval
 * per event. A program is not safe for concurrent use (one frame per CPU).
 *
 * The 2024 defect switch. Go's interpreter reads each matcher's input as
 * in[m.Field] with no check against what the sensor supplies: content that
 * names a field past the array panics (Channel File 291). Built with
 * -DRFI_LEGACY_UNCHECKED, rfi_eval likewise skips the bounds check and reads
 * past its input-pointer array into the values after it, then dereferences
 * what it found: in a kernel, a page fault. Built without it (the default,
 * and what the fuzz target builds), rfi_eval returns RFI_E_FIELD where Go
 * panics. Nothing else differs between the two builds.
 */
#ifndef RFINTERP_H
#define RFINTERP_H

#include <stddef.h>
#include <stdint.h>

/* Limits, the same as validator/format.go. */
#define RFI_HEADER_SIZE 32
#define RFI_TRAILER_SIZE 32
#define RFI_FORMAT_VERSION 1
#define RFI_MAX_FILE_SIZE (32u << 20)
#define RFI_MAX_FIELDS 64
#define RFI_MAX_INSTANCES (1u << 20)
#define RFI_MAX_STRING_LEN 1024
#define RFI_MAX_PATTERN_LEN 256
#define RFI_MAX_INPUT_LEN 256 /* sensor.MaxInputLen: string inputs are cut to it */

/*
 * The most inputs a program can have. A matcher's field index is 16 bits,
 * so inputs past 65536 are never read; the limit keeps rfi_frame_size from
 * overflowing on 32-bit builds.
 */
#define RFI_MAX_INPUTS 65536u

/* Field types (validator.FieldType). */
#define RFI_FIELD_STRING 1
#define RFI_FIELD_UINT 2

/* Matcher kinds (validator.MatcherKind); the wire value. */
#define RFI_MATCH_ANY 0 /* wildcard: never stored in rfi_file.matchers */
#define RFI_MATCH_EQUAL_STRING 1
#define RFI_MATCH_EQUAL_UINT 2
#define RFI_MATCH_PREFIX 3
#define RFI_MATCH_RANGE 4
#define RFI_MATCH_PATTERN 5

/* Actions (validator.Action). */
#define RFI_ACTION_LOG 1
#define RFI_ACTION_ALERT 2
#define RFI_ACTION_BLOCK 3

/*
 * Result codes. One per validator.Code that validator.Parse can return (the
 * comment names it), then the interpreter's and the caller's own.
 */
#define RFI_OK 0
#define RFI_E_TRUNCATED (-1)          /* TRUNCATED */
#define RFI_E_TOO_LARGE (-2)          /* TOO_LARGE */
#define RFI_E_BAD_MAGIC (-3)          /* BAD_MAGIC */
#define RFI_E_UNSUPPORTED_FORMAT (-4) /* UNSUPPORTED_FORMAT */
#define RFI_E_CHECKSUM (-5)           /* CHECKSUM: returned by no function here, the caller's code for step 2 */
#define RFI_E_COUNT_LIMIT (-6)        /* COUNT_LIMIT */
#define RFI_E_LENGTH_LIMIT (-7)       /* LENGTH_LIMIT */
#define RFI_E_BAD_FIELD_TYPE (-8)     /* BAD_FIELD_TYPE */
#define RFI_E_BAD_MATCHER (-9)        /* BAD_MATCHER */
#define RFI_E_BAD_ACTION (-10)        /* BAD_ACTION */
#define RFI_E_TRAILING_DATA (-11)     /* TRAILING_DATA */
#define RFI_E_NON_CANONICAL (-12)     /* NON_CANONICAL */
#define RFI_E_FIELD (-13)             /* rfi_eval: a matcher reads a field past the inputs (Go panics) */
#define RFI_E_INVAL (-14)             /* the caller's arguments are wrong (sizes, indexes) */

/* One non-wildcard matcher. str points into the file's data. */
struct rfi_matcher {
	uint16_t field; /* 0-based input field index */
	uint8_t kind;   /* RFI_MATCH_* except RFI_MATCH_ANY */
	uint16_t len;   /* string operand length */
	const uint8_t *str;
	uint64_t lo, hi; /* equals-uint: lo; range: [lo, hi] */
};

/* One template instance: matchers[first, first + count) of its file, the
 * non-wildcard ones only, in strictly ascending field order. */
struct rfi_instance {
	uint32_t id;
	uint8_t action;
	uint32_t first, count;
};

struct rfi_file {
	uint32_t channel, content_version;
	uint16_t template_type, template_version;
	uint16_t nfields; /* declared field count, 1..RFI_MAX_FIELDS */
	uint8_t fields[RFI_MAX_FIELDS];
	uint32_t ninstances, nmatchers;
	struct rfi_instance *instances;
	struct rfi_matcher *matchers;
};

/*
 * rfi_check_header makes the checks validator.Parse makes before it
 * verifies the checksum: size, magic, format version, reserved fields, and
 * that the file is exactly header + body + trailer long. On RFI_OK, *end is
 * the offset of the SHA-256 trailer (32 + body length), which the caller
 * verifies before going on (see the top of this file).
 */
int rfi_check_header(const uint8_t *data, size_t len, size_t *end);

/*
 * rfi_parse_count is pass 1: it makes every check validator.Parse makes
 * EXCEPT the checksum (rfi_check_header's included, so it is safe on any
 * bytes; the trailer is opaque here), and counts the instances and the
 * non-wildcard matchers so the caller can allocate. It returns the code
 * validator.Parse returns for any file whose trailer is intact.
 */
int rfi_parse_count(const uint8_t *data, size_t len, uint32_t *ninstances, uint32_t *nmatchers);

/*
 * rfi_parse is pass 2: it fills f, with inst and m (arrays of the sizes
 * rfi_parse_count gave; other sizes are RFI_E_INVAL). Strings point into
 * data, which must outlive f. It makes the same checks again, so it returns
 * the same code as rfi_parse_count for the same data.
 */
int rfi_parse(const uint8_t *data, size_t len, struct rfi_file *f, struct rfi_instance *inst, uint32_t ninst,
	      struct rfi_matcher *m, uint32_t nmatch);

/*
 * One field of an event, or one input. num comes FIRST: see rfi_prepare on
 * what the unchecked build reads past the input-pointer array. str need not
 * be NUL-terminated; len may exceed RFI_MAX_INPUT_LEN (rfi_eval cuts it).
 */
struct rfi_value {
	uint64_t num;
	const uint8_t *str;
	uint32_t len;
};

struct rfi_event {
	uint16_t template_type;
	uint32_t nfields;
	const struct rfi_value *fields;
};

struct rfi_verdict {
	uint32_t matches; /* instances that matched */
	uint8_t action;   /* strongest action among them, 0 if none */
	uint32_t first;   /* id of the first that matched, 0 if none */
};

/*
 * A loaded program. in[i] points to vals[i]; both live in the caller's
 * frame (rfi_frame_size). cur is the index of the instance being (or last)
 * evaluated: after RFI_E_FIELD, the one that read past the inputs.
 */
struct rfi_program {
	const struct rfi_file *file;
	uint32_t ninputs;
	const struct rfi_value **in;
	struct rfi_value *vals;
	uint32_t cur;
};

/*
 * rfi_frame_size is the size of a program's frame for ninputs inputs: ONE
 * allocation holding ninputs pointers and then ninputs values. 0 if ninputs
 * is past RFI_MAX_INPUTS. The frame must be aligned for uint64_t (any
 * allocator's memory is).
 */
size_t rfi_frame_size(uint32_t ninputs);

/*
 * rfi_prepare lays out frame (rfi_frame_size(ninputs) bytes) as the input
 * array for f and sets every in[i] to &vals[i]. The layout is the point of
 * the defect switch: in[ninputs] is not a pointer but the first bytes after
 * the pointer array, that is (on 64-bit builds) vals[0].num.
 */
void rfi_prepare(struct rfi_program *p, const struct rfi_file *f, uint32_t ninputs, void *frame);

/*
 * rfi_eval runs every instance against ev, as sensor.Program.Eval does.
 * Events of another template type give the zero verdict. The first
 * min(ev->nfields, ninputs) fields are copied into the inputs, strings cut
 * to RFI_MAX_INPUT_LEN, the rest of the inputs zeroed. RFI_OK, or
 * RFI_E_FIELD when a matcher reached during evaluation reads a field
 * >= ninputs (v then holds the instances evaluated before it; p->cur names
 * the instance). The unchecked build never returns RFI_E_FIELD: it faults.
 */
int rfi_eval(struct rfi_program *p, const struct rfi_event *ev, struct rfi_verdict *v);

/* rfi_synth_scratch_size is the scratch rfi_synthesize needs for any
 * instance of f. */
size_t rfi_synth_scratch_size(const struct rfi_file *f);

/*
 * rfi_synthesize builds the event sensor.Synthesize builds for instance
 * (0-based) and variant (0 or 1): Go's k-th event is instance k / 2,
 * variant k % 2. fields has f->nfields entries; strings point into the
 * file's data and into scratch, so both must outlive ev. RFI_OK, or
 * RFI_E_INVAL (instance or variant out of range, scratch too small).
 */
int rfi_synthesize(const struct rfi_file *f, uint32_t instance, int variant, struct rfi_value *fields,
		   uint8_t *scratch, size_t scratch_len, struct rfi_event *ev);

/* The longest string rfi_rand_event makes, and how many fields it may add
 * past the file's declared count. */
#define RFI_RAND_MAX_STR (RFI_MAX_INPUT_LEN + 16)
#define RFI_RAND_EXTRA_FIELDS 2

/* rfi_rand_scratch_size is the scratch rfi_rand_event needs for f. */
size_t rfi_rand_scratch_size(const struct rfi_file *f);

/*
 * rfi_rand_event makes a pseudo-random event for f from *state (splitmix64;
 * any seed): values drawn from the file's own operands (exact, cut short,
 * extended by a byte, repeated, off by one) mixed with random bytes and edge
 * numbers; now and then another template type or a field count other than
 * the declared one. It is in the spirit of sensor.RandomEvents but it is
 * NOT Go's sequence (Go's comes from math/rand/v2's PCG, not reproduced
 * here). fields has f->nfields + RFI_RAND_EXTRA_FIELDS entries, scratch
 * rfi_rand_scratch_size(f) bytes (less only cuts strings shorter).
 */
void rfi_rand_event(const struct rfi_file *f, uint64_t *state, struct rfi_value *fields, uint8_t *scratch,
		    size_t scratch_len, struct rfi_event *ev);

#endif /* RFINTERP_H */
