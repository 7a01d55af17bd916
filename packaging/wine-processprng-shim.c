/*
 * TEST ONLY, NEVER SHIPPED: a stand-in bcryptprimitives.dll for running
 * chatapp.exe under wine 8 (Debian 12), which lacks that DLL. Rust's
 * standard library gets its random bytes (HashMap keys) from
 * bcryptprimitives.dll's ProcessPrng, and a program importing a missing
 * DLL does not start. Real Windows (10 and later) has the DLL.
 *
 * packaging/smoke-wine.sh builds this into the smoke test's temporary
 * directory, beside the copy of the exe it runs, and nowhere else:
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll \
 *       wine-processprng-shim.c -ladvapi32
 */
#include <windows.h>

/* RtlGenRandom, exported by advapi32 under this name. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
