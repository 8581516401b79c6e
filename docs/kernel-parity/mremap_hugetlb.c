// mremap(2) of MAP_HUGETLB memory, private (no argument) or shared (any argument): grow, shrink,
// unaligned lengths, moves; the pool after each. Needs nr_hugepages >= 4. Output: mremap_hugetlb.out.
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#define H (2L << 20)
static void meminfo(const char *when) {
    FILE *f = fopen("/proc/meminfo", "r"); char l[256]; long fr=-1, rs=-1;
    while (fgets(l, sizeof l, f)) { if (!strncmp(l,"HugePages_Free:",15)) fr=atol(l+15); if (!strncmp(l,"HugePages_Rsvd:",15)) rs=atol(l+15); }
    fclose(f); printf("%-24s free=%ld rsvd=%ld\n", when, fr, rs);
}
int main(int argc, char **argv) {
    int shared = argc > 1;
    char *p = mmap((void *) 0x400000000000L, 4 * H, PROT_READ|PROT_WRITE, (shared ? MAP_SHARED : MAP_PRIVATE)|MAP_ANONYMOUS|MAP_HUGETLB|MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    p[0] = 1; p[H] = 2;
    meminfo("written 2 of 4");
    errno = 0; char *r = mremap(p, 4 * H, 6 * H, MREMAP_MAYMOVE); printf("grow rc=%p errno=%d\n", (void *) r, errno);
    errno = 0; r = mremap(p, 4 * H, 3 * H, 0); printf("shrink rc_same=%d errno=%d\n", r == p, errno); meminfo("shrunk to 3");
    errno = 0; r = mremap(p, 3 * H, 3 * H + 4096, MREMAP_MAYMOVE); printf("unaligned new len rc=%p errno=%d\n", (void *) r, errno);
    errno = 0; r = mremap(p + 4096, H, H, MREMAP_MAYMOVE); printf("unaligned old rc=%p errno=%d\n", (void *) r, errno);
    errno = 0; r = mremap(p, 3 * H, 3 * H, MREMAP_MAYMOVE | MREMAP_FIXED, (void *) 0x410000000000L);
    printf("move fixed rc=%p errno=%d r[0]=%d r[H]=%d\n", (void *) r, errno, r == MAP_FAILED ? -1 : r[0], r == MAP_FAILED ? -1 : r[H]);
    meminfo("moved");
    errno = 0; char *q = mremap(r, 3 * H, 3 * H, MREMAP_MAYMOVE | MREMAP_FIXED, (void *) (0x410000000000L + H));
    printf("move overlapping rc=%p errno=%d\n", (void *) q, errno);
    errno = 0; q = mremap(r, 3 * H, 3 * H, MREMAP_MAYMOVE | MREMAP_FIXED, (void *) (0x420000000000L + 4096));
    printf("move to unaligned rc=%p errno=%d\n", (void *) q, errno);
    return 0;
}
