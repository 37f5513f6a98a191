/* Resident memory of long-lived buffers (ADR 0037, ADR 0044). */
#ifndef SK_MEM_H
#define SK_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

/* Gives the whole pages of buf[from, to) back to the system (MADV_DONTNEED): the buffer stays
 * allocated and mapped, its next use there lands in fresh zero pages. For a buffer sized for the
 * largest frame whose pages stay resident after one large frame passed through it. Only pages
 * strictly inside the range are touched, never the allocator's bytes around the buffer. */
static inline void sk_pages_release(void *buf, size_t from, size_t to)
{
    if (to <= from)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)buf + from + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)buf + to) & ~(page - 1);
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

#endif
