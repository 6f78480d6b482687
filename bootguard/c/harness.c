/*
 * Test harness for rfbootrec (not part of the loader): reads a record file
 * and prints the decision in the canonical form of the vectors in
 * testdata/bootrecord (bootguard's Decision.String() plus " target=N"),
 * then the hex of the copy to write, or "-".
 *
 *   harness RECORD-FILE               the loader contract (rfbr_select)
 *   harness --mark-loaded RECORD-FILE the finished load (rfbr_mark_loaded):
 *                                     "mark-loaded=R target=T", then the hex
 *                                     of the copy to write, or "-"
 *   harness --mark-stopped RECORD-FILE the clean stop (rfbr_mark_stopped),
 *                                     printed the same way ("mark-stopped=")
 */
#include <stdio.h>
#include <string.h>

#include "rfbootrec.h"

int main(int argc, char **argv)
{
	uint8_t file[RFBR_FILE_SIZE];
	uint8_t out[RFBR_COPY_SIZE];
	struct rfbr_decision d;
	size_t n, i;
	int target, write;
	const char *mark = NULL;
	FILE *f;

	if (argc == 3 && (strcmp(argv[1], "--mark-loaded") == 0 || strcmp(argv[1], "--mark-stopped") == 0))
		mark = argv[1] + 2;
	else if (argc != 2) {
		fprintf(stderr, "usage: harness [--mark-loaded | --mark-stopped] RECORD-FILE\n");
		return 2;
	}
	f = fopen(argv[argc - 1], "rb");
	if (f == NULL) {
		perror(argv[argc - 1]);
		return 2;
	}
	n = fread(file, 1, sizeof file, f);
	fclose(f);

	if (mark != NULL) {
		if (strcmp(mark, "mark-loaded") == 0)
			write = rfbr_mark_loaded(file, n, &target, out);
		else
			write = rfbr_mark_stopped(file, n, &target, out);
		printf("%s=%d target=%d\n", mark, write, target);
		if (write != 1) {
			printf("-\n");
			return 0;
		}
		for (i = 0; i < RFBR_COPY_SIZE; i++)
			printf("%02x", out[i]);
		printf("\n");
		return 0;
	}
	write = rfbr_select(file, n, &d, &target, out);
	printf("action=%s slot=%s channel=%lu version=%lu why=%s reverted=%s write=%d target=",
	       rfbr_action_name(d.action), rfbr_slot_name(d.slot), (unsigned long)d.entry.channel,
	       (unsigned long)d.entry.version, rfbr_why_name(d.why), rfbr_slot_name(d.reverted), d.write);
	if (write) {
		printf("%d\n", target);
		for (i = 0; i < RFBR_COPY_SIZE; i++)
			printf("%02x", out[i]);
		printf("\n");
	} else {
		printf("-\n-\n");
	}
	return 0;
}
