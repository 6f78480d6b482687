/*
 * A stand-in for Windows' bcryptprimitives.dll, for Wine 8 (Debian 12),
 * which lacks it. Go 1.22+ gets its random numbers from ProcessPrng in
 * that DLL and dies at start-up without it. This one answers ProcessPrng
 * with RtlGenRandom (advapi32's SystemFunction036), Windows' older CSPRNG
 * entry point, which Wine has. It is only ever copied into the private Wine
 * prefix the Windows tests run in (wine/run.sh), never shipped.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
	while (length > 0) {
		ULONG n = length > 0x7fffffff ? 0x7fffffff : (ULONG)length;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		length -= n;
	}
	return TRUE;
}
