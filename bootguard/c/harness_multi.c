/*
 * Multi-channel test harness for rfbootrec (not part of the loader): one
 * boot's loader pass over a host root that holds one boot record per
 * channel, at ROOT/channels/<N>/bootrecord. It is held to the transcripts in
 * testdata/bootrecord/multi by bootguard's TestMultiChannelVectorsC, which
 * runs it once per boot and does the agent's user-mode steps (MarkLoaded,
 * MarkGood) itself, in Go, as the product does.
 *
 *   harness_multi ROOT CRASH CHANNEL...
 *
 * CHANNEL... are channel numbers in any order (a directory listing's); the
 * loader goes through them in ascending numeric order. For each channel it
 * reads the record, calls rfbr_select, and if the decision writes, writes the
 * copy in place at its target and flushes it, before the (pretend) load. It
 * prints, per channel, the decision in the canonical form of the vectors:
 *
 *   ch<N> action=... slot=... channel=... version=... why=... reverted=... write=W target=T
 *
 * CRASH says where the host goes down during this pass, if it does:
 *   -        nowhere: every channel is selected and loaded
 *   load:N   while loading channel N, after its select and write: the
 *            channels after N are never selected ("ch<N> crash while loading")
 *   tear:N:K while writing channel N's record: only the first K bytes of the
 *            copy reach the disk, and nothing after that runs
 *            ("ch<N> torn write: K of 512 bytes of copy T")
 *
 * The loader part (select, write, flush) uses only rfbr_select, fixed
 * buffers and the C library's file I/O; nothing is allocated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rfbootrec.h"

#define MAX_CHANNELS 64
#define MAX_PATH 4096

enum crash_kind { CRASH_NONE, CRASH_LOAD, CRASH_TEAR };

static int parse_u32(const char *s, unsigned long *out)
{
	char *end;
	unsigned long v;
	if (*s < '0' || *s > '9')
		return 0;
	v = strtoul(s, &end, 10);
	if (*end != '\0' || v > 0xFFFFFFFFul)
		return 0;
	*out = v;
	return 1;
}

/* parse_crash reads "-", "load:N" or "tear:N:K". */
static int parse_crash(const char *s, enum crash_kind *kind, unsigned long *ch, unsigned long *bytes)
{
	char buf[64];
	char *colon;
	*kind = CRASH_NONE;
	*ch = 0;
	*bytes = 0;
	if (strcmp(s, "-") == 0)
		return 1;
	if (strlen(s) >= sizeof buf)
		return 0;
	strcpy(buf, s);
	if (strncmp(buf, "load:", 5) == 0) {
		*kind = CRASH_LOAD;
		return parse_u32(buf + 5, ch);
	}
	if (strncmp(buf, "tear:", 5) == 0) {
		*kind = CRASH_TEAR;
		colon = strchr(buf + 5, ':');
		if (colon == NULL)
			return 0;
		*colon = '\0';
		return parse_u32(buf + 5, ch) && parse_u32(colon + 1, bytes) && *bytes < RFBR_COPY_SIZE;
	}
	return 0;
}

/* write_copy writes the first n bytes of out over copy target of the record
 * file, in place, and flushes them. 1 on success. */
static int write_copy(const char *path, int target, const uint8_t *out, size_t n)
{
	FILE *f = fopen(path, "r+b");
	int ok;
	if (f == NULL)
		return 0;
	ok = fseek(f, (long)target * RFBR_COPY_SIZE, SEEK_SET) == 0 && fwrite(out, 1, n, f) == n &&
	     fflush(f) == 0;
	return fclose(f) == 0 && ok;
}

int main(int argc, char **argv)
{
	unsigned long chans[MAX_CHANNELS];
	unsigned long crash_ch, tear_bytes, v;
	enum crash_kind crash;
	char path[MAX_PATH];
	uint8_t file[RFBR_FILE_SIZE];
	uint8_t out[RFBR_COPY_SIZE];
	struct rfbr_decision d;
	int nchans = 0, i, j, target, write;
	size_t n;
	FILE *f;

	if (argc < 3 || !parse_crash(argv[2], &crash, &crash_ch, &tear_bytes)) {
		fprintf(stderr, "usage: harness_multi ROOT -|load:N|tear:N:K CHANNEL...\n");
		return 2;
	}
	for (i = 3; i < argc; i++) {
		if (nchans == MAX_CHANNELS || !parse_u32(argv[i], &v)) {
			fprintf(stderr, "harness_multi: bad or too many channels at %s\n", argv[i]);
			return 2;
		}
		/* Insertion sort: the loader goes through the channels in
		 * ascending numeric order, whatever order they were listed in. */
		for (j = nchans; j > 0 && chans[j - 1] > v; j--)
			chans[j] = chans[j - 1];
		chans[j] = v;
		nchans++;
	}

	for (i = 0; i < nchans; i++) {
		if (snprintf(path, sizeof path, "%s/channels/%lu/bootrecord", argv[1], chans[i]) >= (int)sizeof path) {
			fprintf(stderr, "harness_multi: path too long\n");
			return 2;
		}
		/* A record that cannot be opened reads as empty: safe mode. */
		n = 0;
		f = fopen(path, "rb");
		if (f != NULL) {
			n = fread(file, 1, sizeof file, f);
			fclose(f);
		}

		write = rfbr_select(file, n, &d, &target, out);
		printf("ch%lu action=%s slot=%s channel=%lu version=%lu why=%s reverted=%s write=%d target=", chans[i],
		       rfbr_action_name(d.action), rfbr_slot_name(d.slot), (unsigned long)d.entry.channel,
		       (unsigned long)d.entry.version, rfbr_why_name(d.why), rfbr_slot_name(d.reverted), d.write);
		if (write)
			printf("%d\n", target);
		else
			printf("-\n");

		if (crash == CRASH_TEAR && chans[i] == crash_ch) {
			if (!write) {
				printf("ch%lu torn write: nothing was being written\n", chans[i]);
				return 0;
			}
			if (!write_copy(path, target, out, (size_t)tear_bytes)) {
				perror(path);
				return 2;
			}
			printf("ch%lu torn write: %lu of %d bytes of copy %d\n", chans[i], tear_bytes, RFBR_COPY_SIZE,
			       target);
			return 0;
		}
		/* Write and flush before the load; if that fails, load nothing
		 * (here: stop, the test fails). */
		if (write && !write_copy(path, target, out, RFBR_COPY_SIZE)) {
			perror(path);
			return 2;
		}
		if (crash == CRASH_LOAD && chans[i] == crash_ch) {
			printf("ch%lu crash while loading\n", chans[i]);
			return 0;
		}
	}
	return 0;
}
