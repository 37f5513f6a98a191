/* safekit-rfs-secondary SPEC.json: a mirror module's secondary replication process, started and
 * watched by safekitd (the same spec file as `python -m safekit.rfs secondary SPEC.json`). */
#include <stdio.h>

#include "secondary.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: safekit-rfs-secondary SPEC.json\n");
        return 2;
    }
    return sks_main(argv[1]);
}
