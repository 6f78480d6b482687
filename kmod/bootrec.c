// SPDX-License-Identifier: GPL-2.0
/* The boot-record loader contract, compiled from bootguard/c unchanged. */
#include "rfbootrec.c"
