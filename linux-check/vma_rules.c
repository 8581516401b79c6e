/*
 * What the running Linux kernel does for the layouts vmcore's tests build, so that vmcore's
 * answers can be compared with the real ones (see docs/TESTING.md). Each check prints one line
 * "name: result". Build and run: linux-check/run.sh
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL

/* The number of VMAs of /proc/self/maps that meet [start, end). */
static int vmas_in(uintptr_t start, uintptr_t end) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        uintptr_t a, b;
        if (sscanf(line, "%lx-%lx", &a, &b) == 2 && a < end && b > start) {
            n++;
        }
    }
    fclose(f);
    return n;
}

static char *map_at(uintptr_t at, size_t len, int prot) {
    void *p = mmap((void *) at, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return p;
}

static sigjmp_buf jump;

static void on_segv(int sig) {
    (void) sig;
    siglongjmp(jump, 1);
}

int main(void) {
    uintptr_t base = 0x100000000UL;

    /* vma_merge after a fault: a faulted anonymous VMA and a fresh neighbour with the same flags. */
    char *a = map_at(base, 4 * PAGE, PROT_READ | PROT_WRITE);
    a[0] = 1; /* anon_vma_prepare */
    map_at(base + 4 * PAGE, 4 * PAGE, PROT_READ | PROT_WRITE);
    printf("fresh neighbour of a faulted anonymous VMA: %d VMA(s)\n", vmas_in(base, base + 8 * PAGE));
    munmap(a, 8 * PAGE);

    /* Neighbours of different protection, both faulted, then made equal by mprotect. */
    a = map_at(base, 4 * PAGE, PROT_READ | PROT_WRITE);
    char *b = map_at(base + 4 * PAGE, 4 * PAGE, PROT_READ);
    a[0] = 1;
    (void) *(volatile char *) b;
    mprotect(b, 4 * PAGE, PROT_READ | PROT_WRITE);
    b[0] = 1;
    mprotect(b, 4 * PAGE, PROT_READ);
    (void) *(volatile char *) b;
    int before = vmas_in(base, base + 8 * PAGE);
    mprotect(b, 4 * PAGE, PROT_READ | PROT_WRITE);
    printf("faulted neighbours rw- and r--, then mprotect to rw-: %d VMA(s) before, %d after\n", before,
           vmas_in(base, base + 8 * PAGE));
    munmap(a, 8 * PAGE);

    /* mprotect with the protection the VMA already has (mprotect_fixup returns early). */
    a = map_at(base, 8 * PAGE, PROT_READ | PROT_WRITE);
    a[0] = 1;
    mprotect(a + 2 * PAGE, 2 * PAGE, PROT_READ | PROT_WRITE);
    printf("mprotect of the middle with the same protection: %d VMA(s)\n", vmas_in(base, base + 8 * PAGE));
    munmap(a, 8 * PAGE);

    /* A forked child's VMA and a fresh neighbour. */
    a = map_at(base, 4 * PAGE, PROT_READ | PROT_WRITE);
    a[0] = 1;
    fflush(stdout); /* the child must not print the parent's buffered lines again */
    pid_t pid = fork();
    if (pid == 0) {
        a[PAGE] = 2;
        char *fresh = map_at(base + 4 * PAGE, 4 * PAGE, PROT_READ | PROT_WRITE);
        fresh[0] = 3;
        printf("forked child's faulted VMA and a fresh faulted neighbour: %d VMA(s)\n", vmas_in(base, base + 8 * PAGE));
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    munmap(a, 4 * PAGE);

    /* TASK_SIZE_MAX: the last page below 2^47 cannot be mapped. */
    uintptr_t last = (1UL << 47) - PAGE;
    void *p = mmap((void *) last, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    printf("MAP_FIXED_NOREPLACE of the page at 2^47-4096: %s\n", p == MAP_FAILED ? strerror(errno) : "mapped");
    p = mmap((void *) (last - PAGE), PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    printf("MAP_FIXED_NOREPLACE of the page at 2^47-8192: %s\n", p == MAP_FAILED ? strerror(errno) : "mapped");
    if (p != MAP_FAILED) {
        munmap(p, PAGE);
    }
    p = mmap((void *) last, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("hint at 2^47-4096: %s\n", p == MAP_FAILED ? strerror(errno) : (uintptr_t) p == last ? "taken" : "ignored");

    /* A store that crosses into a read-only page faults before writing anything. */
    a = map_at(base, 2 * PAGE, PROT_READ | PROT_WRITE);
    memset(a, 0x11, 2 * PAGE);
    mprotect(a + PAGE, PAGE, PROT_READ);
    signal(SIGSEGV, on_segv);
    int faulted = 0;
    if (sigsetjmp(jump, 1) == 0) {
        *(volatile uint64_t *) (a + PAGE - 4) = 0x2222222222222222UL;
    } else {
        faulted = 1;
    }
    printf("8-byte store across into a read-only page: %s, first half %s\n", faulted ? "SIGSEGV" : "no fault",
           a[PAGE - 4] == 0x11 ? "unwritten" : "written");
    return 0;
}
