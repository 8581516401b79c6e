// MADV_FREE then MADV_PAGEOUT on private anonymous memory (no swap): which pages go, RssAnon,
// pglazyfree and pglazyfreed. Build and run: cc -O0 -o mfree madvise_free.c && ./mfree (output: madvise_free.out).
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
static long st(const char *key) { FILE *f = fopen("/proc/self/status", "r"); char l[256]; long v=-1; size_t n=strlen(key);
  while (fgets(l, sizeof l, f)) if (!strncmp(l,key,n) && l[n]==':') v=atol(l+n+1); fclose(f); return v; }
static long vm(const char *key) { FILE *f = fopen("/proc/vmstat", "r"); char k[128]; long v, r=-1;
  while (fscanf(f, "%127s %ld", k, &v) == 2) if (!strcmp(k, key)) r = v; fclose(f); return r; }
#define P 4096L
int main(void) {
    char *p = mmap((void *) 0x500000000000L, 16 * P, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0);
    madvise(p, 16 * P, MADV_NOHUGEPAGE);
    for (int i = 0; i < 16; i++) p[i * P] = 1 + i;
    long rss0 = st("RssAnon"), lf0 = vm("pglazyfree"), lfd0 = vm("pglazyfreed");
    int r = madvise(p, 16 * P, MADV_FREE);
    printf("free rc=%d RssAnon_delta=%ld pglazyfree=%ld\n", r, st("RssAnon") - rss0, vm("pglazyfree") - lf0);
    for (int i = 0; i < 4; i++) p[i * P] = 100 + i;
    r = madvise(p, 16 * P, MADV_PAGEOUT);
    long rss = st("RssAnon") - rss0;
    printf("pageout rc=%d RssAnon_delta=%ld pglazyfreed=%ld p[0]=%d p[3P]=%d p[4P]=%d p[15P]=%d\n", r, rss,
           vm("pglazyfreed") - lfd0, p[0], p[3 * P], p[4 * P], p[15 * P]);
    char *s = mmap(NULL, 4 * P, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_ANONYMOUS, -1, 0);
    errno = 0; r = madvise(s, 4 * P, MADV_FREE); printf("free on shared rc=%d errno=%d\n", r, errno);
    // a page shared with a child after fork
    char *q = mmap((void *) 0x510000000000L, 2 * P, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0);
    q[0] = 5; q[P] = 6;
    long lf1 = vm("pglazyfree");
    r = madvise(q, 2 * P, MADV_FREE); r |= madvise(q, 2 * P, MADV_PAGEOUT);
    printf("free+pageout unshared rc=%d pglazyfree=%ld q[0]=%d\n", r, vm("pglazyfree") - lf1, q[0]);
    return 0;
}
