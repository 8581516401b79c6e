package org.vmcore.x86.tlb;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.Test;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PageSize;
import org.vmcore.api.TlbConfig;
import org.vmcore.x86.internal.L1Dtlb;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.pgtable.Pte;

class TlbTest {
    private static long value(long pfn) {
        return (pfn << 12) | Pte.PRESENT | Pte.USER | Pte.RW;
    }

    @Test
    void translationsAreTaggedByPcidAndSize() {
        Tlb tlb = new Tlb(TlbConfig.DEFAULT);
        tlb.insert(1, 0x4000_1000L, PageSize.SIZE_4K, value(7));
        tlb.insert(2, 0x4000_1000L, PageSize.SIZE_4K, value(8));
        tlb.insert(1, 0x8000_0000L, PageSize.SIZE_2M, value(0x200));
        assertThat(tlb.lookup(1, 0x4000_1fffL)).isEqualTo(value(7));
        assertThat(tlb.lastHitShift()).isEqualTo(12);
        assertThat(tlb.lookup(2, 0x4000_1000L)).isEqualTo(value(8));
        assertThat(tlb.lookup(3, 0x4000_1000L)).as("another PCID misses").isZero();
        assertThat(tlb.lookup(1, 0x801f_ffffL)).isEqualTo(value(0x200));
        assertThat(tlb.lastHitShift()).isEqualTo(21);
        assertThat(tlb.lookupSize(1, 0x8000_0000L)).isEqualTo(PageSize.SIZE_2M);
    }

    @Test
    void aFullSetEvictsRoundRobin() {
        Tlb tlb = new Tlb(new TlbConfig(2, 2, 1, 1, 1, 1, 1, 1, 1)); // one set of two ways for 4K pages
        tlb.insert(1, 0x1000, PageSize.SIZE_4K, value(10));
        tlb.insert(1, 0x2000, PageSize.SIZE_4K, value(11));
        tlb.insert(1, 0x3000, PageSize.SIZE_4K, value(12)); // evicts the first way
        assertThat(tlb.lookup(1, 0x1000)).isZero();
        assertThat(tlb.lookup(1, 0x2000)).isEqualTo(value(11));
        assertThat(tlb.lookup(1, 0x3000)).isEqualTo(value(12));
        tlb.insert(1, 0x4000, PageSize.SIZE_4K, value(13)); // then the second
        assertThat(tlb.lookup(1, 0x2000)).isZero();
        tlb.insert(1, 0x4000, PageSize.SIZE_4K, value(14)); // the same page again replaces in place
        assertThat(tlb.entries(1)).hasSize(2);
        assertThat(tlb.lookup(1, 0x4000)).isEqualTo(value(14));
    }

    @Test
    void invlpgDropsEverySizeForTheAddressAndThePagingStructureCaches() {
        Tlb tlb = new Tlb(TlbConfig.DEFAULT);
        tlb.insert(1, 0x4020_0000L, PageSize.SIZE_2M, value(0x400));
        tlb.insert(1, 0x4040_0000L, PageSize.SIZE_2M, value(0x600));
        tlb.pscInsert(Tlb.PDPTE, 1, 0x4000_0000L, Tlb.pscValue(99, Pte.RW | Pte.USER));
        tlb.pscInsert(Tlb.PDPTE, 2, 0x4000_0000L, Tlb.pscValue(98, Pte.RW | Pte.USER));
        assertThat(tlb.pscDeepest(1, 0x4020_0000L)).isEqualTo(Tlb.PDPTE);
        assertThat(tlb.invalidatePage(1, 0x4020_1234L)).isEqualTo(1);
        assertThat(tlb.lookup(1, 0x4020_0000L)).isZero();
        assertThat(tlb.lookup(1, 0x4040_0000L)).as("another page stays").isNotZero();
        assertThat(tlb.pscDeepest(1, 0x4020_0000L)).as("INVLPG drops the PCID's paging-structure entries").isEqualTo(-1);
        assertThat(tlb.pscDeepest(2, 0x4020_0000L)).as("other PCIDs keep theirs").isEqualTo(Tlb.PDPTE);
    }

    @Test
    void aPcidFlushDropsOnlyThatPcidAndLaterInsertsLive() {
        Tlb tlb = new Tlb(TlbConfig.DEFAULT);
        for (int i = 0; i < 100; i++) {
            tlb.insert(1, (long) i << 12, PageSize.SIZE_4K, value(i + 1));
            tlb.insert(2, (long) i << 12, PageSize.SIZE_4K, value(i + 1000));
        }
        tlb.invalidatePcid(1);
        assertThat(tlb.entries(1)).isEmpty();
        assertThat(tlb.entries(2)).hasSize(100);
        assertThat(tlb.lookup(1, 0x5000)).isZero();
        tlb.insert(1, 0x5000, PageSize.SIZE_4K, value(77));
        assertThat(tlb.lookup(1, 0x5000)).isEqualTo(value(77));
        assertThat(tlb.entries(1)).hasSize(1);
        tlb.invalidateAll();
        assertThat(tlb.entries(-1)).isEmpty();
    }

    @Test
    void theL1FrontsThe4kArrayRemembersHostPagesAndLeavesWithIt() {
        Tlb tlb = new Tlb(new TlbConfig(2, 2, 1, 1, 1, 1, 1, 1, 1)); // one set of two ways for 4K pages
        L1Dtlb l1 = SharedSecrets.l1Dtlb(tlb);
        MemorySegment pageA = MemorySegment.ofArray(new byte[4096]);
        MemorySegment pageB = MemorySegment.ofArray(new byte[4096]);
        tlb.insert(1, 0x1000, PageSize.SIZE_4K, value(10));
        assertThat(tlb.lookup(1, 0x1008)).isEqualTo(value(10));
        assertThat(l1.lastPage()).as("no host page known yet").isNull();
        l1.rememberPage(pageA);
        assertThat(tlb.lookup(1, 0x1ff8)).isEqualTo(value(10));
        assertThat(l1.lastPage()).isSameAs(pageA);
        tlb.insert(1, 0x2000, PageSize.SIZE_4K, value(11));
        tlb.insert(1, 0x3000, PageSize.SIZE_4K, value(12)); // evicts 0x1000 from the array
        assertThat(tlb.lookup(1, 0x1000)).as("what leaves the array leaves the L1").isZero();
        assertThat(l1.lastPage()).isNull();
        assertThat(tlb.lookup(1, 0x2000)).isEqualTo(value(11));
        l1.rememberPage(pageB);
        tlb.invalidatePage(1, 0x2000);
        assertThat(tlb.lookup(1, 0x2000)).isZero();
        tlb.insert(1, 0x2000, PageSize.SIZE_4K, value(13));
        assertThat(tlb.lookup(1, 0x2000)).isEqualTo(value(13));
        assertThat(l1.lastPage()).as("a refilled entry forgets the old page").isNull();
        tlb.insert(1, 0x4000_0000L, PageSize.SIZE_2M, value(0x200));
        assertThat(tlb.lookup(1, 0x4000_0000L)).isEqualTo(value(0x200));
        l1.rememberPage(pageA);
        assertThat(l1.lastPage()).as("only 4 KiB translations carry a page").isNull();
        assertThat(tlb.lookup(1, 0x3000)).isEqualTo(value(12));
        tlb.invalidatePcid(1);
        assertThat(tlb.lookup(1, 0x3000)).as("a PCID flush empties the L1 too").isZero();
        tlb.insert(2, 0x3000, PageSize.SIZE_4K, value(14));
        tlb.invalidateAll();
        assertThat(tlb.lookup(2, 0x3000)).isZero();
    }

    /** Seeded: after every step, a lookup agrees with the entries a full scan of the arrays finds. */
    @Test
    void lookupsAgreeWithAFullScanUnderRandomTraffic() {
        long seed = Long.getLong("vmcore.seed", 20261125L);
        java.util.Random random = new java.util.Random(seed);
        Tlb tlb = new Tlb(new TlbConfig(16, 4, 4, 2, 2, 2, 2, 2, 2));
        for (int step = 0; step < 20_000; step++) {
            int pcid = 1 + random.nextInt(3);
            long va = (long) random.nextInt(96) << 12;
            switch (random.nextInt(10)) {
                case 0, 1, 2, 3 -> tlb.insert(pcid, va, PageSize.SIZE_4K, value(1 + random.nextInt(1000)));
                case 4 -> tlb.insert(pcid, va & -(1L << 21), PageSize.SIZE_2M, value(512 * (1 + random.nextInt(8))));
                case 5 -> tlb.invalidatePage(pcid, va);
                case 6 -> {
                    if (random.nextInt(20) == 0) {
                        tlb.invalidatePcid(pcid);
                    }
                }
                default -> {
                    long got = tlb.lookup(pcid, va);
                    long want = 0;
                    for (Tlb.Entry e : tlb.entries(pcid)) {
                        long bytes = e.size().bytes();
                        if (e.va() == (va & -bytes) && (want == 0 || e.size() == PageSize.SIZE_4K)) {
                            want = e.value();
                        }
                    }
                    assertThat(got).as("seed %d step %d: lookup(%d, 0x%x)", seed, step, pcid, va).isEqualTo(want);
                }
            }
        }
    }

    @Test
    void geometryIsValidated() {
        assertThatThrownBy(() -> new TlbConfig(100, 16, 1024, 8, 32, 4, 2, 4, 32)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("entries4k=100");
        assertThatThrownBy(() -> new TlbConfig(2048, 16, 1024, 8, 32, 4, -1, 4, 32)).hasMessageContaining("pagingStructureCache");
    }
}
