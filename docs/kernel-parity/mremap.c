// mremap(2) of private anonymous memory: shrink, grow in place, move (with MREMAP_MAYMOVE and
// MREMAP_FIXED), and the errors; the data and RssAnon/VmPTE after each. Build and run:
// cc -O0 -o mremap_parity mremap.c && ./mremap_parity (output: mremap.out).
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
static long st(const char *key) { FILE *f = fopen("/proc/self/status", "r"); char l[256]; long v=-1; size_t n=strlen(key);
  while (fgets(l, sizeof l, f)) if (!strncmp(l,key,n) && l[n]==':') v=atol(l+n+1); fclose(f); return v; }
#define P 4096L
#define M (2L << 20)
int main(void) {
    char *a = mmap((void *) 0x200000000000L, 8 * P, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0);
    madvise(a, 8 * P, MADV_NOHUGEPAGE);
    for (int i = 0; i < 8; i++) a[i * P] = 10 + i;
    long rss0 = st("RssAnon");
    char *r = mremap(a, 8 * P, 4 * P, 0);
    printf("shrink same=%d RssAnon_delta_kib=%ld a[3P]=%d\n", r == a, st("RssAnon") - rss0, a[3 * P]);
    r = mremap(a, 4 * P, 6 * P, 0);
    printf("grow in place same=%d a[5P]=%d\n", r == a, a[5 * P]);
    char *blocker = mmap(a + 6 * P, P, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0);
    errno = 0; r = mremap(a, 6 * P, 10 * P, 0);
    printf("grow blocked no MAYMOVE rc=%ld errno=%d\n", (long) r, errno);
    long pte0 = st("VmPTE"); rss0 = st("RssAnon");
    r = mremap(a, 6 * P, 10 * P, MREMAP_MAYMOVE);
    printf("grow by move moved=%d r[0]=%d r[3P]=%d r[8P]=%d RssAnon_delta_kib=%ld\n", r != a, r[0], r[3 * P], r[8 * P],
           st("RssAnon") - rss0);
    errno = 0; r = mremap(a, P, P, 0);
    printf("old range unmapped: mremap again rc=%ld errno=%d\n", (long) r, errno);
    // a 2 MiB-aligned move of a whole PTE table: VmPTE does not grow by a PTE table
    char *b = mmap((void *) 0x210000000000L, M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0);
    madvise(b, M, MADV_NOHUGEPAGE);
    for (long i = 0; i < M; i += P) b[i] = 1;
    pte0 = st("VmPTE");
    char *c = mremap(b, M, M, MREMAP_MAYMOVE | MREMAP_FIXED, (void *) 0x210000200000L);
    printf("aligned fixed move at=%p c[0]=%d VmPTE_delta_kib=%ld\n", (void *) c, c[0], st("VmPTE") - pte0);
    errno = 0; r = mremap(c, M, M, MREMAP_FIXED, (void *) 0x210000400000L);
    printf("FIXED without MAYMOVE rc=%ld errno=%d\n", (long) r, errno);
    errno = 0; r = mremap(c, M, M, MREMAP_MAYMOVE | MREMAP_FIXED, c + P);
    printf("overlapping FIXED rc=%ld errno=%d\n", (long) r, errno);
    errno = 0; r = mremap(c + 1, P, P, 0);
    printf("unaligned rc=%ld errno=%d\n", (long) r, errno);
    errno = 0; r = mremap(c, 0, P, 0);
    printf("old length 0 rc=%ld errno=%d\n", (long) r, errno);
    errno = 0; r = mremap(c, P, 0, 0);
    printf("new length 0 rc=%ld errno=%d\n", (long) r, errno);
    errno = 0; r = mremap((void *) 0x300000000000L, P, 2 * P, MREMAP_MAYMOVE);
    printf("unmapped rc=%ld errno=%d\n", (long) r, errno);
    errno = 0; r = mremap(c, 2 * M, 4 * M, MREMAP_MAYMOVE);
    printf("across the end of the VMA rc=%ld errno=%d\n", (long) r, errno);
    (void) blocker;
    return 0;
}
