package org.vmcore.examples;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;
import org.vmcore.api.Advice;

/** The THP example: the same trace walks far less with 2 MiB pages, and faults once per page of either size. */
class ThpTlbReachTest {
    static final long BYTES = 64L << 20;
    static final int ACCESSES = 50_000;

    @Test
    void hugePagesFaultOncePer2MiBAndMissTheTlbFarLess() {
        ThpTlbReach.Run huge = ThpTlbReach.run(BYTES, ACCESSES, 7, Advice.HUGEPAGE);
        ThpTlbReach.Run small = ThpTlbReach.run(BYTES, ACCESSES, 7, Advice.NOHUGEPAGE);

        assertThat(huge.faults()).as("one fault per 2 MiB").isEqualTo(BYTES >> 21);
        assertThat(huge.thpFaultAlloc()).isEqualTo(BYTES >> 21);
        assertThat(huge.counters().anonHugePages()).as("AnonHugePages, 4 KiB pages").isEqualTo(BYTES >> 12);
        assertThat(huge.tlb().misses2m()).isEqualTo(huge.tlb().misses());
        assertThat(small.faults()).as("one fault per 4 KiB").isEqualTo(BYTES >> 12);
        assertThat(small.thpFaultAlloc()).isZero();
        assertThat(small.counters().anonHugePages()).isZero();
        assertThat(small.counters().anonPages()).isEqualTo(huge.counters().anonPages()).isEqualTo(BYTES >> 12);

        assertThat(huge.tlb().misses() * 4).as("TLB misses: under a quarter with THP").isLessThan(small.tlb().misses());
        assertThat(huge.tlb().walks() * 4).isLessThan(small.tlb().walks());
        assertThat(small.tlb().misses()).as("16384 pages, 2048 TLB entries: most random accesses walk")
                .isGreaterThan(BYTES / 4096 + ACCESSES / 2);
        assertThat(huge.cycles() * 2).isLessThan(small.cycles());
        assertThat(huge.counters().pageTablePages()).as("each huge entry keeps a deposited PTE table")
                .isGreaterThanOrEqualTo(BYTES >> 21);
    }
}
