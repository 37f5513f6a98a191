/* safekit-rfs-secondary SPEC.json: a mirror module's secondary replication process, started and
 * watched by safekitd (the same spec file as `python -m safekit.rfs secondary SPEC.json`). */
#include <malloc.h>
#include <stdio.h>

#include "secondary.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: safekit-rfs-secondary SPEC.json\n");
        return 2;
    }
    /* A fixed mmap threshold (glibc's default value; setting it turns the dynamic adjustment off,
     * for the trim threshold too): every block of 128 KiB or more is mapped on its own and unmapped
     * at its free. With the dynamic one, the first free of a manifest's 3 MiB chunk buffer raised
     * the threshold to 3 MiB, and every later manifest (each `verify`, each checksum pass) took
     * its 4 MiB of buffers from the heap, which kept them resident after their free (ADR 0044;
     * the primary: ADR 0037). */
    mallopt(M_MMAP_THRESHOLD, 128 << 10);
    return sks_main(argv[1]);
}
