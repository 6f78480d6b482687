/* In the kernel, the shared C sources' <stdint.h>: linux/types.h has the
 * fixed-width types; the limits they use are the kernel's. */
#include <linux/types.h>
#include <linux/limits.h>
#ifndef UINT64_MAX
#define UINT64_MAX U64_MAX
#endif
#ifndef UINT32_MAX
#define UINT32_MAX U32_MAX
#endif
#ifndef UINT16_MAX
#define UINT16_MAX U16_MAX
#endif
