// Measures what the running kernel reports for read and write faults of private anonymous
// memory: minor faults (getrusage), RssAnon and VmPTE (/proc/self/status), and whether the
// pages read share one physical frame (/proc/self/pagemap needs root for PFNs; otherwise the
// column is "?"). Build and run: cc -O1 -o zero_page zero_page.c && ./zero_page
// Output: one line per layout, "name minflt rss_anon_kib pte_kib same_pfn". The Java test
// KernelParityTest replays the same layouts in vmcore and compares.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

static long status_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
        }
    }
    if (f) fclose(f);
    return v;
}

static long minflt(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_minflt;
}

static uint64_t pfn_of(void *p) {
    int fd = open("/proc/self/pagemap", O_RDONLY);
    uint64_t e = 0;
    if (fd >= 0) {
        pread(fd, &e, 8, ((uintptr_t) p / 4096) * 8);
        close(fd);
    }
    return (e >> 63) ? (e & ((1ULL << 55) - 1)) : 0;
}

#define PAGES 256

// Each layout at its own 512 GiB-aligned address, so that it needs a PUD, a PMD and a PTE table
// of its own (VmPTE counts all three: 12 KiB).
static void layout(const char *name, char *at, int reads, int writes) {
    char *p = mmap(at, PAGES * 4096L, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
                   | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != at) {
        perror("mmap");
        exit(1);
    }
    madvise(p, PAGES * 4096L, MADV_NOHUGEPAGE);
    long rss0 = status_kib("RssAnon"), pte0 = status_kib("VmPTE"), flt0 = minflt();
    volatile char sink = 0;
    for (int i = 0; i < PAGES; i++) {
        if (reads) sink += p[i * 4096L];
    }
    for (int i = 0; i < PAGES; i++) {
        if (writes) p[i * 4096L] = 1;
    }
    long flt = minflt() - flt0, rss = status_kib("RssAnon") - rss0, pte = status_kib("VmPTE") - pte0;
    uint64_t a = pfn_of(p), b = pfn_of(p + 4096);
    const char *same = a == 0 ? "?" : (a == b ? "yes" : "no");
    printf("%s %ld %ld %ld %s\n", name, flt, rss, pte, same);
    munmap(p, PAGES * 4096L);
    (void) sink;
}

int main(void) {
    layout("read", (char *) 0x100000000000L, 1, 0);
    layout("write", (char *) 0x108000000000L, 0, 1);
    layout("read_then_write", (char *) 0x110000000000L, 1, 1);
    return 0;
}
