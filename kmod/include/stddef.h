/* In the kernel, the shared C sources' <stddef.h> is the kernel's own. */
#include <linux/stddef.h>
#include <linux/types.h>
