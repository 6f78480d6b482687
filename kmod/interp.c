// SPDX-License-Identifier: GPL-2.0
/* The reference interpreter, compiled from sensor/c unchanged (with the
 * legacy build's defect: Kbuild defines RFI_LEGACY_UNCHECKED for it). */
#include "rfinterp.c"
