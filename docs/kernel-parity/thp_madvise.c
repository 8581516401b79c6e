// MADV_COLD, MADV_PAGEOUT and MADV_FREE on a transparent huge page (THP in "madvise" mode, no swap
// device): which of them split it, what becomes lazy free and what is dropped. Each layout writes a
// fresh 2 MiB THP (MADV_HUGEPAGE, MAP_FIXED_NOREPLACE at its own 1 GiB step) and applies the advice
// to all of it ("whole"), to its first half ("partial"), or to its second half ("tail_half"); the
// "_shared" layouts do it while a forked child maps the THP too. A "x.y" line is a second step on the
// layout x; the "_pte_mapped" layouts first split the PMD of their THP with an mprotect of its
// first page and back, then collapse (MADV_COLLAPSE), free or cool the PTE-mapped THP. Output, one line per
// step: rc, then deltas over the step of AnonHugePages and RssAnon (kB, this process) and of the
// /proc/vmstat events thp_split_pmd, thp_split_page, thp_swpout_fallback, pglazyfree, pglazyfreed,
// thp_deferred_split_page, thp_collapse_alloc, then the bytes at offset 0
// and 1 MiB + 5 after the step (0 once dropped). The process runs on CPU 0 alone and drains that
// CPU's folio batches before each reading (pglazyfree is counted only when the batch drains); each
// layout unmaps the one before, so that khugepaged cannot collapse it back meanwhile. The vmstat
// events are system-wide, so another process using THP at the same moment would disturb them.
// Build and run: cc -O0 -o thp_madvise thp_madvise.c && ./thp_madvise (output: thp_madvise.out;
// Linux 6.18, the same in 6 runs).
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sched.h>
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#define MADV_COLD 20
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#define P 4096L
#define M (2L << 20)
static long kib(const char *path, const char *key) { FILE *f = fopen(path, "r"); char l[256]; long v=-1; size_t n=strlen(key);
  while (fgets(l, sizeof l, f)) if (!strncmp(l,key,n) && l[n]==':') v=atol(l+n+1); fclose(f); return v; }
static long vm(const char *key) { FILE *f = fopen("/proc/vmstat", "r"); char k[128]; long v, r=-1;
  while (fscanf(f, "%127s %ld", k, &v) == 2) if (!strcmp(k, key)) r = v; fclose(f); return r; }
#define NV 8
static const char *names[NV] = {"thp_split_pmd","thp_split_page","thp_swpout_fallback","pglazyfree","pglazyfreed","thp_deferred_split_page","thp_collapse_alloc","pgfault"};
struct s { long ahp, anon, ev[NV]; };
static char *scratch;
// lru_add_drain: MADV_PAGEOUT drains this CPU's folio batches, where pglazyfree waits to be counted
static void drain(void) { madvise(scratch, P, MADV_PAGEOUT); }
static void snap(struct s *s) { drain(); s->ahp = kib("/proc/self/smaps_rollup","AnonHugePages"); s->anon = kib("/proc/self/status","RssAnon");
  for (int i=0;i<NV;i++) s->ev[i]=vm(names[i]); }
static void show(const char *name, int rc, struct s *a, char *p) {
  struct s b; snap(&b);
  printf("%-22s rc=%d AnonHuge=%ld RssAnon=%ld", name, rc, b.ahp - a->ahp, b.anon - a->anon);
  for (int i=0;i<NV-1;i++) printf(" %s=%ld", names[i], b.ev[i]-a->ev[i]);
  printf(" p0=%d pmid=%d\n", p[0], p[M/2+5]);
}
static long base = 0x600000000000L;
static char *last;
// each layout in a fresh region; the one before goes, so that khugepaged cannot collapse it back meanwhile
static char *thp(void) {
  if (last) munmap(last, M);
  char *p = last = mmap((void*)base, M, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0);
  base += 1L << 30;
  madvise(p, M, MADV_HUGEPAGE);
  memset(p, 7, M);
  return p;
}
int main(void) {
  struct s a; char *p; int r;
  cpu_set_t one; CPU_ZERO(&one); CPU_SET(0, &one); sched_setaffinity(0, sizeof one, &one); // one CPU's batches
  scratch = mmap(NULL, P, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
  p = thp(); snap(&a); r = madvise(p, M, MADV_COLD); show("cold_whole", r, &a, p);
  p = thp(); snap(&a); r = madvise(p, M/2, MADV_COLD); show("cold_partial", r, &a, p);
  p = thp(); snap(&a); r = madvise(p, M, MADV_PAGEOUT); show("pageout_whole", r, &a, p);
  p = thp(); snap(&a); r = madvise(p, M/2, MADV_PAGEOUT); show("pageout_partial", r, &a, p);
  p = thp(); snap(&a); r = madvise(p, M, MADV_FREE); show("free_whole", r, &a, p);
  snap(&a); r = madvise(p, M, MADV_PAGEOUT); show("free_whole.pageout", r, &a, p);
  p = thp(); snap(&a); r = madvise(p, M, MADV_FREE); p[100] = 1; r |= madvise(p, M, MADV_PAGEOUT); show("free_write_pageout", r, &a, p);
  p = thp(); snap(&a); r = madvise(p, M/2, MADV_FREE); show("free_partial", r, &a, p);
  snap(&a); r = madvise(p, M, MADV_PAGEOUT); show("free_partial.pageout", r, &a, p);
  p = thp(); snap(&a); r = madvise(p + M/2, M/2, MADV_FREE); show("free_tail_half", r, &a, p);
  p = thp(); { pid_t c = fork(); if (c == 0) { pause(); _exit(0); }
    usleep(100000); snap(&a); r = madvise(p, M, MADV_FREE); show("free_whole_shared", r, &a, p);
    snap(&a); r = madvise(p, M, MADV_PAGEOUT); show("pageout_whole_shared", r, &a, p);
    snap(&a); r = madvise(p, M/2, MADV_FREE); show("free_partial_shared", r, &a, p);
    kill(c, 9); waitpid(c, NULL, 0); }
  p = thp(); mprotect(p, P, PROT_READ); mprotect(p, P, PROT_READ|PROT_WRITE); // the PMD split, the VMAs merged again
  snap(&a); r = madvise(p, M, MADV_COLLAPSE); show("collapse_pte_mapped", r, &a, p);
  p = thp(); mprotect(p, P, PROT_READ); mprotect(p, P, PROT_READ|PROT_WRITE);
  snap(&a); r = madvise(p, M, MADV_FREE); show("free_pte_mapped", r, &a, p);
  snap(&a); r = madvise(p, M, MADV_PAGEOUT); show("free_pte_mapped.pageout", r, &a, p);
  p = thp(); mprotect(p, P, PROT_READ); mprotect(p, P, PROT_READ|PROT_WRITE);
  snap(&a); r = madvise(p, M, MADV_COLD); show("cold_pte_mapped", r, &a, p);
  snap(&a); r = madvise(p, M, MADV_PAGEOUT); show("cold_pte_mapped.pageout", r, &a, p);
  return 0;
}
