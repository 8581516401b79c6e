package org.vmcore.x86.pgtable;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.internal.SharedSecrets;

/**
 * The walker's fast path must give exactly what its full walk gives. The reference walker is
 * made to take the full walk every time by a PKRU that only restricts key 15, which no entry
 * here uses; the walker under test has PKRU 0, so it takes the fast path wherever that applies.
 * Tables are corrupted at random (missing P, A or D, permissions, NX, reserved bits, PS where it
 * is reserved, low PFN bits of huge leaves), some tables lie outside the page-table window, and
 * walks start at the root or below it as after a paging-structure-cache hit.
 */
class FastWalkTest {
    private static final long MIB = 1L << 20;
    private static final int KEY_15_ACCESS_DISABLE = 1 << 30;
    private static final long[] CORRUPTIONS = {Pte.PRESENT, Pte.ACCESSED, Pte.DIRTY, Pte.RW, Pte.USER, Pte.NX, Pte.PSE,
        1L << 47, 1L << 13, 1L << 20};

    @ParameterizedTest
    @EnumSource(PagingMode.class)
    void theFastWalkGivesWhatTheFullWalkGives(PagingMode mode) {
        long first = Long.getLong("vmcore.seed", 1L);
        for (long seed = first; seed < first + 12; seed++) {
            try {
                run(mode, seed);
            } catch (AssertionError e) {
                throw new AssertionError("seed " + seed + " (rerun with -Dvmcore.seed=" + seed + "): " + e.getMessage(), e);
            }
        }
    }

    /**
     * The fast path must really serve the common case: a walk that the full walk would answer
     * without setting a bit, through tables in the window. (Giving up is always correct, since
     * the full walk then answers, so the comparison above cannot see a fast path that never
     * applies.)
     */
    @ParameterizedTest
    @EnumSource(PagingMode.class)
    void theFastPathServesWalksThatNeedNoUpdate(PagingMode mode) {
        try (PhysicalMemory memory = new PhysicalMemory(2048 * MIB)) {
            PageTable table = new PageTable(memory, mode, 0);
            long va4k = 0x7000_0000_1000L;
            long va2m = 0x7000_4000_0000L;
            long va1g = 0x7000_8000_0000L;
            long clean = Pte.PRESENT | Pte.RW | Pte.USER | Pte.ACCESSED | Pte.DIRTY;
            table.map(va4k, 100, PageSize.SIZE_4K, clean);
            table.map(va2m, 512 * 10, PageSize.SIZE_2M, clean);
            table.map(va1g, 1L << 18, PageSize.SIZE_1G, clean);
            Walker walker = new Walker(memory);
            WalkResult full = new WalkResult();
            WalkResult fast = new WalkResult();
            int root = Level.root(mode).ordinal();
            long cr3 = table.cr3() & Pte.PFN_MASK;
            for (long va : new long[] {va4k + 0x18, va2m + 0x12345, va1g + 0x1234_5678}) {
                for (int access : new int[] {0, PageFaultCode.USER, PageFaultCode.USER | PageFaultCode.WRITE,
                    PageFaultCode.USER | PageFaultCode.FETCH}) {
                    String what = String.format("access %s at 0x%x", PageFaultCode.describe(access), va);
                    assertThat(walker.walk(table, va, access, full)).as(what).isTrue(); // sets the upper levels' A bits
                    assertThat(walker.fastWalk(root, cr3, WalkResult.FROM_ROOT, va, access, fast)).as(what).isTrue();
                    assertSame(fast, full, what);
                }
            }
            // Below the root, as after a paging-structure-cache hit.
            assertThat(walker.walk(table, va4k, PageFaultCode.USER, full)).isTrue();
            assertThat(walker.fastWalk(Level.PMD.ordinal(), full.tablePfn(Level.PMD) << 12, Pte.USER, va4k,
                    PageFaultCode.USER, fast)).isTrue();
            assertThat(fast.effectiveBits()).isEqualTo(Pte.USER);
            // What the fast path must leave to the full walk.
            long leaf = table.raw().slot(va4k, Level.PTE);
            table.raw().compareAndSetSlot(leaf, table.raw().readSlot(leaf), clean & ~Pte.DIRTY);
            assertThat(walker.fastWalk(root, cr3, WalkResult.FROM_ROOT, va4k, PageFaultCode.WRITE, fast))
                    .as("a write that must set D").isFalse();
            assertThat(walker.fastWalk(root, cr3, WalkResult.FROM_ROOT, va4k, 0, fast)).as("a read needs no D").isTrue();
            long pmd = table.raw().slot(va4k, Level.PMD);
            table.raw().compareAndSetSlot(pmd, table.raw().readSlot(pmd), table.raw().readSlot(pmd) & ~Pte.RW);
            assertThat(walker.fastWalk(root, cr3, WalkResult.FROM_ROOT, va4k, 0, fast)).as("a read through a read-only PMD").isTrue();
            assertThat(walker.fastWalk(root, cr3, WalkResult.FROM_ROOT, va4k, PageFaultCode.WRITE, fast))
                    .as("a write through a read-only PMD faults").isFalse();
        }
    }

    private static void run(PagingMode mode, long seed) {
        Random random = new Random(seed);
        // Node 0 is small, so its window (32 frames) fills and later tables come from the buddy
        // allocator; node 1 holds the 1 GiB pages.
        try (PhysicalMemory memory = new PhysicalMemory(64 * MIB, 2048 * MIB)) {
            PageTable table = new PageTable(memory, mode, 0);
            long gigPfn = (64 * MIB >>> 12) + (1L << 18) - ((64 * MIB >>> 12) & ((1L << 18) - 1));
            long base = mode == PagingMode.FIVE_LEVEL ? 0x00f0_0000_0000_0000L : 0x7000_0000_0000L;
            List<Long> addresses = new ArrayList<>();
            List<PageSize> sizes = new ArrayList<>();
            for (int i = 0; i < 300; i++) {
                PageSize size = random.nextInt(10) < 7 ? PageSize.SIZE_4K : random.nextBoolean() ? PageSize.SIZE_2M : PageSize.SIZE_1G;
                long va = base + ((long) random.nextInt(16) << 39) + ((long) random.nextInt(8) << 30);
                if (size != PageSize.SIZE_1G) {
                    va += (long) random.nextInt(8) << 21;
                }
                if (size == PageSize.SIZE_4K) {
                    va += (long) random.nextInt(4) << 12;
                }
                long pfn = switch (size) {
                    case SIZE_4K -> 1 + random.nextInt(8000);
                    case SIZE_2M -> 512L * (1 + random.nextInt(20));
                    case SIZE_1G -> gigPfn;
                };
                long flags = Pte.PRESENT | (random.nextInt(4) > 0 ? Pte.USER : 0) | (random.nextInt(3) > 0 ? Pte.RW : 0)
                        | (random.nextInt(4) == 0 ? Pte.NX : 0) | (random.nextBoolean() ? Pte.ACCESSED : 0)
                        | (random.nextBoolean() ? Pte.DIRTY : 0);
                try {
                    table.map(va, pfn, size, flags);
                } catch (RuntimeException occupied) {
                    continue; // a slot already taken at some level: try another
                }
                addresses.add(va);
                sizes.add(size);
            }
            assertThat(SharedSecrets.pageTableFrames(memory).windows()[0].freeFrames()).as("some tables lie outside the window").isZero();
            // Corrupt some entries at every level (slots found first: a corrupted entry may hide those below it).
            List<Long> slots = new ArrayList<>();
            for (int k = 0; k < addresses.size(); k++) {
                for (int ord = Level.root(mode).ordinal(); ord <= Level.ofLeaf(sizes.get(k)).ordinal(); ord++) {
                    slots.add(table.raw().slot(addresses.get(k), Level.values()[ord]));
                }
            }
            for (int i = 0; i < 40; i++) {
                long slot = slots.get(random.nextInt(slots.size()));
                long e = table.raw().readSlot(slot);
                table.raw().compareAndSetSlot(slot, e, e ^ CORRUPTIONS[random.nextInt(CORRUPTIONS.length)]);
            }
            Walker fast = new Walker(memory);
            Walker full = new Walker(memory);
            full.setPkru(KEY_15_ACCESS_DISABLE);
            WalkResult want = new WalkResult();
            WalkResult got = new WalkResult();
            for (int step = 0; step < 3000; step++) {
                long va = addresses.get(random.nextInt(addresses.size())) + random.nextInt(4096);
                if (random.nextInt(50) == 0) {
                    va ^= 1L << 62; // non-canonical
                }
                int access = (random.nextBoolean() ? PageFaultCode.USER : 0) | (random.nextInt(3) == 0 ? PageFaultCode.WRITE : 0)
                        | (random.nextInt(5) == 0 ? PageFaultCode.FETCH : 0);
                String what = String.format("step %d: access %s at 0x%x", step, PageFaultCode.describe(access), va);
                // The full walk goes first, so that the A and D bits it sets let the fast walk succeed.
                boolean wantOk;
                boolean gotOk;
                if (random.nextInt(3) == 0 && full.walk(table, va, 0, want) && want.level() != Level.root(mode)) {
                    // Start below the root, as after a paging-structure-cache hit.
                    Level start = Level.values()[Level.root(mode).ordinal() + 1 + random.nextInt(
                            want.level().ordinal() - Level.root(mode).ordinal())];
                    long tablePfn = want.tablePfn(start);
                    long upper = random.nextBoolean() ? Pte.RW | Pte.USER : random.nextLong() & (Pte.RW | Pte.USER | Pte.NX);
                    what += " from " + start + " with upper bits 0x" + Long.toHexString(upper);
                    wantOk = full.walkFrom(mode, va, access, want, start, tablePfn, upper);
                    gotOk = fast.walkFrom(mode, va, access, got, start, tablePfn, upper);
                } else {
                    wantOk = full.walk(table, va, access, want);
                    gotOk = fast.walk(table, va, access, got);
                }
                assertThat(gotOk).as(what).isEqualTo(wantOk);
                assertSame(got, want, what);
            }
        }
    }

    private static void assertSame(WalkResult got, WalkResult want, String what) {
        assertThat(got.toString()).as(what).isEqualTo(want.toString());
        assertThat(got.faultCode()).as(what).isEqualTo(want.faultCode());
        assertThat(got.entry()).as(what).isEqualTo(want.entry());
        assertThat(got.level()).as(what).isEqualTo(want.level());
        assertThat(got.pageSize()).as(what).isEqualTo(want.pageSize());
        assertThat(got.physicalAddress()).as(what).isEqualTo(want.physicalAddress());
        assertThat(got.pagePfn()).as(what).isEqualTo(want.pagePfn());
        assertThat(got.effectiveBits()).as(what).isEqualTo(want.effectiveBits());
        assertThat(got.entrySlot()).as(what).isEqualTo(want.entrySlot());
        for (Level level : Level.values()) {
            assertThat(got.tablePfn(level)).as(what + " table at " + level).isEqualTo(want.tablePfn(level));
            assertThat(got.entryAt(level)).as(what + " entry at " + level).isEqualTo(want.entryAt(level));
        }
    }
}
