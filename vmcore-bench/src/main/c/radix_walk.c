/*
 * Reference for WalkBench: a plain C walk of a 4-level x86-64 style radix tree (512-entry
 * tables of 64-bit entries, PFNs in bits 12..51) over 1 Mi mapped 4 KiB pages, in address
 * order and in a random order, bare and with the checks and record vmcore's Walker makes.
 * Build and run: vmcore-bench/run-c-reference.sh
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGES (1u << 20)
#define PFN_MASK 0x000ffffffffff000ull
#define PRESENT 1ull
#define TABLE_FLAGS 0x67ull

static uint64_t *phys;      /* simulated physical memory: frame i at phys + i * 512 */
static uint64_t next_frame; /* bump allocator of table frames */

static uint64_t alloc_table(void) { return next_frame++; }
static uint64_t *frame(uint64_t pfn) { return phys + pfn * 512; }

static void map(uint64_t root, uint64_t va, uint64_t pfn) {
    uint64_t table = root;
    for (int shift = 39; shift > 12; shift -= 9) {
        uint64_t *e = &frame(table)[(va >> shift) & 511];
        if (!(*e & PRESENT)) *e = (alloc_table() << 12) | TABLE_FLAGS;
        table = (*e & PFN_MASK) >> 12;
    }
    frame(table)[(va >> 12) & 511] = (pfn << 12) | 0x27; /* P RW US A */
}

static inline uint64_t walk(uint64_t root, uint64_t va) {
    uint64_t table = root, e = 0;
    for (int shift = 39; shift >= 12; shift -= 9) {
        e = frame(table)[(va >> shift) & 511];
        if (!(e & PRESENT)) return ~0ull;
        table = (e & PFN_MASK) >> 12;
    }
    return (e & PFN_MASK) | (va & 0xfff);
}

/*
 * The same walk doing what vmcore's Walker does on a successful user read: reserved-bit checks
 * per level (PS in the top level, physical-address bits above MAXPHYADDR 46), large leaves at
 * PUD and PMD, RW/USER accumulated (AND) and NX (OR), the user-permission check, a check that
 * every A bit is already set, and a record of every level's table and entry.
 */
struct result {
    uint64_t table[5], entry[5], pa, pfn, effective, slot;
    int level, ok;
};

#define PSE 0x80ull
#define USER 0x4ull
#define RW 0x2ull
#define ACCESSED 0x20ull
#define NX (1ull << 63)
#define PHYS_RESERVED (((1ull << 52) - 1) & ~((1ull << 46) - 1))

static const uint64_t table_reserved[5] = {PHYS_RESERVED | PSE, PHYS_RESERVED | PSE, PHYS_RESERVED, PHYS_RESERVED,
                                           PHYS_RESERVED};
static const uint64_t leaf_reserved[5] = {0, 0, PHYS_RESERVED | 0x3fffe000ull, PHYS_RESERVED | 0x1fe000ull,
                                          PHYS_RESERVED};
static const uint64_t leaf_offset[5] = {0, 0, (1ull << 30) - 1, (1ull << 21) - 1, (1ull << 12) - 1};

static inline int walk_full(uint64_t root, uint64_t va, struct result *out) {
    uint64_t table = root, e = 0, all = ~0ull, any = 0;
    int ord = 1;
    for (;;) {
        unsigned index = (va >> (48 - 9 * ord)) & 511;
        e = frame(table)[index];
        out->table[ord] = table;
        out->entry[ord] = e;
        int leaf = ord == 4 || (ord >= 2 && (e & PSE));
        if (!(e & PRESENT) || (e & (leaf ? leaf_reserved[ord] : table_reserved[ord]))) return out->ok = 0;
        all &= e;
        any |= e;
        if (leaf) break;
        table = (e & PFN_MASK) >> 12;
        ord++;
    }
    if ((all & (USER | ACCESSED)) != (USER | ACCESSED)) return out->ok = 0;
    out->ok = 1;
    out->level = ord;
    out->effective = (all & (RW | USER)) | (any & NX);
    out->pfn = (e & PFN_MASK & ~leaf_offset[ord]) >> 12;
    out->slot = (out->table[ord] << 12) + ((va >> (48 - 9 * ord)) & 511) * 8;
    out->pa = (out->pfn << 12) | (va & leaf_offset[ord]);
    out->table[0] = out->entry[0] = 0;
    return 1;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    size_t frames = PAGES / 512 + 64;
    phys = aligned_alloc(4096, frames * 4096);
    memset(phys, 0, frames * 4096);
    uint64_t root = alloc_table();
    const uint64_t base = 0x100000000000ull;
    for (uint64_t i = 0; i < PAGES; i++) map(root, base + (i << 12), i);
    uint64_t *order = malloc(PAGES * sizeof *order);
    srand(42);
    for (int pass = 0; pass < 2; pass++) {
        for (uint64_t i = 0; i < PAGES; i++) order[i] = base + (i << 12) + 0x18;
        if (pass == 1)
            for (uint64_t i = PAGES - 1; i > 0; i--) {
                uint64_t j = ((uint64_t) rand() << 16 ^ rand()) % (i + 1), t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        volatile uint64_t sink = 0;
        double best = 1e9, total = 0;
        for (int round = 0; round < 10; round++) {
            double t0 = now();
            uint64_t sum = 0;
            for (int rep = 0; rep < 8; rep++)
                for (uint64_t i = 0; i < PAGES; i++) sum += walk(root, order[i]);
            double ns = (now() - t0) * 1e9 / (8.0 * PAGES);
            sink += sum;
            total += ns;
            if (ns < best) best = ns;
        }
        printf("c radix walk, %s: %.2f ns/walk (mean of 10 rounds of 8 Mi walks; best %.2f)\n",
               pass ? "random" : "sequential", total / 10, best);
        struct result out;
        best = 1e9;
        total = 0;
        for (int round = 0; round < 10; round++) {
            double t0 = now();
            uint64_t sum = 0;
            for (int rep = 0; rep < 8; rep++)
                for (uint64_t i = 0; i < PAGES; i++) sum += walk_full(root, order[i], &out) ? out.pa : 0;
            double ns = (now() - t0) * 1e9 / (8.0 * PAGES);
            sink += sum;
            total += ns;
            if (ns < best) best = ns;
        }
        printf("c walk with vmcore's checks and record, %s: %.2f ns/walk (mean of 10 rounds of 8 Mi walks; best %.2f)\n",
               pass ? "random" : "sequential", total / 10, best);
    }
    return 0;
}
