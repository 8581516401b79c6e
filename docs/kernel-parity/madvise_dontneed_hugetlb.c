// madvise(MADV_DONTNEED) on MAP_HUGETLB memory, private (no argument) or shared (any argument):
// the pool's free and reserved pages at each step. Needs nr_hugepages >= 4. Output: madvise_dontneed.out.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
static void meminfo(const char *when) {
    FILE *f = fopen("/proc/meminfo", "r"); char l[256]; long fr=-1, rs=-1;
    while (fgets(l, sizeof l, f)) { if (!strncmp(l,"HugePages_Free:",15)) fr=atol(l+15); if (!strncmp(l,"HugePages_Rsvd:",15)) rs=atol(l+15); }
    fclose(f); printf("%-28s free=%ld rsvd=%ld\n", when, fr, rs);
}
int main(int argc, char **argv) {
    int shared = argc > 1;
    size_t H = 2UL << 20;
    meminfo("start");
    char *p = mmap(NULL, 4*H, PROT_READ|PROT_WRITE, (shared ? MAP_SHARED : MAP_PRIVATE)|MAP_ANONYMOUS|MAP_HUGETLB, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    meminfo("mmap 4");
    p[0] = 1; p[H] = 2;
    meminfo("write 2");
    int r = madvise(p, H, MADV_DONTNEED);
    printf("dontneed rc=%d p[0] after: ", r); meminfo("dontneed page 0");
    printf("read p[0]=%d\n", p[0]); meminfo("read page 0 again");
    r = madvise(p + 4096, H, MADV_DONTNEED); printf("unaligned start rc=%d\n", r);
    r = madvise(p + H, H + 4096, MADV_DONTNEED); printf("unaligned len rc=%d p[H]=%d\n", r, p[H]);
    meminfo("after");
    munmap(p, 4*H); meminfo("munmap");
    return 0;
}
