/*
 * rfinterp: see rfinterp.h. The same logic as validator/parse.go,
 * sensor/sensor.go and sensor/events.go; keep them in step (the fuzz target
 * FuzzCInterpreterMatchesGo in sensor/cinterp fails when they are not).
 */
#include <string.h>

#include "rfinterp.h"

/* Byte offsets within the header (docs/channel-file-format.md). */
#define OFF_MAGIC 0
#define OFF_VERSION 4
#define OFF_FLAGS 6
#define OFF_CHANNEL 8
#define OFF_CONTENT_VERSION 12
#define OFF_TEMPLATE_TYPE 16
#define OFF_TEMPLATE_VERSION 18
#define OFF_NFIELDS 20
#define OFF_RESERVED 22
#define OFF_NINSTANCES 24
#define OFF_BODY_LEN 28

/* An instance's fixed part on the wire: id (4) and action (1), then one
 * kind byte per declared field. */
#define INSTANCE_FIXED_SIZE 5

static const uint8_t magic[4] = {'R', 'F', 'C', 'H'};

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32); }

/* bytes_eq is memcmp that may be handed a NULL pointer with n == 0 (an
 * empty operand or input), which memcmp itself may not. */
static int bytes_eq(const uint8_t *a, const uint8_t *b, size_t n) { return n == 0 || memcmp(a, b, n) == 0; }

int rfi_check_header(const uint8_t *data, size_t len, size_t *end)
{
	uint64_t want;
	size_t i;
	if (data == NULL && len != 0)
		return RFI_E_INVAL;
	if (len > RFI_MAX_FILE_SIZE)
		return RFI_E_TOO_LARGE;
	if (len < 4 || !bytes_eq(data + OFF_MAGIC, magic, 4)) {
		/* Go: shorter than the magic and a prefix of it (the empty
		 * file included) is TRUNCATED, anything else BAD_MAGIC. */
		if (len >= 4)
			return RFI_E_BAD_MAGIC;
		for (i = 0; i < len; i++)
			if (data[i] != magic[i])
				return RFI_E_BAD_MAGIC;
		return RFI_E_TRUNCATED;
	}
	if (len < RFI_HEADER_SIZE + RFI_TRAILER_SIZE)
		return RFI_E_TRUNCATED;
	if (get16(data + OFF_VERSION) != RFI_FORMAT_VERSION)
		return RFI_E_UNSUPPORTED_FORMAT;
	if (get16(data + OFF_FLAGS) != 0 || get16(data + OFF_RESERVED) != 0)
		return RFI_E_NON_CANONICAL;
	/* 64-bit sum: a body length near 2^32 must not wrap. */
	want = (uint64_t)RFI_HEADER_SIZE + get32(data + OFF_BODY_LEN) + RFI_TRAILER_SIZE;
	if ((uint64_t)len < want)
		return RFI_E_TRUNCATED;
	if ((uint64_t)len > want)
		return RFI_E_TRAILING_DATA;
	*end = len - RFI_TRAILER_SIZE;
	return RFI_OK;
}

/*
 * walker is the state of one pass over the body. Pass 1 only counts;
 * pass 2 (fill) also stores. Both passes run the same
 * code, so they cannot disagree about what a file holds.
 */
struct walker {
	const uint8_t *body;
	size_t len; /* body length */
	size_t off; /* next byte to read; off <= len always */
	uint32_t nfields;
	uint32_t nmatch; /* non-wildcard matchers so far */
	int fill;        /* pass 2: store matchers in m[0, mcap) */
	struct rfi_matcher *m;
	uint32_t mcap;
};

/* have reports whether n more bytes remain; it never forms an address past
 * the body to find out. */
static int have(const struct walker *w, size_t n) { return w->len - w->off >= n; }

/* matcher reads the matcher of field fi at w->off: its kind byte and
 * operand, with each length checked before the bytes it covers are read. */
static int matcher(struct walker *w, uint32_t fi)
{
	struct rfi_matcher m;
	size_t limit;
	if (!have(w, 1))
		return RFI_E_TRUNCATED;
	memset(&m, 0, sizeof m);
	m.kind = w->body[w->off];
	if (m.kind > RFI_MATCH_PATTERN)
		return RFI_E_BAD_MATCHER;
	w->off++;
	if (m.kind == RFI_MATCH_ANY)
		return RFI_OK; /* a wildcard reads nothing and is not kept */
	m.field = (uint16_t)fi;
	switch (m.kind) {
	case RFI_MATCH_EQUAL_UINT:
		if (!have(w, 8))
			return RFI_E_TRUNCATED;
		m.lo = get64(w->body + w->off);
		w->off += 8;
		break;
	case RFI_MATCH_RANGE:
		if (!have(w, 16))
			return RFI_E_TRUNCATED;
		m.lo = get64(w->body + w->off);
		m.hi = get64(w->body + w->off + 8);
		w->off += 16;
		break;
	default: /* string operands */
		limit = m.kind == RFI_MATCH_PATTERN ? RFI_MAX_PATTERN_LEN : RFI_MAX_STRING_LEN;
		if (!have(w, 2))
			return RFI_E_TRUNCATED;
		m.len = get16(w->body + w->off);
		w->off += 2;
		/* The limit before the bytes, as Go checks them: an over-long
		 * operand is LENGTH_LIMIT even where the body ends early. */
		if (m.len > limit)
			return RFI_E_LENGTH_LIMIT;
		if (!have(w, m.len))
			return RFI_E_TRUNCATED;
		m.str = w->body + w->off;
		w->off += m.len;
		break;
	}
	if (w->fill) {
		if (w->nmatch >= w->mcap)
			return RFI_E_INVAL; /* the caller's array is not what pass 1 counted */
		w->m[w->nmatch] = m;
	}
	/* Cannot wrap: every stored matcher takes at least 3 bytes of a body
	 * under 32 MiB. */
	w->nmatch++;
	return RFI_OK;
}

/*
 * walk makes every check validator.Parse makes except the checksum, in
 * Parse's order, so that the first problem found is the one Parse reports.
 * With f == NULL it only counts.
 */
static int walk(const uint8_t *data, size_t len, struct rfi_file *f, struct rfi_instance *inst, uint32_t ninst_cap,
		struct rfi_matcher *m, uint32_t nmatch_cap, uint32_t *ninst_out, uint32_t *nmatch_out)
{
	struct walker w;
	size_t end;
	uint64_t need;
	uint32_t ninst, i, fi, first;
	uint8_t action;
	int rc;

	rc = rfi_check_header(data, len, &end);
	if (rc != RFI_OK)
		return rc;
	memset(&w, 0, sizeof w);
	w.body = data + RFI_HEADER_SIZE;
	w.len = end - RFI_HEADER_SIZE;
	w.nfields = get16(data + OFF_NFIELDS);
	w.fill = f != NULL;
	w.m = m;
	w.mcap = nmatch_cap;
	ninst = get32(data + OFF_NINSTANCES);
	if (w.nfields == 0 || w.nfields > RFI_MAX_FIELDS)
		return RFI_E_COUNT_LIMIT;
	if (ninst > RFI_MAX_INSTANCES)
		return RFI_E_COUNT_LIMIT;
	/* The smallest body the counts allow, before anything is sized by
	 * them; 64-bit, so it cannot wrap (at most 2^20 * 69 + 64). */
	need = (uint64_t)w.nfields + (uint64_t)ninst * (INSTANCE_FIXED_SIZE + w.nfields);
	if (need > w.len)
		return RFI_E_TRUNCATED;
	if (f != NULL && ninst != ninst_cap)
		return RFI_E_INVAL;
	for (fi = 0; fi < w.nfields; fi++)
		if (w.body[fi] != RFI_FIELD_STRING && w.body[fi] != RFI_FIELD_UINT)
			return RFI_E_BAD_FIELD_TYPE;
	w.off = w.nfields;
	for (i = 0; i < ninst; i++) {
		if (!have(&w, INSTANCE_FIXED_SIZE))
			return RFI_E_TRUNCATED;
		action = w.body[w.off + 4];
		if (action == 0 || action > RFI_ACTION_BLOCK)
			return RFI_E_BAD_ACTION;
		if (inst != NULL) {
			inst[i].id = get32(w.body + w.off);
			inst[i].action = action;
		}
		w.off += INSTANCE_FIXED_SIZE;
		first = w.nmatch;
		for (fi = 0; fi < w.nfields; fi++) {
			rc = matcher(&w, fi);
			if (rc != RFI_OK)
				return rc;
		}
		if (inst != NULL) {
			inst[i].first = first;
			inst[i].count = w.nmatch - first;
		}
	}
	if (w.off != w.len)
		return RFI_E_TRAILING_DATA;
	if (f != NULL) {
		if (w.nmatch != nmatch_cap)
			return RFI_E_INVAL;
		memset(f, 0, sizeof *f);
		f->channel = get32(data + OFF_CHANNEL);
		f->content_version = get32(data + OFF_CONTENT_VERSION);
		f->template_type = get16(data + OFF_TEMPLATE_TYPE);
		f->template_version = get16(data + OFF_TEMPLATE_VERSION);
		f->nfields = (uint16_t)w.nfields;
		memcpy(f->fields, w.body, w.nfields);
		f->ninstances = ninst;
		f->nmatchers = w.nmatch;
		f->instances = inst;
		f->matchers = m;
	}
	if (ninst_out != NULL)
		*ninst_out = ninst;
	if (nmatch_out != NULL)
		*nmatch_out = w.nmatch;
	return RFI_OK;
}

int rfi_parse_count(const uint8_t *data, size_t len, uint32_t *ninstances, uint32_t *nmatchers)
{
	return walk(data, len, NULL, NULL, 0, NULL, 0, ninstances, nmatchers);
}

int rfi_parse(const uint8_t *data, size_t len, struct rfi_file *f, struct rfi_instance *inst, uint32_t ninst,
	      struct rfi_matcher *m, uint32_t nmatch)
{
	if (f == NULL || (inst == NULL && ninst != 0) || (m == NULL && nmatch != 0))
		return RFI_E_INVAL;
	return walk(data, len, f, inst, ninst, m, nmatch, NULL, NULL);
}

/*
 * The frame: ninputs pointers, then ninputs values, in one allocation. The
 * pointer area is rounded up to 8 bytes so the values are aligned on 32-bit
 * builds too; on 64-bit builds it needs no rounding, and the first byte past
 * in[ninputs - 1] is vals[0].num. That adjacency is deliberate: it is what
 * the unchecked build (RFI_LEGACY_UNCHECKED) reads as in[ninputs], the
 * pointer it then follows.
 */
static size_t ptr_area(uint32_t ninputs) { return ((size_t)ninputs * sizeof(void *) + 7u) & ~(size_t)7u; }

size_t rfi_frame_size(uint32_t ninputs)
{
	if (ninputs > RFI_MAX_INPUTS)
		return 0;
	return ptr_area(ninputs) + (size_t)ninputs * sizeof(struct rfi_value);
}

void rfi_prepare(struct rfi_program *p, const struct rfi_file *f, uint32_t ninputs, void *frame)
{
	uint32_t i;
	memset(p, 0, sizeof *p);
	p->file = f;
	p->ninputs = ninputs;
	p->in = (const struct rfi_value **)frame;
	p->vals = (struct rfi_value *)(void *)((uint8_t *)frame + ptr_area(ninputs));
	for (i = 0; i < ninputs; i++) {
		p->in[i] = &p->vals[i];
		memset(&p->vals[i], 0, sizeof p->vals[i]);
	}
}

/*
 * glob matches s against pattern p of literal bytes, '?' (any one byte) and
 * '*' (any run of bytes), without recursion: the classic algorithm that
 * keeps only the last '*' seen and, on a mismatch, retries it one byte
 * further along s. With only these two wildcards, a later '*' can absorb
 * whatever an earlier one would have had to, so backtracking to the last
 * star alone loses no match: it accepts exactly what Go's backtracking glob
 * (sensor/sensor.go) accepts, in O(len(p) * len(s)) steps instead of
 * len(s)^stars, and with constant stack.
 */
static int glob(const uint8_t *p, size_t plen, const uint8_t *s, size_t slen)
{
	size_t pi = 0, si = 0, star = 0, mark = 0;
	int starred = 0;
	while (si < slen) {
		if (pi < plen && p[pi] == '*') {
			starred = 1;
			star = pi++;
			mark = si;
		} else if (pi < plen && (p[pi] == '?' || p[pi] == s[si])) {
			pi++;
			si++;
		} else if (starred) {
			/* The last '*' takes one more byte; retry after it. */
			pi = star + 1;
			si = ++mark;
		} else {
			return 0;
		}
	}
	while (pi < plen && p[pi] == '*')
		pi++;
	return pi == plen;
}

/*
 * match_all returns 1 if every matcher in m[0, n) accepts its input, 0 at
 * the first that does not (later ones are not read, as in Go), or
 * RFI_E_FIELD.
 */
static int match_all(const struct rfi_program *p, const struct rfi_matcher *m, uint32_t n)
{
	const struct rfi_value *x;
	uint32_t i;
	for (i = 0; i < n; i++, m++) {
#ifndef RFI_LEGACY_UNCHECKED
		if (m->field >= p->ninputs)
			return RFI_E_FIELD; /* where Go panics: index out of range */
#endif
		x = p->in[m->field]; /* the 2024 read: unchecked in the legacy build */
		switch (m->kind) {
		case RFI_MATCH_EQUAL_STRING:
			if (x->len != m->len || !bytes_eq(x->str, m->str, m->len))
				return 0;
			break;
		case RFI_MATCH_EQUAL_UINT:
			if (x->num != m->lo)
				return 0;
			break;
		case RFI_MATCH_PREFIX:
			if (x->len < m->len || !bytes_eq(x->str, m->str, m->len))
				return 0;
			break;
		case RFI_MATCH_RANGE:
			if (x->num < m->lo || x->num > m->hi)
				return 0;
			break;
		case RFI_MATCH_PATTERN:
			if (!glob(m->str, m->len, x->str, x->len))
				return 0;
			break;
		}
	}
	return 1;
}

int rfi_eval(struct rfi_program *p, const struct rfi_event *ev, struct rfi_verdict *v)
{
	const struct rfi_file *f = p->file;
	const struct rfi_instance *in;
	uint32_t i;
	int rc;
	memset(v, 0, sizeof *v);
	if (ev->template_type != f->template_type)
		return RFI_OK;
	for (i = 0; i < p->ninputs; i++) {
		if (i < ev->nfields) {
			p->vals[i] = ev->fields[i];
			if (p->vals[i].len > RFI_MAX_INPUT_LEN)
				p->vals[i].len = RFI_MAX_INPUT_LEN;
		} else {
			memset(&p->vals[i], 0, sizeof p->vals[i]);
		}
	}
	for (i = 0; i < f->ninstances; i++) {
		p->cur = i;
		in = &f->instances[i];
		rc = match_all(p, f->matchers + in->first, in->count);
		if (rc < 0)
			return rc;
		if (rc == 0)
			continue;
		if (v->matches == 0)
			v->first = in->id;
		v->matches++;
		if (in->action > v->action)
			v->action = in->action;
	}
	return RFI_OK;
}

/* Synthesize's long value: every field of variant 1 starts as this many
 * 'W's (sensor.MaxInputLen + 8), past the input buffer. */
#define SYNTH_WIDE (RFI_MAX_INPUT_LEN + 8)

/* The suffix variant 1 gives prefix operands: a backslash, then "tail". */
static const uint8_t tail[5] = {'\\', 't', 'a', 'i', 'l'};

/* synth_need is the scratch instance i's variant 1 writes past the 'W's:
 * the widest either variant needs. */
static uint64_t synth_need(const struct rfi_file *f, uint32_t i)
{
	const struct rfi_instance *in = &f->instances[i];
	const struct rfi_matcher *m = f->matchers + in->first;
	uint64_t n = 0;
	uint32_t j;
	for (j = 0; j < in->count; j++, m++) {
		if (m->kind == RFI_MATCH_PREFIX)
			n += (uint64_t)m->len + sizeof tail;
		else if (m->kind == RFI_MATCH_PATTERN)
			n += 2 * (uint64_t)m->len; /* each '*' becomes "xy" */
	}
	return n;
}

size_t rfi_synth_scratch_size(const struct rfi_file *f)
{
	uint64_t best = 0, n;
	uint32_t i;
	for (i = 0; i < f->ninstances; i++) {
		n = synth_need(f, i);
		if (n > best)
			best = n;
	}
	/* At most 264 + 64 * 1029 bytes: no overflow even in a 32-bit size_t. */
	return (size_t)(SYNTH_WIDE + best);
}

/* satisfy is sensor's satisfy: a value m accepts, variant 0 the smallest,
 * variant 1 one at the other edge. It writes built strings at *out. */
static void satisfy(const struct rfi_matcher *m, int variant, uint8_t **out, struct rfi_value *v)
{
	uint8_t *o = *out;
	uint16_t i;
	memset(v, 0, sizeof *v);
	switch (m->kind) {
	case RFI_MATCH_EQUAL_STRING:
		v->str = m->str;
		v->len = m->len;
		break;
	case RFI_MATCH_EQUAL_UINT:
		v->num = m->lo;
		break;
	case RFI_MATCH_PREFIX:
		v->str = m->str;
		v->len = m->len;
		if (variant == 1) {
			if (m->len != 0)
				memcpy(o, m->str, m->len);
			memcpy(o + m->len, tail, sizeof tail);
			v->str = o;
			v->len = m->len + (uint32_t)sizeof tail;
			o += v->len;
		}
		break;
	case RFI_MATCH_RANGE:
		v->num = variant == 1 ? m->hi : m->lo;
		break;
	case RFI_MATCH_PATTERN:
		v->str = o;
		for (i = 0; i < m->len; i++) {
			if (m->str[i] == '*') {
				if (variant == 1) {
					*o++ = 'x';
					*o++ = 'y';
				}
			} else if (m->str[i] == '?') {
				*o++ = 'a';
			} else {
				*o++ = m->str[i];
			}
		}
		v->len = (uint32_t)(o - v->str);
		break;
	}
	*out = o;
}

int rfi_synthesize(const struct rfi_file *f, uint32_t instance, int variant, struct rfi_value *fields,
		   uint8_t *scratch, size_t scratch_len, struct rfi_event *ev)
{
	const struct rfi_instance *in;
	const struct rfi_matcher *m;
	uint8_t *out;
	uint32_t j;
	if (instance >= f->ninstances || (variant != 0 && variant != 1))
		return RFI_E_INVAL;
	if (scratch_len < SYNTH_WIDE || synth_need(f, instance) > scratch_len - SYNTH_WIDE)
		return RFI_E_INVAL;
	in = &f->instances[instance];
	memset(fields, 0, (size_t)f->nfields * sizeof *fields);
	if (variant == 1) {
		memset(scratch, 'W', SYNTH_WIDE);
		for (j = 0; j < f->nfields; j++) {
			fields[j].str = scratch;
			fields[j].len = SYNTH_WIDE;
			fields[j].num = UINT64_MAX;
		}
	}
	out = scratch + SYNTH_WIDE;
	m = f->matchers + in->first;
	for (j = 0; j < in->count; j++, m++)
		if (m->field < f->nfields) /* always, for a file rfi_parse filled */
			satisfy(m, variant, &out, &fields[m->field]);
	ev->template_type = f->template_type;
	ev->nfields = f->nfields;
	ev->fields = fields;
	return RFI_OK;
}

/* splitmix64 (Steele, Lea and Flood): a full-period 64-bit generator in one
 * word of state, good enough to drive tests and cheap in a kernel. */
static uint64_t next64(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* below returns a number in [0, n) for n >= 1 by multiply and shift
 * (Lemire), not by '%': 64-bit division needs libgcc on 32-bit kernels. */
static uint32_t below(uint64_t *s, uint32_t n) { return (uint32_t)(((next64(s) >> 32) * (uint64_t)n) >> 32); }

/* The bytes random strings are made of, sensor.RandomEvents' alphabet. */
static const uint8_t alphabet[13] = {'a', 'b', '*', '?', '\\', '.', ':', 'p', 'i', 'p', 'e', 0x00, 0xff};

/* Scratch for random strings: a bump allocator that cuts a string short
 * rather than run past the end. */
struct bump {
	uint8_t *p;
	size_t left;
};

/* pick_operand returns a random matcher of f whose operand is a string
 * (want_str) or a number, or NULL after a few misses: a file may have none,
 * and scanning a million matchers per field would be too slow. */
static const struct rfi_matcher *pick_operand(const struct rfi_file *f, uint64_t *s, int want_str)
{
	const struct rfi_matcher *m;
	int tries;
	if (f->nmatchers == 0)
		return NULL;
	for (tries = 0; tries < 8; tries++) {
		m = &f->matchers[below(s, f->nmatchers)];
		if ((m->kind == RFI_MATCH_EQUAL_STRING || m->kind == RFI_MATCH_PREFIX ||
		     m->kind == RFI_MATCH_PATTERN) == (want_str != 0))
			return m;
	}
	return NULL;
}

static void rand_str(const struct rfi_file *f, uint64_t *s, struct bump *b, struct rfi_value *v)
{
	const struct rfi_matcher *m = NULL;
	uint32_t n, i, reps;
	if (below(s, 3) > 0)
		m = pick_operand(f, s, 1);
	if (m != NULL) {
		switch (below(s, 4)) {
		case 0: /* exact */
			v->str = m->str;
			v->len = m->len;
			return;
		case 1: /* cut short */
			v->str = m->str;
			v->len = below(s, (uint32_t)m->len + 1);
			return;
		case 2: /* extended by a byte */
			n = (uint32_t)m->len + 1;
			reps = 1;
			break;
		default: /* repeated */
			reps = 1 + below(s, 8);
			n = (uint32_t)m->len * reps;
			break;
		}
		if (n > RFI_RAND_MAX_STR)
			n = RFI_RAND_MAX_STR;
		if (n > b->left)
			n = (uint32_t)b->left;
		for (i = 0; i < n; i++)
			b->p[i] = i < (uint32_t)m->len * reps ? m->str[i % m->len] : alphabet[below(s, sizeof alphabet)];
	} else {
		n = below(s, RFI_RAND_MAX_STR);
		if (n > b->left)
			n = (uint32_t)b->left;
		for (i = 0; i < n; i++)
			b->p[i] = alphabet[below(s, sizeof alphabet)];
	}
	v->str = b->p;
	v->len = n;
	b->p += n;
	b->left -= n;
}

static uint64_t rand_num(const struct rfi_file *f, uint64_t *s)
{
	const struct rfi_matcher *m = NULL;
	uint64_t v;
	if (below(s, 2) == 0)
		m = pick_operand(f, s, 0);
	if (m != NULL) {
		/* lo or hi, off by one either way (wrapping). Two statements:
		 * the order of two calls in one expression is unspecified, and
		 * gcc and clang would draw the numbers in different orders. */
		v = below(s, 2) ? m->hi : m->lo;
		return v + below(s, 3) - 1;
	}
	switch (below(s, 3)) {
	case 0:
		return next64(s);
	case 1:
		return below(s, 1024);
	}
	return UINT64_MAX;
}

size_t rfi_rand_scratch_size(const struct rfi_file *f)
{
	return ((size_t)f->nfields + RFI_RAND_EXTRA_FIELDS) * RFI_RAND_MAX_STR;
}

void rfi_rand_event(const struct rfi_file *f, uint64_t *state, struct rfi_value *fields, uint8_t *scratch,
		    size_t scratch_len, struct rfi_event *ev)
{
	struct bump b;
	uint32_t n, i;
	b.p = scratch;
	b.left = scratch != NULL ? scratch_len : 0;
	ev->template_type = f->template_type;
	if (below(state, 16) == 0)
		ev->template_type = (uint16_t)below(state, 16);
	n = f->nfields;
	if (below(state, 8) == 0)
		n = below(state, n + RFI_RAND_EXTRA_FIELDS + 1);
	for (i = 0; i < n; i++) {
		memset(&fields[i], 0, sizeof fields[i]);
		rand_str(f, state, &b, &fields[i]);
		fields[i].num = rand_num(f, state);
	}
	ev->nfields = n;
	ev->fields = fields;
}
