package org.vmcore.impl.cpu;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AccessOutcome;
import org.vmcore.api.AccessOutcome.Translation;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.FaultResult;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.Protection;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.TlbStats;

/** Per-access outcomes: what {@link Cpu#outcome()} and an {@code AccessListener} report, checked against the tables. */
class AccessOutcomeTest {
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    private static final long VA = 0x10_0000_0000L;
    private static final int PF_USER = 1 << 2;
    private static final int PF_WRITE = 1 << 1;

    private Machine machine;
    private Cpu cpu;
    private AddressSpace mm;

    @BeforeEach
    void build() {
        machine = Machine.builder().node(GIB).cpus(2).checkInvariantsAfterEveryOperation(true).build();
        cpu = machine.cpu(0);
        mm = machine.createAddressSpace();
        mm.mmap(VA, 64 * 4096, Protection.READ_WRITE, ANON);
        cpu.switchTo(mm);
    }

    @AfterEach
    void close() {
        machine.close();
    }

    @Nested
    class SingleAccesses {
        @Test
        void aColdLoadWalksFaultsAndWalksAgainReadingEveryLevel() {
            cpu.loadRecorded(VA + 0x18, 8);
            AccessOutcome o = cpu.outcome();
            assertThat(o.index()).isEqualTo(-1);
            assertThat(o.va()).isEqualTo(VA + 0x18);
            assertThat(o.faults()).isEqualTo(1);
            assertThat(o.faultResult()).as("do_anonymous_page maps the shared zero page for a read").isEqualTo(FaultResult.ZERO_PAGE);
            assertThat(o.faultErrorCode() & (PF_USER | PF_WRITE | 1)).as("user read of a not-present page").isEqualTo(PF_USER);
            assertThat(o.walks()).as("the walk that faults, then the one that fills").isEqualTo(2);
            assertThat(o.translation()).isEqualTo(Translation.WALK);
            assertThat(o.pageSize()).isEqualTo(PageSize.SIZE_4K);
            assertThat(o.physicalAddress()).isEqualTo(mm.translate(VA + 0x18));
            assertThat(o.walkStart()).as("nothing cached: from the root").isEqualTo(PageTableLevel.PGD);
            List<PageTableLevel> levels = new ArrayList<>();
            for (int i = 0; i < o.walkReferences(); i++) {
                levels.add(o.walkReferenceLevel(i));
                assertThat(o.walkReferenceAddress(i) & 7).as("entries are 8-byte aligned").isZero();
            }
            assertThat(levels).as("the first walk stops at the empty PGD entry; the second reads all four levels")
                    .containsExactly(PageTableLevel.PGD, PageTableLevel.PGD, PageTableLevel.PUD, PageTableLevel.PMD,
                            PageTableLevel.PTE);
            int last = o.walkReferences() - 1;
            assertThat(o.walkReferenceAddress(last) & 0xFFF).as("the PTE's slot: index of VA in its table times 8")
                    .isEqualTo(((VA >>> 12) & 511) * 8);
            assertThat(o.walkReferenceAddress(0)).as("both walks read the same PGD slot").isEqualTo(o.walkReferenceAddress(1));
            assertThat(o.walkReferencesDropped()).isZero();
            assertThatThrownBy(() -> o.walkReferenceAddress(5)).isInstanceOf(IndexOutOfBoundsException.class);
        }

        @Test
        void aNeighbourOfACachedPageWalksFromThePagingStructureCache() {
            cpu.store(VA, 8, 1);
            cpu.loadRecorded(VA + 2 * 4096, 8);
            AccessOutcome o = cpu.outcome();
            assertThat(o.walkStart()).as("the cached PDE covers the neighbour: only its PTE is read").isEqualTo(PageTableLevel.PTE);
            assertThat(o.walkReferences()).isEqualTo(2);
            assertThat(o.walkReferenceLevel(0)).isEqualTo(PageTableLevel.PTE);
            assertThat(o.walkReferenceLevel(1)).isEqualTo(PageTableLevel.PTE);
        }

        @Test
        void aStoreThroughACleanEntryWalksAgainAndSetsDirtyInTheLeafOnly() {
            long shared = VA + 128 * 4096;
            mm.mmap(shared, 4096, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
            cpu.load(shared, 8); // a shmem read fault maps the page writable and clean: the cached translation has no D
            cpu.storeRecorded(shared, 8, 5);
            AccessOutcome o = cpu.outcome();
            assertThat(o.faults()).as("the entry is writable: no fault, a D-bit assist").isZero();
            assertThat(o.walks()).isEqualTo(1);
            int leaf = o.walkReferences() - 1;
            assertThat(o.walkReferenceLevel(leaf)).isEqualTo(PageTableLevel.PTE);
            assertThat(o.walkReferenceSetDirty(leaf)).as("the walk set D in the PTE").isTrue();
            for (int i = 0; i < leaf; i++) {
                assertThat(o.walkReferenceSetDirty(i)).as("no D above the leaf").isFalse();
                assertThat(o.walkReferenceSetAccessed(i)).as("upper entries had A already").isFalse();
            }
            cpu.storeRecorded(shared + 8, 8, 6);
            assertThat(cpu.outcome().walks()).as("now cached with D: a hit").isZero();
        }

        @Test
        void aWalkAfterClearFlushYoungSetsAccessedInTheLeafAgain() {
            cpu.store(VA, 8, 1);
            assertThat(mm.clearFlushYoung(VA)).as("the fault mapped the page young").isTrue();
            cpu.loadRecorded(VA, 8);
            AccessOutcome o = cpu.outcome();
            int leaf = o.walkReferences() - 1;
            assertThat(o.walkReferenceLevel(leaf)).isEqualTo(PageTableLevel.PTE);
            assertThat(o.walkReferenceSetAccessed(leaf)).as("ptep_clear_flush_young cleared A; the walk sets it").isTrue();
            assertThat(o.walkReferenceSetDirty(leaf)).as("a load sets no D").isFalse();
            assertThat(mm.testYoung(VA)).isTrue();
        }

        @Test
        void repeatedLoadsHitTheStlbThenTheL1() {
            cpu.store(VA, 8, 42);
            cpu.loadRecorded(VA, 8);
            Translation second = cpu.outcome().translation();
            assertThat(cpu.loadRecorded(VA, 8)).isEqualTo(42);
            AccessOutcome o = cpu.outcome();
            assertThat(second).isIn(Translation.STLB_HIT, Translation.L1_HIT);
            assertThat(o.translation()).isEqualTo(Translation.L1_HIT);
            assertThat(o.walks()).isZero();
            assertThat(o.walkReferences()).isZero();
            assertThat(o.walkStart()).isNull();
            assertThat(o.faults()).isZero();
            assertThat(o.faultResult()).isNull();
            assertThat(o.physicalAddress()).isEqualTo(mm.translate(VA));
        }

        @Test
        void aStoreToACopyOnWritePageRecordsTheCopy() {
            cpu.store(VA, 8, 7);
            AddressSpace child = mm.fork();
            cpu.switchTo(child);
            cpu.storeRecorded(VA, 8, 8);
            AccessOutcome o = cpu.outcome();
            assertThat(o.faultResult()).isEqualTo(FaultResult.COW_COPY);
            assertThat(o.faultErrorCode() & (PF_USER | PF_WRITE | 1)).as("user write to a present page").isEqualTo(PF_USER | PF_WRITE | 1);
            assertThat(o.physicalAddress()).isEqualTo(child.translate(VA)).isNotEqualTo(mm.translate(VA));
        }

        @Test
        void aSegfaultLeavesTheOutcomeOfWhatWasRecordedBeforeTheThrowAndTheStatsCountOneFault() {
            cpu.loadRecorded(VA, 8);
            assertThat(cpu.outcome().physicalAddress()).isPositive();
            TlbStats before = cpu.stats();
            assertThatThrownBy(() -> cpu.loadRecorded(VA - 4096, 8)).isInstanceOf(SegmentationFaultException.class);
            TlbStats d = cpu.stats().minus(before);
            assertThat(d.faults()).isEqualTo(1);
            assertThat(d.misses()).isZero();
            assertThat(d.walks()).isEqualTo(1);
            AccessOutcome o = cpu.outcome();
            assertThat(o.va()).isEqualTo(VA - 4096);
            assertThat(o.walks()).as("the walk that found no entry").isEqualTo(1);
            assertThat(o.physicalAddress()).as("nothing of the access before").isZero();
            assertThat(o.faults()).as("the kernel did not resolve it").isZero();
        }
    }

    @Nested
    class Bursts {
        @Test
        void theListenerHearsEveryAccessInOrderAndNotItsOwn() {
            long[] vas = new long[300];
            for (int i = 0; i < vas.length; i++) {
                vas[i] = VA + (i % 3) * 4096 + 8 * (i % 500);
            }
            List<String> heard = new ArrayList<>();
            cpu.accessListener(o -> {
                heard.add(o.index() + "@" + Long.toHexString(o.va()) + ":" + o.translation());
                cpu.load(VA, 8); // an access of the listener itself: allowed, not reported
            });
            cpu.loadAll(vas, 8, new long[vas.length]);
            assertThat(heard).hasSize(300);
            for (int i = 0; i < vas.length; i++) {
                assertThat(heard.get(i)).startsWith(i + "@" + Long.toHexString(vas[i]) + ":");
            }
            assertThat(heard.get(0)).endsWith("WALK");
            assertThat(heard.get(299)).doesNotEndWith("WALK");
            cpu.accessListener(null);
            heard.clear();
            cpu.loadAll(vas, 8, new long[vas.length]);
            assertThat(heard).isEmpty();
        }

        @Test
        void aThrowingListenerStopsTheBatchAfterItsBurst() {
            long[] vas = new long[200];
            long[] values = new long[200];
            for (int i = 0; i < vas.length; i++) {
                vas[i] = VA + 8L * i;
                values[i] = i + 1;
            }
            RuntimeException boom = new IllegalStateException("listener says no");
            cpu.accessListener(o -> {
                if (o.index() == 70) {
                    throw boom;
                }
            });
            assertThatThrownBy(() -> cpu.storeAll(vas, 8, values)).isSameAs(boom);
            cpu.accessListener(null);
            int burst = Cpu.OUTCOME_BURST;
            int end = (70 / burst + 1) * burst;
            for (int i = 0; i < vas.length; i++) {
                assertThat(cpu.load(vas[i], 8)).as("index %d", i).isEqualTo(i < end ? i + 1 : 0);
            }
        }

        @Test
        void aListenerThatUnmapsMakesTheNextAccessFaultAtItsIndex() {
            long[] vas = new long[2 * Cpu.OUTCOME_BURST + 10];
            for (int i = 0; i < vas.length; i++) {
                vas[i] = i < Cpu.OUTCOME_BURST ? VA : VA + 4096;
            }
            cpu.accessListener(o -> {
                if (o.index() == 0) {
                    mm.munmap(VA + 4096, 4096);
                }
            });
            assertThatThrownBy(() -> cpu.loadAll(vas, 8, new long[vas.length]))
                    .isInstanceOfSatisfying(SegmentationFaultException.class, e -> {
                        assertThat(e.batchIndex()).isEqualTo(Cpu.OUTCOME_BURST);
                        assertThat(e.address()).isEqualTo(VA + 4096);
                    });
        }

        @Test
        void theListenerHearsTheAccessesBeforeAFault() {
            List<Integer> heard = new ArrayList<>();
            cpu.accessListener(o -> heard.add(o.index()));
            long[] vas = {VA, VA + 8, VA - 4096, VA + 16};
            assertThatThrownBy(() -> cpu.loadAll(vas, 8, new long[4]))
                    .isInstanceOfSatisfying(SegmentationFaultException.class, e -> assertThat(e.batchIndex()).isEqualTo(2));
            assertThat(heard).containsExactly(0, 1);
        }

        @Test
        void aNestedBatchOnTheSameCpuFromTheListenerIsNotRecorded() {
            List<Integer> heard = new ArrayList<>();
            cpu.accessListener(o -> {
                heard.add(o.index());
                if (o.index() == 1) {
                    cpu.loadAll(new long[] {VA + 64, VA + 72}, 8, new long[2]);
                }
            });
            cpu.loadAll(new long[] {VA, VA + 8, VA + 16}, 8, new long[3]);
            assertThat(heard).containsExactly(0, 1, 2);
        }
    }
}
