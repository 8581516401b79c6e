// madvise(MADV_DONTNEED) on private anonymous and shmem memory: holes, mlocked VMAs, bad
// arguments, RSS. Build and run: cc -O0 -o adn madvise_dontneed.c && ./adn (output: madvise_dontneed.out).
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
static long st(const char *key) { FILE *f = fopen("/proc/self/status", "r"); char l[256]; long v=-1; size_t n=strlen(key);
  while (fgets(l, sizeof l, f)) if (!strncmp(l,key,n) && l[n]==':') v=atol(l+n+1); fclose(f); return v; }
int main(void) {
    long P = 4096;
    char *p = mmap((void*)0x200000000000L, 8*P, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0);
    madvise(p, 8*P, MADV_NOHUGEPAGE);
    for (int i = 0; i < 8; i++) p[i*P] = 1;
    printf("anon written: RssAnon=%ld\n", st("RssAnon"));
    munmap(p + 2*P, P);
    errno = 0; int r = madvise(p, 8*P, MADV_DONTNEED);
    printf("dontneed over a hole rc=%d errno=%d RssAnon=%ld p[0]=%d p[3P]=%d\n", r, errno, st("RssAnon"), p[0], p[3*P]);
    for (int i = 3; i < 8; i++) p[i*P] = 1;
    mlock(p + 4*P, P);
    errno = 0; r = madvise(p + 3*P, 3*P, MADV_DONTNEED);
    printf("dontneed over mlocked rc=%d errno=%d p[3P]=%d p[5P]=%d RssAnon=%ld\n", r, errno, p[3*P], p[5*P], st("RssAnon"));
    errno = 0; r = madvise(p + 3*P, 0, MADV_DONTNEED); printf("len 0 rc=%d errno=%d\n", r, errno);
    errno = 0; r = madvise(p + 3*P + 1, P, MADV_DONTNEED); printf("unaligned rc=%d errno=%d\n", r, errno);
    errno = 0; r = madvise(p + 3*P, P + 1, MADV_DONTNEED); printf("len P+1 rc=%d errno=%d p[4P]=%d\n", r, errno, p[4*P]);
    errno = 0; r = madvise(p + 3*P, P, 12345); printf("bad advice rc=%d errno=%d\n", r, errno);
    errno = 0; r = madvise((void*)0x300000000000L, P, MADV_DONTNEED); printf("all unmapped rc=%d errno=%d\n", r, errno);
    char *s = mmap(NULL, 4*P, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < 4; i++) s[i*P] = 7;
    printf("shmem written RssShmem=%ld\n", st("RssShmem"));
    r = madvise(s, 4*P, MADV_DONTNEED);
    printf("shmem dontneed rc=%d RssShmem=%ld s[0]=%d RssShmem=%ld\n", r, st("RssShmem"), s[0], st("RssShmem"));
    return 0;
}
