// Measures what the running kernel reports for transparent huge pages (THP) of private anonymous
// memory, with THP in "madvise" mode and use_zero_page=1: minor faults (getrusage), AnonHugePages
// and Rss (/proc/self/smaps_rollup), RssAnon and VmPTE (/proc/self/status), the /proc/vmstat
// events thp_fault_alloc, thp_fault_fallback, thp_split_pmd, thp_split_page, thp_collapse_alloc,
// thp_deferred_split_page, thp_zero_page_alloc, and how each 2 MiB piece of the region is mapped
// (PAGEMAP_SCAN ioctl on /proc/self/pagemap for "PMD-mapped" and "zero pfn", and the PFNs from
// /proc/self/pagemap with the THP bit of /proc/kpageflags for "belongs to a THP"; needs root).
// Build and run as root: cc -O1 -o thp thp.c && ./thp (output: thp.out).
// The layout anon_always_write switches /sys/kernel/mm/transparent_hugepage/enabled to "always"
// for the one write and puts "madvise" back (also at exit).
// Output: one line per step, "name minflt anon_huge_kib rss_kib rss_anon_kib pte_kib fault_alloc
// fault_fallback split_pmd split_page collapse_alloc deferred_split zero_page_alloc map rc", where
// a layout "x" of several steps prints "x.step" lines. minflt and the seven vmstat events are
// deltas over that step; AnonHugePages, Rss, RssAnon and VmPTE are deltas from the state before
// the layout's mmap (so they describe the state after the step; for fork_cow.child_write they are
// deltas over the child's write alone). VmPTE counts PUD, PMD and PTE tables, and each layout is at
// its own 512 GiB-aligned address so that it needs a PUD and a PMD table of its own (8 KiB).
// map: for each 2 MiB piece from the reported address, comma-separated, "none" (nothing present),
// "pmd" (PMD-mapped THP: PAGE_IS_HUGE, 512 contiguous 2 MiB-aligned PFNs, kpageflags THP),
// "hzp" (PMD-mapped huge zero page), or "pte<present>" followed by "+thp<n>" when n of those pages
// belong to a THP folio and "+zero<n>" when n map the 4 KiB zero page. rc: return value of the
// step's call, 0 or -errno (mmap/write steps: 0). The vmstat events are system-wide, so another
// process using THP at the same moment would disturb them.
// Stable over 8 runs: all values, except thp_zero_page_alloc of anon_madvise_read, which is 1 only in
// the first run after boot (or after the shrinker freed the huge zero page) and 0 afterwards. The
// minflt of fork_cow.parent_after_child (5) is the parent's own copy-on-write faults on its stack,
// heap and stdio after fork, not a THP value (the parent does not touch the region in that step).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
// <linux/fs.h> of Linux 6.7 and later (the installed headers may be older)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
struct page_region { uint64_t start, end, categories; };
struct pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask,
        category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)

#define P 4096L
#define M (2L << 20)
#define NEV 7
static const char *ev_names[NEV] = {"thp_fault_alloc", "thp_fault_fallback", "thp_split_pmd", "thp_split_page",
                                    "thp_collapse_alloc", "thp_deferred_split_page", "thp_zero_page_alloc"};

struct snap { long flt, ahp, rss, anon, pte, ev[NEV]; };

static long file_kib(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
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

static long minflt(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_minflt;
}

// The minor fault count is taken last before a step and first after it, so that the faults of
// reading the /proc files are not counted.
static void take(struct snap *s, int flt_first) {
    if (flt_first) s->flt = minflt();
    s->ahp = file_kib("/proc/self/smaps_rollup", "AnonHugePages");
    s->rss = file_kib("/proc/self/smaps_rollup", "Rss");
    s->anon = file_kib("/proc/self/status", "RssAnon");
    s->pte = file_kib("/proc/self/status", "VmPTE");
    vmstat(s->ev);
    if (!flt_first) s->flt = minflt();
}

static void before(struct snap *s) { take(s, 0); }
static void after(struct snap *s) { take(s, 1); }

// How the 2 MiB at p are mapped (see the header comment).
static void map_state(char *p, char *out, size_t len) {
    static struct page_region vec[512];
    static uint64_t pm[512];
    int fd = open("/proc/self/pagemap", O_RDONLY), kfd = open("/proc/kpageflags", O_RDONLY);
    struct pm_scan_arg a = {.size = sizeof a, .start = (uintptr_t) p, .end = (uintptr_t) p + M,
                            .vec = (uintptr_t) vec, .vec_len = 512,
                            .return_mask = PAGE_IS_PRESENT | PAGE_IS_PFNZERO | PAGE_IS_HUGE};
    long n = fd < 0 ? -1 : ioctl(fd, PAGEMAP_SCAN, &a);
    int present = 0, huge = 0, zero = 0, thp = 0, contiguous = 1;
    for (long i = 0; i < n; i++) {
        int pages = (vec[i].end - vec[i].start) / P;
        if (vec[i].categories & PAGE_IS_PRESENT) present += pages;
        if (vec[i].categories & PAGE_IS_HUGE) huge += pages;
        if (vec[i].categories & PAGE_IS_PFNZERO) zero += pages;
    }
    if (fd >= 0) pread(fd, pm, sizeof pm, ((uintptr_t) p / P) * 8);
    uint64_t pfn0 = pm[0] & ((1ULL << 55) - 1);
    for (int i = 0; i < 512; i++) {
        uint64_t pfn = pm[i] & ((1ULL << 55) - 1), flags = 0;
        if (!(pm[i] >> 63) || pfn != pfn0 + i || pfn0 % 512 != 0) contiguous = 0;
        if ((pm[i] >> 63) && kfd >= 0 && pread(kfd, &flags, 8, pfn * 8) == 8 && (flags >> 22 & 1)) thp++;
    }
    if (fd >= 0) close(fd);
    if (kfd >= 0) close(kfd);
    if (n < 0) snprintf(out, len, "?");
    else if (present == 0) snprintf(out, len, "none");
    else if (huge == 512 && zero == 512) snprintf(out, len, "hzp");
    else if (huge == 512) snprintf(out, len, contiguous && thp == 512 ? "pmd" : "pmd?");
    else {
        int k = snprintf(out, len, "pte%d", present);
        if (thp) k += snprintf(out + k, len - k, "+thp%d", thp);
        if (zero) snprintf(out + k, len - k, "+zero%d", zero);
    }
}

static void format(char *buf, size_t len, const char *name, struct snap *base, struct snap *s0, struct snap *s1,
                   char *p, int pieces, long rc) {
    int k = snprintf(buf, len, "%s %ld %ld %ld %ld %ld", name, s1->flt - s0->flt, s1->ahp - base->ahp,
                     s1->rss - base->rss, s1->anon - base->anon, s1->pte - base->pte);
    for (int i = 0; i < NEV; i++) k += snprintf(buf + k, len - k, " %ld", s1->ev[i] - s0->ev[i]);
    k += snprintf(buf + k, len - k, " ");
    for (int i = 0; i < pieces; i++) {
        char m[64];
        map_state(p + i * M, m, sizeof m);
        k += snprintf(buf + k, len - k, "%s%s", i ? "," : "", m);
    }
    if (pieces == 0) k += snprintf(buf + k, len - k, "-");
    snprintf(buf + k, len - k, " %ld\n", rc);
}

static void line(const char *name, struct snap *base, struct snap *s0, struct snap *s1, char *p, int pieces,
                 long rc) {
    char buf[512];
    format(buf, sizeof buf, name, base, s0, s1, p, pieces, rc);
    fputs(buf, stdout);
    fflush(stdout);
}

static char *region(long i, long offset, long len, int advice) {
    char *at = (char *) (0x100000000000L + i * 0x8000000000L + offset);
    char *p = mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
                   -1, 0);
    if (p != at) {
        perror("mmap");
        exit(1);
    }
    if (advice >= 0) madvise(p, len, advice);
    return p;
}

static long rc_of(long r) { return r < 0 ? -errno : r; }

static void set_enabled(const char *mode) {
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "w");
    if (f) {
        fputs(mode, f);
        fclose(f);
    }
}

static void restore_madvise(void) { set_enabled("madvise"); }

static volatile char sink;

// Before the first layout: every page the program already maps is made present (file pages read,
// private writable pages written), the measurement runs once, and stdout gets a static buffer, so
// that the steps do not count faults or Rss of the program's own text, data, heap and stack.
static char outbuf[1 << 16];
static char mapsbuf[1 << 16];
static void warm_up(void) {
    struct snap s0, s1;
    char buf[512];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    before(&s0);
    after(&s1);
    format(buf, sizeof buf, "warm_up", &s0, &s0, &s1, (char *) ((uintptr_t) outbuf & ~(M - 1)), 1, 0);
    set_enabled("madvise");
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

int main(void) {
    struct snap b, s0, s1;
    char *p, *q;
    long i = 0, r;

    warm_up();
    // 1. 4 MiB, MADV_HUGEPAGE, one write per 2 MiB
    before(&b);
    p = region(i++, 0, 2 * M, MADV_HUGEPAGE);
    p[0] = 1;
    p[M] = 1;
    after(&s1);
    line("anon_madvise_write", &b, &b, &s1, p, 2, 0);

    // 2. 4 MiB without MADV_HUGEPAGE, one write per 4 KiB
    before(&b);
    p = region(i++, 0, 2 * M, -1);
    for (long o = 0; o < 2 * M; o += P) p[o] = 1;
    after(&s1);
    line("anon_nomadvise_write", &b, &b, &s1, p, 2, 0);

    // 3. 4 MiB, MADV_HUGEPAGE, one read per 2 MiB
    before(&b);
    p = region(i++, 0, 2 * M, MADV_HUGEPAGE);
    sink += p[0];
    sink += p[M];
    after(&s1);
    line("anon_madvise_read", &b, &b, &s1, p, 2, 0);

    // 4. as 3, then write the first 2 MiB once, then read each 4 KiB of it
    before(&b);
    p = region(i++, 0, 2 * M, MADV_HUGEPAGE);
    sink += p[0];
    sink += p[M];
    after(&s1);
    line("anon_madvise_read_then_write.read", &b, &b, &s1, p, 2, 0);
    before(&s0);
    p[0] = 1;
    after(&s1);
    line("anon_madvise_read_then_write.write", &b, &s0, &s1, p, 2, 0);
    before(&s0);
    for (long o = 0; o < M; o += P) sink += p[o];
    after(&s1);
    line("anon_madvise_read_then_write.reads", &b, &s0, &s1, p, 2, 0);

    // 5. 2 MiB THP, munmap 4 KiB in the middle
    before(&b);
    p = region(i++, 0, M, MADV_HUGEPAGE);
    p[0] = 1;
    after(&s1);
    line("partial_munmap.write", &b, &b, &s1, p, 1, 0);
    before(&s0);
    r = rc_of(munmap(p + M / 2, P));
    after(&s1);
    line("partial_munmap", &b, &s0, &s1, p, 1, r);

    // 6. 2 MiB THP, mprotect PROT_READ 4 KiB in the middle
    before(&b);
    p = region(i++, 0, M, MADV_HUGEPAGE);
    p[0] = 1;
    after(&s1);
    line("partial_mprotect.write", &b, &b, &s1, p, 1, 0);
    before(&s0);
    r = rc_of(mprotect(p + M / 2, P, PROT_READ));
    after(&s1);
    line("partial_mprotect", &b, &s0, &s1, p, 1, r);

    // 7. 2 MiB THP, MADV_DONTNEED all of it / 4 KiB of it
    before(&b);
    p = region(i++, 0, M, MADV_HUGEPAGE);
    p[0] = 1;
    after(&s1);
    line("dontneed_whole.write", &b, &b, &s1, p, 1, 0);
    before(&s0);
    r = rc_of(madvise(p, M, MADV_DONTNEED));
    after(&s1);
    line("dontneed_whole", &b, &s0, &s1, p, 1, r);
    before(&b);
    p = region(i++, 0, M, MADV_HUGEPAGE);
    p[0] = 1;
    after(&s1);
    line("dontneed_partial.write", &b, &b, &s1, p, 1, 0);
    before(&s0);
    r = rc_of(madvise(p + M / 2, P, MADV_DONTNEED));
    after(&s1);
    line("dontneed_partial", &b, &s0, &s1, p, 1, r);

    // 8. 2 MiB THP, fork; the child writes one byte and reports through a pipe; then the parent
    // writes one byte
    before(&b);
    p = region(i++, 0, M, MADV_HUGEPAGE);
    p[0] = 1;
    after(&s1);
    line("fork_cow.write", &b, &b, &s1, p, 1, 0);
    int fds[2];
    pipe(fds);
    before(&s0);
    pid_t pid = fork();
    if (pid == 0) {
        struct snap c0, c1;
        char buf[512];
        before(&c0); // once to take the copy-on-write faults of the measurement itself
        before(&c0);
        p[P] = 2;
        after(&c1);
        format(buf, sizeof buf, "fork_cow.child_write", &c0, &c0, &c1, p, 1, 0);
        write(fds[1], buf, strlen(buf));
        _exit(0);
    }
    close(fds[1]);
    char cbuf[512];
    ssize_t cn = read(fds[0], cbuf, sizeof cbuf - 1);
    close(fds[0]);
    waitpid(pid, NULL, 0);
    after(&s1);
    cbuf[cn > 0 ? cn : 0] = 0;
    fputs(cbuf, stdout);
    line("fork_cow.parent_after_child", &b, &s0, &s1, p, 1, pid > 0 ? 0 : -errno);
    before(&s0);
    before(&s0);
    p[2 * P] = 3;
    after(&s1);
    line("fork_cow.parent_write", &b, &s0, &s1, p, 1, 0);

    // 9. 2 MiB, MADV_NOHUGEPAGE, write each 4 KiB, then MADV_HUGEPAGE and MADV_COLLAPSE
    before(&b);
    p = region(i++, 0, M, MADV_NOHUGEPAGE);
    for (long o = 0; o < M; o += P) p[o] = 1;
    after(&s1);
    line("collapse.write", &b, &b, &s1, p, 1, 0);
    before(&s0);
    madvise(p, M, MADV_HUGEPAGE);
    r = rc_of(madvise(p, M, MADV_COLLAPSE));
    after(&s1);
    line("collapse", &b, &s0, &s1, p, 1, r);

    // 10. 4 MiB starting 1 MiB past a 2 MiB boundary, MADV_HUGEPAGE, write each 4 KiB
    // (map: the one whole 2 MiB-aligned piece inside)
    before(&b);
    p = region(i++, M / 2, 2 * M, MADV_HUGEPAGE);
    for (long o = 0; o < 2 * M; o += P) p[o] = 1;
    after(&s1);
    line("unaligned", &b, &b, &s1, p + M / 2, 1, 0);

    // 11. 2 MiB THP, mremap(MAYMOVE|FIXED) to a 2 MiB-aligned target / 4 KiB past one (in the same
    // PMD table; map: the 2 MiB at the target)
    before(&b);
    p = region(i++, 0, M, MADV_HUGEPAGE);
    p[0] = 1;
    after(&s1);
    line("mremap_aligned.write", &b, &b, &s1, p, 1, 0);
    before(&s0);
    q = mremap(p, M, M, MREMAP_MAYMOVE | MREMAP_FIXED, p + 2 * M);
    r = q == MAP_FAILED ? -errno : 0;
    after(&s1);
    line("mremap_aligned", &b, &s0, &s1, p + 2 * M, 1, r);
    before(&b);
    p = region(i++, 0, M, MADV_HUGEPAGE);
    p[0] = 1;
    after(&s1);
    line("mremap_unaligned.write", &b, &b, &s1, p, 1, 0);
    before(&s0);
    q = mremap(p, M, M, MREMAP_MAYMOVE | MREMAP_FIXED, p + 2 * M + P);
    r = q == MAP_FAILED ? -errno : 0;
    after(&s1);
    line("mremap_unaligned", &b, &s0, &s1, p + 2 * M + P, 1, r);

    // 12. 2 MiB THP, mprotect PROT_READ all of it
    before(&b);
    p = region(i++, 0, M, MADV_HUGEPAGE);
    p[0] = 1;
    after(&s1);
    line("mprotect_whole.write", &b, &b, &s1, p, 1, 0);
    before(&s0);
    r = rc_of(mprotect(p, M, PROT_READ));
    after(&s1);
    line("mprotect_whole", &b, &s0, &s1, p, 1, r);

    // 13. 2 MiB THP, munmap all of it
    before(&b);
    p = region(i++, 0, M, MADV_HUGEPAGE);
    p[0] = 1;
    after(&s1);
    line("munmap_whole.write", &b, &b, &s1, p, 1, 0);
    before(&s0);
    r = rc_of(munmap(p, M));
    after(&s1);
    line("munmap_whole", &b, &s0, &s1, p, 1, r);

    // 14. enabled=always for this one: 2 MiB without madvise, one write
    atexit(restore_madvise);
    before(&b);
    p = region(i++, 0, M, -1);
    set_enabled("always");
    before(&s0);
    p[0] = 1;
    after(&s1);
    set_enabled("madvise");
    line("anon_always_write", &b, &s0, &s1, p, 1, 0);
    return (int) sink * 0;
}
