// SPDX-License-Identifier: GPL-2.0
/*
 * rfguard: the reference kernel agent. At load (module init) it does what a
 * vendor's kernel loader must do before it runs any content, in order
 * (docs/loader-integration.md):
 *
 *   1. read the channel's boot record from the state disk, run the loader
 *      contract (rfbr_select) and, when the decision says so, write the next
 *      copy in place and flush it, before it touches any content;
 *   2. read the chosen slot and keep only bytes it verified: the manifest
 *      against the digest the record pins, the channel file against the
 *      manifest's size and SHA-256, then the file's own SHA-256 trailer;
 *   3. parse the channel file and run the interpreter on its first events,
 *      here, in kernel space: sensor/c's port of the reference interpreter,
 *      built with the legacy sensor's defect (Kbuild), so content that names
 *      a field this build does not supply makes the kernel fault inside the
 *      interpreter, as in July 2024;
 *   4. only then record the finished load (rfbr_mark_loaded: breadcrumb
 *      LOADED), written and flushed the same way.
 *
 * A fault in step 3 is an oops in this module; with panic_on_oops the
 * kernel panics, the breadcrumb LOADING stays on disk, and at the next boot
 * step 1 falls back to last-known-good before anything else is loaded.
 *
 * It does this for each channel it serves, in ascending order, each on its
 * own record: a crash while loading channel N leaves the channels before it
 * LOADED and the ones after it unselected. A channel that cannot be loaded
 * (a slot that does not verify, content this build refuses) fails the
 * module's load, as a crashed agent would, and the channels after it are
 * not selected. When the module is unloaded (the agent stops cleanly), each
 * trial it loaded gets the breadcrumb STOPPED (rfbr_mark_stopped), so the
 * next start spends no try on it.
 *
 * Every read is bounded, and the module keeps nothing it did not verify.
 *
 * Parameters (all read-only at run time):
 *   root=DIR        the Ringfence root on the state disk (/state/ringfence)
 *   channels=N,...  the channels to load, at most 8 (291)
 *   seed=N          seeds the first random events
 *   first_events=N  random events after the synthesized ones (200)
 *   failpoint=NAME  torn-write: write half of the record's next copy, flush
 *                   it and panic the kernel, the torn write of a power cut;
 *                   skip-sync: write the record without flushing it (the
 *                   power-cut test shows that a cut then breaks the guard)
 *   marks=1         tell a recording file system mounted at root which step
 *                   the module passed, by looking up root/.lazyfs-mark-NAME
 *                   (internal/lazyfs; the VM test's power-cut scenario)
 *   result          set by the module: its outcome, one JSON object per
 *                   channel, one per line
 */
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/kstrtox.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/namei.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <crypto/sha2.h>

#include "rfbootrec.h"
#include "rfinterp.h"

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Ringfence reference kernel agent: boot-record guard and content interpreter");

static char *root = "/state/ringfence";
module_param(root, charp, 0444);
MODULE_PARM_DESC(root, "the Ringfence root directory on the state disk");
#define MAX_CHANNELS 8
static uint channels[MAX_CHANNELS] = { 291 };
static int nchannels = 1;
module_param_array(channels, uint, &nchannels, 0444);
MODULE_PARM_DESC(channels, "the channels to load, in any order (loaded in ascending order)");
static ulong seed = 1;
module_param(seed, ulong, 0444);
MODULE_PARM_DESC(seed, "seed of the first random events");
static uint first_events = 200;
module_param(first_events, uint, 0444);
MODULE_PARM_DESC(first_events, "random events evaluated after the synthesized ones");
static char *failpoint = "";
module_param(failpoint, charp, 0444);
MODULE_PARM_DESC(failpoint, "torn-write: tear the next record write and panic; skip-sync: never flush the record (tests)");
static bool marks;
module_param(marks, bool, 0444);
MODULE_PARM_DESC(marks, "look up root/.lazyfs-mark-NAME at each step (tests)");
static char result[MAX_CHANNELS * 160];
module_param_string(result, result, sizeof(result), 0444);
MODULE_PARM_DESC(result, "the outcome of the load, one JSON object per channel and line (set by the module)");

/* The trials this module loaded to the end: the clean stop marks them. */
static uint trials[MAX_CHANNELS];
static int ntrials;

#define MAX_MANIFEST (64u << 10) /* installer.MaxManifestSize */
#define CONTENT_NAME "content.rfch"   /* installer.ContentName */
#define MANIFEST_FORMAT "ringfence-slot/v1"

/*
 * The inputs this build supplies per template type: the 7.11 sensor's
 * capability manifest (sensor/caps/sensor-7.11.json; a test holds this table
 * to it). The legacy IPC template supplies 20 inputs; content written for
 * 7.12 names a 21st.
 */
static const struct {
	uint16_t type;
	uint32_t inputs;
} caps[] = {
	{ 1, 8 },  /* ProcessStart */
	{ 7, 20 }, /* IPC */
};

/* mark tells a recording file system the module passed step name: the
 * lookup of a name that is never there (internal/lazyfs.MarkPrefix). */
static void mark(const char *name)
{
	struct path p;
	char *path;

	if (!marks)
		return;
	path = kasprintf(GFP_KERNEL, "%s/.lazyfs-mark-%s", root, name);
	if (path && !kern_path(path, 0, &p))
		path_put(&p);
	kfree(path);
}

/* read_file reads the whole file at path, at most max bytes, into a
 * kvmalloc'd buffer with a NUL after it (for the manifest's scan). */
static int read_file(const char *path, size_t max, u8 **buf, size_t *len)
{
	struct file *f;
	loff_t size, pos = 0;
	ssize_t n;
	u8 *b;
	int err = 0;

	f = filp_open(path, O_RDONLY | O_NOFOLLOW | O_LARGEFILE, 0);
	if (IS_ERR(f))
		return PTR_ERR(f);
	size = i_size_read(file_inode(f));
	if (size < 0 || size > max) {
		err = -EFBIG;
		goto out;
	}
	b = kvmalloc(size + 1, GFP_KERNEL);
	if (!b) {
		err = -ENOMEM;
		goto out;
	}
	while (pos < size) {
		n = kernel_read(f, b + pos, size - pos, &pos);
		if (n <= 0) {
			kvfree(b);
			err = n < 0 ? (int)n : -EIO; /* shrank under us */
			goto out;
		}
	}
	b[size] = 0;
	*buf = b;
	*len = size;
out:
	filp_close(f, NULL);
	return err;
}

/*
 * write_copy writes one copy of the boot record in place and makes it
 * durable before it returns 0. The record file is never resized, so the
 * copy's blocks are already allocated: vfs_fsync(f, 1) (fdatasync) writes
 * the page and issues the device cache flush, and no metadata is needed to
 * find the bytes again (bootguard does the same in user space). Any error
 * means the caller loads nothing: a trial whose breadcrumb is not on disk
 * must not run.
 */
static int write_copy(struct file *f, int target, const u8 *copy, size_t n)
{
	loff_t pos = (loff_t)target * RFBR_COPY_SIZE;
	ssize_t w = kernel_write(f, copy, n, &pos);

	if (w < 0)
		return (int)w;
	if ((size_t)w != n)
		return -EIO;
	if (!strcmp(failpoint, "skip-sync"))
		return 0; /* the power-cut test shows this flush is needed */
	return vfs_fsync(f, 1);
}

static int read_record(struct file *f, u8 *file, size_t *len)
{
	loff_t pos = 0;
	ssize_t n = kernel_read(f, file, RFBR_FILE_SIZE, &pos);

	if (n < 0)
		return (int)n;
	*len = n;
	return 0;
}

/* manifest_content finds the content file's size and SHA-256 in a slot
 * manifest. The bytes are the installer's canonical encoding (JSON, two-space
 * indent) and are pinned by the record's digest, so anything but that exact
 * shape is refused rather than parsed loosely. */
static int manifest_content(const char *m, u64 *size, u8 sum[32])
{
	const char *p, *end, *s;
	char num[24];
	size_t n;

	if (!strstr(m, "\"format\": \"" MANIFEST_FORMAT "\""))
		return -EBADMSG;
	p = strstr(m, "\"name\": \"" CONTENT_NAME "\",");
	if (!p)
		return -ENOENT;
	end = strchr(p, '}');
	if (!end)
		return -EBADMSG;
	s = strstr(p, "\"size\": ");
	if (!s || s > end)
		return -EBADMSG;
	s += strlen("\"size\": ");
	n = strspn(s, "0123456789");
	if (n == 0 || n >= sizeof(num))
		return -EBADMSG;
	memcpy(num, s, n);
	num[n] = 0;
	if (kstrtou64(num, 10, size))
		return -EBADMSG;
	s = strstr(p, "\"sha256\": \"");
	if (!s || s > end)
		return -EBADMSG;
	s += strlen("\"sha256\": \"");
	if (s + 64 >= end || s[64] != '"' || hex2bin(sum, s, 32))
		return -EBADMSG;
	return 0;
}

/* read_content reads slot dir's channel file, verified: the manifest against
 * digest, the file against the manifest. */
static int read_content(const char *dir, const u8 digest[32], u8 **data, size_t *len)
{
	char *path;
	u8 *m = NULL, *c = NULL;
	size_t mlen, clen;
	u8 got[32], want[32];
	u64 size;
	int err;

	path = kasprintf(GFP_KERNEL, "%s/MANIFEST.json", dir);
	if (!path)
		return -ENOMEM;
	err = read_file(path, MAX_MANIFEST, &m, &mlen);
	kfree(path);
	if (err) {
		pr_err("rfguard: %s/MANIFEST.json: read: %d\n", dir, err);
		return err;
	}
	sha256(m, mlen, got);
	if (memcmp(got, digest, 32)) {
		pr_err("rfguard: %s/MANIFEST.json: digest %*phN, the boot record pins %*phN: slot corrupt, loading nothing\n",
		       dir, 8, got, 8, digest);
		err = -EBADMSG;
		goto out;
	}
	err = manifest_content((const char *)m, &size, want);
	if (err) {
		pr_err("rfguard: %s/MANIFEST.json: no well-formed %s entry: %d\n", dir, CONTENT_NAME, err);
		goto out;
	}
	if (size > RFI_MAX_FILE_SIZE) {
		err = -EFBIG;
		goto out;
	}
	path = kasprintf(GFP_KERNEL, "%s/" CONTENT_NAME, dir);
	if (!path) {
		err = -ENOMEM;
		goto out;
	}
	err = read_file(path, size, &c, &clen);
	kfree(path);
	if (err) {
		pr_err("rfguard: %s/%s: read: %d\n", dir, CONTENT_NAME, err);
		goto out;
	}
	sha256(c, clen, got);
	if (clen != size || memcmp(got, want, 32)) {
		pr_err("rfguard: %s/%s does not match its size and SHA-256 in the manifest: loading nothing\n", dir,
		       CONTENT_NAME);
		kvfree(c);
		err = -EBADMSG;
		goto out;
	}
	*data = c;
	*len = clen;
out:
	kvfree(m);
	return err;
}

/* A loaded program: the parsed file and the interpreter's frame. */
struct program {
	struct rfi_file file;
	struct rfi_instance *inst;
	struct rfi_matcher *match;
	void *frame;
	struct rfi_program prog;
};

static void program_free(struct program *p)
{
	kvfree(p->inst);
	kvfree(p->match);
	kfree(p->frame);
}

/* load_program parses data (verified) for this build's interpreter. */
static int load_program(const u8 *data, size_t len, const struct rfbr_entry *e, struct program *p)
{
	u32 ninst, nmatch, inputs = 0;
	u8 sum[32];
	size_t i, end;
	int rc;

	memset(p, 0, sizeof(*p));
	/* The parser's order (sensor/c/rfinterp.h): header, the SHA-256
	 * trailer (the kernel's), then the body. */
	rc = rfi_check_header(data, len, &end);
	if (rc != RFI_OK) {
		pr_err("rfguard: channel file: format error %d\n", rc);
		return -EBADMSG;
	}
	sha256(data, end, sum);
	if (memcmp(sum, data + end, RFI_TRAILER_SIZE)) {
		pr_err("rfguard: channel file: SHA-256 trailer does not match (format error %d)\n", RFI_E_CHECKSUM);
		return -EBADMSG;
	}
	rc = rfi_parse_count(data, len, &ninst, &nmatch);
	if (rc != RFI_OK) {
		pr_err("rfguard: channel file: format error %d\n", rc);
		return -EBADMSG;
	}
	p->inst = kvmalloc_array(ninst ? ninst : 1, sizeof(*p->inst), GFP_KERNEL);
	p->match = kvmalloc_array(nmatch ? nmatch : 1, sizeof(*p->match), GFP_KERNEL);
	if (!p->inst || !p->match) {
		program_free(p);
		return -ENOMEM;
	}
	rc = rfi_parse(data, len, &p->file, p->inst, ninst, p->match, nmatch);
	if (rc != RFI_OK) {
		program_free(p);
		return -EBADMSG;
	}
	if (p->file.channel != e->channel || p->file.content_version != e->version) {
		pr_err("rfguard: channel file is channel %u version %u; the record names %u version %u\n",
		       p->file.channel, p->file.content_version, e->channel, e->version);
		program_free(p);
		return -EBADMSG;
	}
	for (i = 0; i < ARRAY_SIZE(caps); i++)
		if (caps[i].type == p->file.template_type)
			inputs = caps[i].inputs;
	if (inputs == 0) {
		pr_err("rfguard: this build has no template type %u\n", p->file.template_type);
		program_free(p);
		return -ENOEXEC;
	}
	p->frame = kzalloc(rfi_frame_size(inputs), GFP_KERNEL);
	if (!p->frame) {
		program_free(p);
		return -ENOMEM;
	}
	rfi_prepare(&p->prog, &p->file, inputs, p->frame);
	return 0;
}

/*
 * first_events runs the program on the host's first traffic as the
 * reference sensor models it: the synthesized events (each instance's
 * matchers satisfied in turn, so every field the content names is read),
 * then random ones. Returns how many it evaluated, or a negative errno.
 */
static long run_first_events(struct program *p)
{
	struct rfi_value *fields;
	u8 *scratch;
	size_t slen = max(rfi_synth_scratch_size(&p->file), rfi_rand_scratch_size(&p->file));
	struct rfi_event ev;
	struct rfi_verdict v;
	u64 state = seed;
	long n = 0;
	u32 i;
	int variant;

	fields = kcalloc(p->file.nfields + RFI_RAND_EXTRA_FIELDS, sizeof(*fields), GFP_KERNEL);
	scratch = kvmalloc(slen, GFP_KERNEL);
	if (!fields || !scratch) {
		n = -ENOMEM;
		goto out;
	}
	for (i = 0; i < p->file.ninstances; i++) {
		for (variant = 0; variant < 2; variant++) {
			if (rfi_synthesize(&p->file, i, variant, fields, scratch, slen, &ev) != RFI_OK) {
				n = -EINVAL;
				goto out;
			}
			if (rfi_eval(&p->prog, &ev, &v) != RFI_OK) {
				n = -EINVAL;
				goto out;
			}
			n++;
		}
		cond_resched();
	}
	for (i = 0; i < first_events; i++) {
		rfi_rand_event(&p->file, &state, fields, scratch, slen, &ev);
		if (rfi_eval(&p->prog, &ev, &v) != RFI_OK) {
			n = -EINVAL;
			goto out;
		}
		n++;
		cond_resched();
	}
out:
	kvfree(scratch);
	kfree(fields);
	return n;
}

/* add_result appends channel ch's outcome to result, one line. */
static void add_result(uint ch, const struct rfbr_decision *d, bool loaded, long events)
{
	size_t n = strlen(result);

	if (d->action == RFBR_ACTION_LOAD)
		snprintf(result + n, sizeof(result) - n,
			 "{\"action\":\"%s\",\"slot\":\"%s\",\"channel\":%u,\"version\":%u,\"why\":\"%s\",\"loaded\":%s,\"events\":%ld}\n",
			 rfbr_action_name(d->action), rfbr_slot_name(d->slot), d->entry.channel, d->entry.version,
			 rfbr_why_name(d->why), loaded ? "true" : "false", events);
	else
		snprintf(result + n, sizeof(result) - n,
			 "{\"action\":\"%s\",\"channel\":%u,\"why\":\"%s\",\"loaded\":false,\"events\":0}\n",
			 rfbr_action_name(d->action), ch, rfbr_why_name(d->why));
}

/* load_channel runs steps 1 to 4 on channel ch. */
static int load_channel(uint ch)
{
	char *path, *dir = NULL;
	struct file *rec;
	u8 *file, *out, *data = NULL;
	size_t len, dlen;
	struct rfbr_decision *d;
	struct program *p = NULL;
	int target, err;
	long events;

	/* The record and the decision are kept off the 16 KiB kernel stack. */
	file = kzalloc(RFBR_FILE_SIZE + RFBR_COPY_SIZE, GFP_KERNEL);
	d = kzalloc(sizeof(*d), GFP_KERNEL);
	path = kasprintf(GFP_KERNEL, "%s/channels/%u/bootrecord", root, ch);
	if (!file || !d || !path) {
		err = -ENOMEM;
		goto free;
	}
	out = file + RFBR_FILE_SIZE;

	/* 1. The loader contract, and its write made durable first. */
	rec = filp_open(path, O_RDWR | O_NOFOLLOW | O_LARGEFILE, 0);
	if (IS_ERR(rec)) {
		err = PTR_ERR(rec);
		pr_err("rfguard: open %s: %d: no boot record, loading nothing\n", path, err);
		goto free;
	}
	err = read_record(rec, file, &len);
	if (err)
		goto close;
	if (rfbr_select(file, len, d, &target, out)) {
		if (!strcmp(failpoint, "torn-write")) {
			err = write_copy(rec, target, out, RFBR_COPY_SIZE / 2);
			panic("rfguard: failpoint torn-write: %d of %d bytes of copy %d written and flushed (%d)",
			      RFBR_COPY_SIZE / 2, RFBR_COPY_SIZE, target, err);
		}
		err = write_copy(rec, target, out, RFBR_COPY_SIZE);
		if (err) {
			pr_err("rfguard: %s: write copy %d: %d: the decision is not on disk, loading nothing\n", path,
			       target, err);
			goto close;
		}
	}
	if (d->write)
		mark("record-written");
	pr_notice("rfguard: channel %u: action=%s slot=%s version=%u why=%s\n", ch, rfbr_action_name(d->action),
		  rfbr_slot_name(d->slot), d->entry.version, rfbr_why_name(d->why));
	if (d->action != RFBR_ACTION_LOAD) {
		add_result(ch, d, false, 0);
		err = 0;
		goto close;
	}

	/* 2. Only verified bytes. */
	dir = kasprintf(GFP_KERNEL, "%s/channels/%u/slots/%s", root, ch, rfbr_slot_name(d->slot));
	if (!dir) {
		err = -ENOMEM;
		goto close;
	}
	err = read_content(dir, d->entry.digest, &data, &dlen);
	if (err)
		goto close;

	/* 3. The interpreter, on its first events, in kernel space. */
	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p) {
		err = -ENOMEM;
		goto close;
	}
	err = load_program(data, dlen, &d->entry, p);
	if (err)
		goto close;
	pr_notice("rfguard: channel %u version %u: %u instances loaded; running the first events\n", ch,
		  d->entry.version, p->file.ninstances);
	events = run_first_events(p);
	program_free(p);
	if (events < 0) {
		err = (int)events;
		goto close;
	}

	/* 4. The finished load, recorded last. */
	err = read_record(rec, file, &len);
	if (err)
		goto close;
	switch (rfbr_mark_loaded(file, len, &target, out)) {
	case 1:
		err = write_copy(rec, target, out, RFBR_COPY_SIZE);
		break;
	case 0:
		break;
	default:
		err = -ESTALE; /* the record changed under the loader */
	}
	if (err) {
		pr_err("rfguard: %s: record the finished load: %d\n", path, err);
		goto close;
	}
	mark("loaded-recorded");
	add_result(ch, d, true, events);
	if (d->entry.state == RFBR_STATE_TRIAL)
		trials[ntrials++] = ch;
	pr_notice("rfguard: channel %u version %u loaded; %ld first events survived\n", ch, d->entry.version,
		  events);
close:
	filp_close(rec, NULL);
free:
	kvfree(data);
	kfree(p);
	kfree(dir);
	kfree(path);
	kfree(d);
	kfree(file);
	return err;
}

static int __init rfguard_init(void)
{
	uint tmp;
	int i, j, err;

	if (nchannels < 1) {
		pr_err("rfguard: no channel to load\n");
		return -EINVAL;
	}
	/* Ascending order, the order docs/boot-record.md fixes. */
	for (i = 1; i < nchannels; i++)
		for (j = i; j > 0 && channels[j - 1] > channels[j]; j--) {
			tmp = channels[j];
			channels[j] = channels[j - 1];
			channels[j - 1] = tmp;
		}
	for (i = 0; i < nchannels; i++) {
		if (channels[i] == 0 || (i > 0 && channels[i] == channels[i - 1])) {
			pr_err("rfguard: channels: %u is not a channel, or is given twice\n", channels[i]);
			return -EINVAL;
		}
	}
	for (i = 0; i < nchannels; i++) {
		err = load_channel(channels[i]);
		if (err) {
			pr_err("rfguard: channel %u: %d: the agent does not start; the channels after it are not selected\n",
			       channels[i], err);
			return err;
		}
	}
	return 0;
}

/*
 * mark_stopped records a clean stop on channel ch (step 7 of
 * docs/loader-integration.md): a trial this module loaded to the end gets
 * the breadcrumb STOPPED, written and flushed like every record write. It
 * runs only on unload, never on a crash path.
 */
static void mark_stopped(uint ch)
{
	struct file *rec;
	u8 *file, *out;
	size_t len;
	char *path;
	int target, err;

	file = kzalloc(RFBR_FILE_SIZE + RFBR_COPY_SIZE, GFP_KERNEL);
	path = kasprintf(GFP_KERNEL, "%s/channels/%u/bootrecord", root, ch);
	if (!file || !path) {
		err = -ENOMEM;
		goto free;
	}
	out = file + RFBR_FILE_SIZE;
	rec = filp_open(path, O_RDWR | O_NOFOLLOW | O_LARGEFILE, 0);
	if (IS_ERR(rec)) {
		err = PTR_ERR(rec);
		goto free;
	}
	err = read_record(rec, file, &len);
	if (!err) {
		switch (rfbr_mark_stopped(file, len, &target, out)) {
		case 1:
			err = write_copy(rec, target, out, RFBR_COPY_SIZE);
			if (!err)
				pr_notice("rfguard: channel %u: clean stop recorded\n", ch);
			break;
		case 0:
			break;
		default:
			err = -EBADMSG;
		}
	}
	filp_close(rec, NULL);
free:
	if (err)
		pr_err("rfguard: channel %u: record the clean stop: %d (the next start spends a try)\n", ch, err);
	kfree(path);
	kfree(file);
}

static void __exit rfguard_exit(void)
{
	int i;

	for (i = 0; i < ntrials; i++)
		mark_stopped(trials[i]);
}

module_init(rfguard_init);
module_exit(rfguard_exit);
