/* In the kernel, the shared C sources' <string.h> (memcpy, memset, memcmp). */
#include <linux/string.h>
