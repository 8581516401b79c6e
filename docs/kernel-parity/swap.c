// Measures what the running kernel reports when private anonymous memory is swapped out with
// MADV_PAGEOUT and read back: minor and major faults (getrusage), RssAnon, VmSwap and VmPTE
// (/proc/self/status), and the /proc/vmstat events pswpout, pswpin, swpout_zero, swpin_zero,
// swap_ra, swap_ra_hit, thp_swpout, thp_swpout_fallback, thp_split_page. Needs swap: as root, e.g.
//   dd if=/dev/zero of=/var/tmp/kp-swapfile bs=1M count=64 && chmod 600 /var/tmp/kp-swapfile &&
//   mkswap /var/tmp/kp-swapfile && swapon /var/tmp/kp-swapfile
// then build and run: cc -O1 -o swap swap.c && ./swap (output: swap.out), and afterwards
//   swapoff /var/tmp/kp-swapfile && rm /var/tmp/kp-swapfile
// Layouts (each 4 MiB, 2 MiB-aligned, at its own 512 GiB-aligned address; every 4 KiB page written
// with a non-zero byte, so that it is not a zero-filled page that swap keeps without I/O):
// 4k (MADV_NOHUGEPAGE: 1024 small pages), thp (MADV_HUGEPAGE: two PMD-mapped THPs) and zero
// (MADV_NOHUGEPAGE, each page written with 1 and then 0, so all-zero pages); each then MADV_PAGEOUT
// of all 4 MiB, then a read of one byte per 4 KiB in address order.
// Output: one line per step ("x.write", "x.pageout", "x.read"), "name minflt majflt rss_anon_kib
// swap_kib pte_kib pswpout pswpin swpout_zero swpin_zero swap_ra swap_ra_hit thp_swpout
// thp_swpout_fallback thp_split_page ok rc"; minflt, majflt and the events are deltas over the step,
// RssAnon, VmSwap and VmPTE deltas from before the layout's mmap. ok: 1 if every byte read back is
// the one written. rc: 0 or -errno of madvise. vm.page-cluster=3 and VMA-based swap readahead
// (/sys/kernel/mm/swap/vma_ra_enabled) decide how many pages one major fault reads.
// Measured with a 64 MiB swapfile on ext4 on a rotational virtio disk, zswap off. Stable over 6 runs
// except: swap_ra_hit of 4k.read and thp.read (0 to ~500), and the major/minor split of zero.read
// (majflt 129 to 131, minflt and swap_ra and swap_ra_hit 1024 minus that). MADV_PAGEOUT leaves the
// written-out pages in the swap cache, so reading them right back takes minor faults and no pswpin;
// a real swap-in needs memory pressure (no memory cgroup of our own here to use memory.reclaim).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif
#define P 4096L
#define M (2L << 20)
#define NEV 9
static const char *ev_names[NEV] = {"pswpout", "pswpin", "swpout_zero", "swpin_zero", "swap_ra", "swap_ra_hit",
                                    "thp_swpout", "thp_swpout_fallback", "thp_split_page"};

struct snap { long flt, majflt, anon, swap, pte, ev[NEV]; };

static long status_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, n) == 0 && line[n] == ':') v = strtol(line + n + 1, NULL, 10);
    }
    if (f) fclose(f);
    return v;
}

static void vmstat(long *ev) {
    FILE *f = fopen("/proc/vmstat", "r");
    char k[128];
    long v;
    while (f && fscanf(f, "%127s %ld", k, &v) == 2) {
        for (int i = 0; i < NEV; i++) {
            if (strcmp(k, ev_names[i]) == 0) ev[i] = v;
        }
    }
    if (f) fclose(f);
}

static void faults(struct snap *s) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    s->flt = u.ru_minflt;
    s->majflt = u.ru_majflt;
}

// The fault counts are taken last before a step and first after it.
static void take(struct snap *s, int faults_first) {
    if (faults_first) faults(s);
    s->anon = status_kib("RssAnon");
    s->swap = status_kib("VmSwap");
    s->pte = status_kib("VmPTE");
    vmstat(s->ev);
    if (!faults_first) faults(s);
}

static void before(struct snap *s) { take(s, 0); }
static void after(struct snap *s) { take(s, 1); }

static void line(const char *name, struct snap *base, struct snap *s0, struct snap *s1, int ok, long rc) {
    printf("%s %ld %ld %ld %ld %ld", name, s1->flt - s0->flt, s1->majflt - s0->majflt, s1->anon - base->anon,
           s1->swap - base->swap, s1->pte - base->pte);
    for (int i = 0; i < NEV; i++) printf(" %ld", s1->ev[i] - s0->ev[i]);
    printf(" %d %ld\n", ok, rc);
    fflush(stdout);
}

// As in thp.c: make the program's own pages present and run the measurement once first.
static char outbuf[1 << 16];
static char mapsbuf[1 << 16];
static void warm_up(void) {
    struct snap s0, s1;
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    before(&s0);
    after(&s1);
    int fd = open("/proc/self/maps", O_RDONLY);
    long n = 0, k;
    while (fd >= 0 && (k = read(fd, mapsbuf + n, sizeof mapsbuf - 1 - n)) > 0) n += k;
    if (fd >= 0) close(fd);
    mapsbuf[n] = 0;
    for (char *l = mapsbuf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(l, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r') continue;
        char *e = strchr(l, '\n');
        if (strstr(l, "[v") && (!e || strstr(l, "[v") < e)) continue; // [vvar], [vdso], [vsyscall]
        madvise((void *) lo, hi - lo, perms[1] == 'w' && perms[3] == 'p' ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
    }
}

static void layout(const char *name, long i, int advice, int zero) {
    char n[64];
    struct snap b, s0, s1;
    char *at = (char *) (0x100000000000L + i * 0x8000000000L);
    before(&b);
    char *p = mmap(at, 2 * M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
                   -1, 0);
    if (p != at) {
        perror("mmap");
        exit(1);
    }
    madvise(p, 2 * M, advice);
    for (long o = 0; o < 2 * M; o += P) p[o] = 1 + (o / P) % 127;
    if (zero) {
        for (long o = 0; o < 2 * M; o += P) p[o] = 0;
    }
    after(&s1);
    snprintf(n, sizeof n, "%s.write", name);
    line(n, &b, &b, &s1, 1, 0);
    before(&s0);
    long rc = madvise(p, 2 * M, MADV_PAGEOUT) < 0 ? -errno : 0;
    after(&s1);
    snprintf(n, sizeof n, "%s.pageout", name);
    line(n, &b, &s0, &s1, 1, rc);
    int ok = 1;
    before(&s0);
    for (long o = 0; o < 2 * M; o += P) {
        if (p[o] != (zero ? 0 : 1 + (o / P) % 127)) ok = 0;
    }
    after(&s1);
    snprintf(n, sizeof n, "%s.read", name);
    line(n, &b, &s0, &s1, ok, 0);
    munmap(p, 2 * M);
}

int main(void) {
    warm_up();
    layout("4k", 0, MADV_NOHUGEPAGE, 0);
    layout("thp", 1, MADV_HUGEPAGE, 0);
    layout("zero", 2, MADV_NOHUGEPAGE, 1);
    return 0;
}
