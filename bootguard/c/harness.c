/*
 * Test harness for rfbootrec (not part of the loader): reads a record file
 * and prints the decision in the canonical form of the vectors in
 * testdata/bootrecord (bootguard's Decision.String() plus " target=N"),
 * then the hex of the copy to write, or "-".
 */
#include <stdio.h>

#include "rfbootrec.h"

int main(int argc, char **argv)
{
	uint8_t file[RFBR_FILE_SIZE];
	uint8_t out[RFBR_COPY_SIZE];
	struct rfbr_decision d;
	size_t n, i;
	int target, write;
	FILE *f;

	if (argc != 2) {
		fprintf(stderr, "usage: harness RECORD-FILE\n");
		return 2;
	}
	f = fopen(argv[1], "rb");
	if (f == NULL) {
		perror(argv[1]);
		return 2;
	}
	n = fread(file, 1, sizeof file, f);
	fclose(f);

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
