package org.vmcore.impl.cpu;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;
import static org.vmcore.impl.Fixtures.peek;

import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInfo;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.ClosedException;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.TlbStats;
import org.vmcore.impl.Fixtures.SharedWindow;
import org.vmcore.impl.Fixtures;
import org.vmcore.impl.SimMachine;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.tlb.Tlb;

@SuppressWarnings("try") // a lock hold is used only for its scope
class CpuTlbTest {
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    private static final int SHARED = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
    private static final long VA = 0x10_0000_0000L;

    private Machine machine;
    private Cpu cpu0;
    private Cpu cpu1;

    /** Every test runs with the invariant checker on, except the one that corrupts a shared entry on purpose. */
    @BeforeEach
    void build(TestInfo test) {
        boolean corrupts = test.getTestMethod().orElseThrow().getName().startsWith("aFlushOfOneSharer");
        machine = Machine.builder().node(4 * GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 600)
                .hugePages(0, PageSize.SIZE_1G, 1).detectStaleTranslations(true).checkInvariantsAfterEveryOperation(!corrupts)
                .build();
        cpu0 = machine.cpu(0);
        cpu1 = machine.cpu(1);
    }

    @AfterEach
    void close() {
        machine.close();
    }

    private static TlbStats delta(TlbStats before, TlbStats after) {
        return after.minus(before);
    }

    private static byte[] readBack(Cpu cpu, long va, int length) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = (byte) cpu.load(va + i, 1);
        }
        return b;
    }

    @Nested
    @DisplayName("loads and stores: TLB, walk, fault, retry")
    class Accesses {
        @Test
        void storesFaultInWalkAndThenHitForEachPageSize() {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 8 * 4096, Protection.READ_WRITE, ANON);
            HugetlbFile f2m = machine.hugetlbfs().create("f2m", 4 * MIB, PageSize.SIZE_2M);
            HugetlbFile f1g = machine.hugetlbfs().create("f1g", GIB, PageSize.SIZE_1G);
            mm.mmap(f2m, 0, 2 * GIB, 4 * MIB, Protection.READ_WRITE, SHARED);
            mm.mmap(f1g, 0, 4 * GIB, GIB, Protection.READ_WRITE, SHARED);
            cpu0.switchTo(mm);
            long[] addresses = {VA + 0x10, 2 * GIB + 0x1234, 4 * GIB + 0x123456};
            PageSize[] sizes = {PageSize.SIZE_4K, PageSize.SIZE_2M, PageSize.SIZE_1G};
            for (int i = 0; i < 3; i++) {
                long va = addresses[i];
                TlbStats before = cpu0.stats();
                cpu0.store(va, 8, 0x1122334455667788L + i);
                TlbStats first = delta(before, cpu0.stats());
                assertThat(first.hits()).isZero();
                assertThat(first.walks()).as("a failing walk, the fault, then a walk that succeeds").isEqualTo(2);
                assertThat(new long[] {first.misses4k(), first.misses2m(), first.misses1g()}[i]).isEqualTo(1);
                assertThat(peek(machine, mm, va)).as("the store landed in the frame").isEqualTo(0x1122334455667788L + i);

                before = cpu0.stats();
                assertThat(cpu0.load(va, 8)).isEqualTo(0x1122334455667788L + i);
                assertThat(cpu0.load(va + 7, 1)).as("the top byte of the value stored").isEqualTo(0x11);
                assertThat(cpu0.load(va & ~7L, 1)).as("the byte at the 8-byte boundary at or below va")
                        .isEqualTo((va & 7) == 0 ? 0x88 + i : 0);
                TlbStats again = delta(before, cpu0.stats());
                assertThat(again.hits()).isEqualTo(3);
                assertThat(again.walks()).isZero();
                assertThat(((SimCpu) cpu0).cachedSize((SimAddressSpace) mm, va)).isEqualTo(sizes[i]);
            }
            assertThat(cpu0.load(VA + 0x10, 2)).isEqualTo(0x7788);
            assertThat(cpu0.load(VA + 0xFFE, 4)).as("an access across a page boundary").isZero();
            assertThat(machine.staleAccesses()).isEmpty();
        }

        @Test
        void protectionViolationsRaiseSegmentationFaults() {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4096, Protection.READ, ANON);
            cpu0.switchTo(mm);
            assertThat(cpu0.load(VA, 8)).isZero();
            assertThatThrownBy(() -> cpu0.store(VA, 8, 1)).isInstanceOfSatisfying(SegmentationFaultException.class,
                    e -> assertThat(e.cause()).isEqualTo(SegmentationFaultException.Cause.PROTECTION));
            assertThatThrownBy(() -> cpu0.load(VA + 4096, 1)).isInstanceOfSatisfying(SegmentationFaultException.class,
                    e -> assertThat(e.cause()).isEqualTo(SegmentationFaultException.Cause.NO_VMA));
            assertThatThrownBy(() -> cpu0.load(0x0000_8000_0000_0000L, 1)).isInstanceOfSatisfying(SegmentationFaultException.class,
                    e -> assertThat(e.cause()).isEqualTo(SegmentationFaultException.Cause.NON_CANONICAL));
            assertThatThrownBy(() -> cpu0.load(VA, 3)).isInstanceOf(InvalidArgumentException.class).hasMessageContaining("width=3");
            assertThatThrownBy(() -> cpu1.load(VA, 1)).isInstanceOf(IllegalStateException.class).hasMessageContaining("switchTo");
        }

        @Test
        void copyOnWriteThroughTheCpuFlushesTheOldTranslation() {
            AddressSpace parent = machine.createAddressSpace();
            parent.mmap(VA, 4096, Protection.READ_WRITE, ANON);
            cpu0.switchTo(parent);
            cpu0.store(VA, 8, 1);
            AddressSpace child = parent.fork();
            assertThat(cpu0.tlbHolds(parent, VA)).as("fork flushed the parent's writable entry").isFalse();
            cpu1.switchTo(child);
            assertThat(cpu1.load(VA, 8)).isEqualTo(1);
            cpu1.store(VA, 8, 2); // COW copy in the child
            assertThat(cpu0.load(VA, 8)).isEqualTo(1);
            cpu0.store(VA, 8, 3); // COW reuse in the parent
            assertThat(cpu1.load(VA, 8)).isEqualTo(2);
            assertThat(parent.pageAt(VA)).isNotEqualTo(child.pageAt(VA));
            assertThat(machine.staleAccesses()).isEmpty();
        }

        @Test
        void pcidSwitchingKeepsOtherAddressSpacesCached() {
            AddressSpace a = machine.createAddressSpace();
            AddressSpace b = machine.createAddressSpace();
            a.mmap(VA, 4096, Protection.READ_WRITE, ANON);
            b.mmap(VA, 4096, Protection.READ_WRITE, ANON);
            assertThat(a.pcid()).isNotEqualTo(b.pcid());
            cpu0.switchTo(a);
            cpu0.store(VA, 8, 0xA);
            cpu0.switchTo(b);
            cpu0.store(VA, 8, 0xB);
            assertThat(cpu0.tlbHolds(a, VA)).as("a CR3 write with PCID keeps a's entry").isTrue();
            assertThat(cpu0.tlbHolds(b, VA)).isTrue();
            cpu0.switchTo(a);
            TlbStats before = cpu0.stats();
            assertThat(cpu0.load(VA, 8)).isEqualTo(0xA);
            assertThat(delta(before, cpu0.stats()).walks()).as("no walk after switching back").isZero();
            assertThat(a.cpumask()).containsExactly(0);
            assertThat(b.cpumask()).containsExactly(0);
        }
    }

    @Nested
    @DisplayName("flushes and shootdowns")
    class Flushes {
        @Test
        void eachFlushKindDropsWhatItShouldAndNothingElse() {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 64 * 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
            cpu0.switchTo(mm);
            for (int i = 0; i < 64; i++) {
                cpu0.load(VA + i * 4096L, 1);
            }
            TlbStats before = cpu0.stats();
            mm.flushTlb(VA, VA + 4096, 12);
            assertThat(cpu0.tlbHolds(mm, VA)).isFalse();
            assertThat(cpu0.tlbHolds(mm, VA + 4096)).isTrue();
            mm.flushTlb(VA + 4096, VA + 11 * 4096, 12);
            assertThat(cpu0.tlbHolds(mm, VA + 10 * 4096)).isFalse();
            assertThat(cpu0.tlbHolds(mm, VA + 11 * 4096)).isTrue();
            TlbStats d = delta(before, cpu0.stats());
            assertThat(d.pageFlushes()).isEqualTo(1);
            assertThat(d.rangeFlushes()).isEqualTo(1);
            assertThat(d.mmFlushes()).isZero();

            mm.flushTlb(VA + 20 * 4096, VA + 54 * 4096, 12); // 34 pages: above the ceiling of 33
            assertThat(cpu0.tlbHolds(mm, VA + 60 * 4096)).as("the whole address space went").isFalse();
            assertThat(delta(before, cpu0.stats()).mmFlushes()).isEqualTo(1);

            cpu0.load(VA, 1);
            machine.flushTlbAll();
            assertThat(cpu0.tlbEntries()).isEmpty();
            assertThat(delta(before, cpu0.stats()).fullFlushes()).isEqualTo(1);
            assertThat(delta(before, cpu1.stats()).fullFlushes()).isEqualTo(1);
        }

        @Test
        void invlpgAndFreedTablesDropThePagingStructureCaches() {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 2 * 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
            SimCpu cpu = (SimCpu) cpu0;
            cpu.switchTo(mm);
            cpu.load(VA, 1);
            assertThat(cpu.pagingStructureEntries(Tlb.PDE, mm.pcid())).extracting(Tlb.Entry::va).containsExactly(VA);
            assertThat(cpu.pagingStructureEntries(Tlb.PDPTE, mm.pcid())).hasSize(1);
            TlbStats before = cpu.stats();
            cpu.load(VA + 4096, 1);
            assertThat(delta(before, cpu.stats()).pscHits()).as("the second page's walk starts at the PTE table").isEqualTo(1);

            mm.munmap(VA, 2 * 4096); // frees the PTE, PMD and PUD tables
            assertThat(cpu.pagingStructureEntries(Tlb.PDE, mm.pcid())).isEmpty();
            assertThat(cpu.pagingStructureEntries(Tlb.PDPTE, mm.pcid())).isEmpty();
            assertThat(cpu.pagingStructureEntries(Tlb.PML4E, mm.pcid())).isEmpty();
            assertThatThrownBy(() -> cpu.load(VA, 1)).isInstanceOf(SegmentationFaultException.class);
        }

        @Test
        void shootdownsAreCountedOnBothEnds() {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4096, Protection.READ_WRITE, ANON);
            cpu1.switchTo(mm);
            cpu1.load(VA, 1);
            cpu0.switchTo(mm); // this thread now drives cpu0: it initiates the flush
            mm.flushTlb(VA, VA + 4096, 12);
            assertThat(cpu0.stats().shootdownsSent()).isEqualTo(1);
            assertThat(cpu1.stats().shootdownsReceived()).isEqualTo(1);
            assertThat(cpu0.stats().shootdownsReceived()).as("cpu0 flushed itself locally").isZero();
            assertThat(cpu1.tlbHolds(mm, VA)).isFalse();
        }

        @Test
        void exitDropsThePcidEverywhereAndDetachesItsCpus() {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4096, Protection.READ_WRITE, ANON);
            cpu0.switchTo(mm);
            cpu0.store(VA, 8, 5);
            int pcid = mm.pcid();
            mm.close();
            assertThat(cpu0.current()).isNull();
            assertThat(cpu0.tlbEntries()).isEmpty();
            AddressSpace next = machine.createAddressSpace();
            assertThat(next.pcid()).as("the PCID is free again").isEqualTo(pcid);
            assertThatThrownBy(() -> cpu0.switchTo(mm)).isInstanceOf(ClosedException.class);
        }
    }

    @Nested
    @DisplayName("sharers of a PMD table: each flush is per address space")
    class SharedPmdTables {
        /** Two processes share a PMD table; each CPU caches the same huge page under its own PCID. */
        @Test
        void aFlushOfOneSharerLeavesTheOtherSharersEntryAndTheDetectorSeesIt() {
            SharedWindow window = Fixtures.sharedWindow(machine, GIB, 3 * GIB, false);
            AddressSpace a = window.a();
            AddressSpace b = window.b();
            cpu0.switchTo(a);
            cpu1.switchTo(b);
            cpu0.store(GIB + 0x100, 8, 7);
            assertThat(cpu1.load(3 * GIB + 0x100, 8)).isEqualTo(7);
            SimAddressSpace sa = (SimAddressSpace) a;
            long table = sa.pageTable().entry(GIB, Level.PUD);
            assertThat(((SimAddressSpace) b).pageTable().entry(3 * GIB, Level.PUD)).as("one shared PMD table").isEqualTo(table);
            assertThat(cpu0.tlbHolds(a, GIB)).isTrue();
            assertThat(cpu1.tlbHolds(b, 3 * GIB)).isTrue();

            // What the unfixed migration did: clear the shared entry and flush only the first mm.
            try (MachineLock.Held locked = ((SimMachine) machine).lock().exclusive()) {
                long slot = sa.pageTable().slot(GIB, Level.PMD);
                sa.pageTable().getAndClearSlot(slot);
            }
            a.flushTlb(GIB, GIB + 2 * MIB, 21);
            assertThat(cpu0.tlbHolds(a, GIB)).isFalse();
            assertThat(cpu1.tlbHolds(b, 3 * GIB)).as("b's entry survives a's flush").isTrue();
            assertThat(cpu1.load(3 * GIB + 0x100, 8)).as("b still reads the page through its TLB").isEqualTo(7);
            assertThat(machine.staleAccesses()).singleElement().satisfies(s -> {
                assertThat(s.who()).isEqualTo("cpu1");
                assertThat(s.addressSpace()).isEqualTo(b);
                assertThat(s.address()).isEqualTo(3 * GIB + 0x100);
                assertThat(s.currentPfn()).isEqualTo(-1);
            });

            b.flushTlb(3 * GIB, 3 * GIB + 2 * MIB, 21);
            assertThat(cpu0.tlbEntries()).isEmpty();
            assertThat(cpu1.tlbEntries()).as("flushing both leaves none").isEmpty();
            assertThat(cpu1.load(3 * GIB + 0x100, 8)).as("b faults the page back in from the page cache").isEqualTo(7);
            assertThat(machine.staleAccesses()).hasSize(1);
        }

        @Test
        void unsharingFlushesTheWholeWindowOfTheUnsharerOnly() {
            SharedWindow window = Fixtures.sharedWindow(machine, GIB, 3 * GIB, false);
            AddressSpace a = window.a();
            AddressSpace b = window.b();
            cpu0.switchTo(a);
            cpu1.switchTo(b);
            cpu0.store(GIB + 100 * MIB, 8, 1);
            cpu1.load(3 * GIB + 100 * MIB, 8);
            SimCpu c1 = (SimCpu) cpu1;
            assertThat(c1.pagingStructureEntries(Tlb.PDPTE, b.pcid())).extracting(Tlb.Entry::va).containsExactly(3 * GIB);
            b.mprotect(3 * GIB + 4 * MIB, 2 * MIB, Protection.READ); // split inside the window: unshare first
            assertThat(cpu1.tlbHolds(b, 3 * GIB + 100 * MIB)).isFalse();
            assertThat(c1.pagingStructureEntries(Tlb.PDPTE, b.pcid())).as("the cached PDPTE to the shared table went").isEmpty();
            assertThat(cpu0.tlbHolds(a, GIB + 100 * MIB)).isTrue();
            assertThat(cpu1.load(3 * GIB + 100 * MIB, 8)).isEqualTo(1);
            assertThat(machine.staleAccesses()).isEmpty();
        }
    }

    @Nested
    @DisplayName("batched and byte-array accesses")
    class Batches {
        @Test
        void batchedAccessesBehaveLikeSingleOnesAndHitTheTlb() {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4 * 4096, Protection.READ_WRITE, ANON);
            HugetlbFile f2m = machine.hugetlbfs().create("batch", 2 * MIB, PageSize.SIZE_2M);
            mm.mmap(f2m, 0, 2 * GIB, 2 * MIB, Protection.READ_WRITE, SHARED);
            cpu0.switchTo(mm);
            long[] vas = {VA, VA + 4096 + 8, VA + 3 * 4096 - 4, 2 * GIB + 0x1234, VA + 16}; // one store crosses a page
            long[] values = {0x1111, 0x2222_0000_0000L, 0x3333_4444_5555_6666L, 0x77, 0x88};
            cpu0.storeAll(vas, 8, values);
            for (int i = 0; i < vas.length; i++) {
                assertThat(cpu0.load(vas[i], 8)).as("access %d", i).isEqualTo(values[i]);
            }
            long[] loaded = new long[vas.length];
            TlbStats before = cpu0.stats();
            cpu0.loadAll(vas, 8, loaded);
            assertThat(loaded).containsExactly(values);
            TlbStats d = delta(before, cpu0.stats());
            assertThat(d.misses()).as("every translation is cached by now").isZero();
            assertThat(d.hits()).as("one hit per access, two for the access that crosses a page: one per page, as the hardware "
                    + "translates").isEqualTo(4 + 2);
            long[] halves = new long[2];
            cpu0.loadAll(new long[] {VA + 4, 2 * GIB + 0x1236}, 2, halves);
            assertThat(halves).containsExactly(0L, 0L);
            cpu0.loadAll(new long[0], 8, new long[0]);
        }

        @Test
        void aFaultInABatchStopsItWithTheEarlierAccessesDone() {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 2 * 4096, Protection.READ_WRITE, ANON);
            mm.mmap(VA + 2 * 4096, 4096, Protection.READ, ANON);
            cpu0.switchTo(mm);
            long[] vas = {VA, VA + 4096, VA + 2 * 4096, VA + 8};
            assertThatThrownBy(() -> cpu0.storeAll(vas, 8, new long[] {1, 2, 3, 4}))
                    .isInstanceOfSatisfying(SegmentationFaultException.class, e -> assertThat(e.address()).isEqualTo(VA + 2 * 4096));
            assertThat(peek(machine, mm, VA)).isEqualTo(1);
            assertThat(peek(machine, mm, VA + 4096)).isEqualTo(2);
            assertThat(peek(machine, mm, VA + 8)).as("the access after the fault never ran").isZero();
            long[] loaded = {-1, -1, -1};
            assertThatThrownBy(() -> cpu0.loadAll(new long[] {VA, VA + 4096, VA + 5 * 4096}, 8, loaded))
                    .isInstanceOf(SegmentationFaultException.class);
            assertThat(loaded).containsExactly(1, 2, -1);
        }

        @Test
        void batchAndBufferInputIsValidatedBeforeAnyAccess() {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4096, Protection.READ_WRITE, ANON);
            cpu0.switchTo(mm);
            TlbStats before = cpu0.stats();
            assertThatThrownBy(() -> cpu0.loadAll(null, 8, new long[0])).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("vas");
            assertThatThrownBy(() -> cpu0.storeAll(new long[] {VA}, 8, null)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("values");
            assertThatThrownBy(() -> cpu0.storeAll(new long[] {VA}, 8, new long[2])).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("values.length=2");
            assertThatThrownBy(() -> cpu0.loadAll(new long[] {VA}, 3, new long[1])).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("width=3");
            assertThatThrownBy(() -> cpu0.write(VA, new byte[4], 2, 3)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("offset=2");
            assertThat(delta(before, cpu0.stats()).hits() + delta(before, cpu0.stats()).misses()).as("no access ran").isZero();
            assertThat(mm.translate(VA)).as("nothing faulted in").isNegative();
        }

        @Test
        void byteArrayCopiesGoAPageAtATimeAndStopAtAFault() {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 3 * 4096, Protection.READ_WRITE, ANON);
            cpu0.switchTo(mm);
            byte[] src = new byte[10_000];
            new Random(7).nextBytes(src);
            TlbStats before = cpu0.stats();
            cpu0.write(VA + 100, src, 0, src.length);
            TlbStats d = delta(before, cpu0.stats());
            assertThat(d.faults()).as("per page, not per byte: the walk that faults").isEqualTo(3);
            assertThat(d.misses()).as("per page: the walk that fills after the fault").isEqualTo(3);
            assertThat(d.hits()).as("a precise write translates every page again after the faults, from the TLB").isEqualTo(3);
            byte[] back = new byte[src.length];
            cpu0.read(VA + 100, back, 0, back.length);
            assertThat(back).isEqualTo(src);
            assertThat(cpu0.load(VA + 100 + 4096, 1)).isEqualTo(src[4096] & 0xFF);
            byte[] over = new byte[2 * 4096];
            Arrays.fill(over, (byte) -1);
            assertThatThrownBy(() -> cpu0.read(VA + 2 * 4096, over, 0, over.length))
                    .isInstanceOfSatisfying(SegmentationFaultException.class, e -> assertThat(e.address()).isEqualTo(VA + 3 * 4096));
            assertThat(Arrays.copyOfRange(over, 0, 4096))
                    .isEqualTo(readBack(cpu0, VA + 2 * 4096, 4096));
            assertThat(over[4096]).as("nothing past the fault").isEqualTo((byte) -1);
        }
    }
}
