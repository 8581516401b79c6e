package org.vmcore.impl.cpu;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;

import java.util.function.LongUnaryOperator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;
import org.vmcore.api.StaleAccess;
import org.vmcore.api.TraceOp;
import org.vmcore.impl.SimMachine;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.tlb.Tlb;

/**
 * The stale-translation detector sees stale permissions and walks from stale paging-structure
 * cache entries, not only stale frames. Each test changes an entry the way a kernel path does
 * but skips the flush that path owes, and shows what the detector records, and why the detector
 * that compared frames only saw nothing.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
class StaleDetectorUpgradeTest {
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE;
    private static final long VA = 0x10_0000_0000L;

    private SimMachine machine;
    private Cpu cpu0;
    private SimAddressSpace mm;

    @BeforeEach
    void build() {
        machine = (SimMachine) Machine.builder().node(GIB).cpus(1).detectStaleTranslations(true).build();
        cpu0 = machine.cpu(0);
        mm = (SimAddressSpace) machine.createAddressSpace();
        mm.mmap(VA, 8 * 4096, Protection.READ_WRITE_EXEC, ANON);
        cpu0.switchTo(mm);
    }

    @AfterEach
    void close() {
        machine.close();
    }

    /** Changes the entry of va at {@code level} under the machine lock, without any flush. */
    private void rewrite(long va, Level level, LongUnaryOperator change) {
        try (MachineLock.Held locked = machine.lock().exclusive()) {
            RawPageTable t = mm.pageTable();
            long slot = t.slot(va, level);
            long e = t.readSlot(slot);
            assertThat(t.compareAndSetSlot(slot, e, change.applyAsLong(e))).isTrue();
        }
    }

    @Test
    void forkWithItsFlushLeavesNoStaleUse() {
        cpu0.store(VA, 8, 1);
        AddressSpace child = mm.fork();
        cpu0.store(VA, 8, 2); // the flush dropped the writable entry: a copy-on-write fault
        assertThat(child.translate(VA)).as("the store copied the page").isNotEqualTo(mm.translate(VA));
        assertThat(machine.staleAccesses()).isEmpty();
        assertThat(machine.checkInvariants()).isEmpty();
    }

    @Test
    void aStoreThroughACachedWritableEntryAfterForksWriteProtectWithoutItsFlushIsStale() {
        cpu0.store(VA, 8, 1); // caches a writable, dirty translation
        long pfn = mm.pageAt(VA);
        // What copy_page_range does to the parent's entry, with dup_mmap's flush_tlb_mm(oldmm) skipped.
        rewrite(VA, Level.PTE, e -> e & ~Pte.RW);

        cpu0.store(VA, 8, 2);

        assertThat(cpu0.load(VA, 8)).as("the store went through the cached entry, past the write protection").isEqualTo(2);
        assertThat(machine.staleAccesses()).singleElement().satisfies(s -> {
            assertThat(s.kind()).isEqualTo(StaleAccess.Kind.PERMISSION);
            assertThat(s.who()).isEqualTo("cpu0");
            assertThat(s.address()).isEqualTo(VA);
            assertThat(s.write()).isTrue();
            // The detector before compared frames only: here they are equal, so it recorded nothing.
            assertThat(s.cachedPfn()).isEqualTo(pfn).isEqualTo(s.currentPfn());
            assertThat(s.toString()).contains("tables now refuse");
        });
        assertThat(machine.checkInvariants()).anySatisfy(v -> assertThat(v).startsWith("TLB").contains("refuse a store"));
    }

    @Test
    void aLoadThroughAnEntryThatLostOnlyRwIsNotStale() {
        cpu0.store(VA, 8, 1);
        rewrite(VA, Level.PTE, e -> e & ~Pte.RW);
        assertThat(cpu0.load(VA, 8)).isEqualTo(1);
        assertThat(machine.staleAccesses()).as("the tables still allow a load").isEmpty();
    }

    @Test
    void aUserAccessAfterUsWasClearedIsStale() {
        cpu0.load(VA, 8);
        rewrite(VA, Level.PTE, e -> e & ~Pte.USER);
        cpu0.load(VA, 8);
        assertThat(machine.staleAccesses()).singleElement().satisfies(s -> {
            assertThat(s.kind()).isEqualTo(StaleAccess.Kind.PERMISSION);
            assertThat(s.write()).isFalse();
        });
    }

    @Test
    void aFetchAfterNxWasSetIsStale() {
        byte[] ops = {TraceOp.FETCH};
        long[] vas = {VA};
        byte[] widths = {8};
        long[] values = new long[1];
        cpu0.replay(ops, vas, widths, values); // caches an executable translation
        rewrite(VA, Level.PTE, e -> e | Pte.NX);
        cpu0.load(VA, 8);
        assertThat(machine.staleAccesses()).as("a load is still allowed").isEmpty();
        cpu0.replay(ops, vas, widths, values);
        assertThat(machine.staleAccesses()).singleElement().satisfies(s -> assertThat(s.kind()).isEqualTo(StaleAccess.Kind.PERMISSION));
    }

    @Test
    void aStoreWhileTheAddressSpaceIsOwedAFlushIsNotStale() {
        cpu0.store(VA, 8, 1);
        try (MachineLock.Held locked = machine.lock().exclusive()) {
            mm.incTlbFlushPending(); // as fork holds it from its first write-protect to its flush
        }
        rewrite(VA, Level.PTE, e -> e & ~Pte.RW);
        cpu0.store(VA, 8, 2);
        assertThat(machine.staleAccesses()).as("inside the window a flush is owed").isEmpty();
        try (MachineLock.Held locked = machine.lock().exclusive()) {
            mm.decTlbFlushPending();
        }
        cpu0.store(VA, 8, 3);
        assertThat(machine.staleAccesses()).as("once the window closed without the flush").hasSize(1);
    }

    @Test
    void aWalkFromACachedPdeTheTablesNoLongerHoldIsStaleOnTheFirstAccess() {
        long other = VA + 4 * 4096;
        cpu0.load(VA, 8); // caches the PDE that points to the PTE table of VA's 2 MiB
        long otherPfn = mm.pageAt(other);
        SimCpu sim = (SimCpu) cpu0;
        assertThat(sim.pagingStructureEntries(Tlb.PDE, mm.pcid())).extracting(Tlb.Entry::va).containsExactly(VA);
        long[] pmd = new long[1];
        rewrite(VA, Level.PMD, e -> {
            pmd[0] = e;
            return 0; // the PMD entry cleared, the cached PDE not flushed
        });

        cpu0.load(other, 8); // a TLB miss: the walk starts from the cached PDE and reads the old PTE table

        // The detector before checked TLB hits only: this access was a miss, and it recorded nothing.
        assertThat(machine.staleAccesses()).singleElement().satisfies(s -> {
            assertThat(s.kind()).isEqualTo(StaleAccess.Kind.PAGING_STRUCTURE);
            assertThat(s.address()).isEqualTo(other);
            assertThat(s.cachedPfn()).isEqualTo(otherPfn);
            assertThat(s.currentPfn()).as("the tables map nothing there now").isEqualTo(-1);
        });
        assertThat(machine.checkInvariants()).anySatisfy(v -> assertThat(v).startsWith("paging-structure cache")
                .contains("PDE").contains("no such entry"));
        cpu0.load(other, 8); // now a TLB hit on the translation the stale walk filled
        assertThat(machine.staleAccesses()).hasSize(2).last().satisfies(s -> assertThat(s.kind()).isEqualTo(StaleAccess.Kind.FRAME));

        rewrite(VA, Level.PMD, e -> pmd[0]);
        mm.flushTlb();
        machine.clearStaleAccesses();
        cpu0.load(other, 8);
        assertThat(machine.staleAccesses()).isEmpty();
        assertThat(machine.checkInvariants()).isEmpty();
    }

    @Test
    void aWalkFromACachedPdeWithPermissionsTheTablesTookIsStale() {
        cpu0.load(VA, 8);
        rewrite(VA, Level.PMD, e -> e & ~Pte.USER);
        cpu0.load(VA + 4096, 8);
        assertThat(machine.staleAccesses()).singleElement().satisfies(s -> {
            assertThat(s.kind()).isEqualTo(StaleAccess.Kind.PAGING_STRUCTURE);
            assertThat(s.cachedPfn()).as("the same frame: only the permissions went").isEqualTo(s.currentPfn());
        });
        assertThat(machine.checkInvariants()).anySatisfy(v -> assertThat(v).startsWith("paging-structure cache").contains("supervisor"));
    }

    @Test
    void aSecondaryMmuStoreThroughATranslationTheTablesWriteProtectedIsStale() {
        cpu0.store(VA, 8, 1);
        long pfn = mm.pageAt(VA);
        rewrite(VA, Level.PTE, e -> e & ~Pte.RW);
        assertThat(machine.checkTranslation("gpu", mm, VA, pfn, false)).as("a load is still allowed").isTrue();
        assertThat(machine.staleAccesses()).isEmpty();
        assertThat(machine.checkTranslation("gpu", mm, VA, pfn, true)).isFalse();
        assertThat(machine.staleAccesses()).singleElement().satisfies(s -> {
            assertThat(s.kind()).isEqualTo(StaleAccess.Kind.PERMISSION);
            assertThat(s.who()).isEqualTo("gpu");
        });
    }

    @Test
    void mprotectWithItsFlushLeavesNoStaleUse() {
        cpu0.store(VA, 8, 1);
        mm.mprotect(VA, 8 * 4096, Protection.READ);
        assertThat(cpu0.load(VA, 8)).isEqualTo(1);
        assertThat(machine.staleAccesses()).isEmpty();
        assertThat(machine.checkInvariants()).isEmpty();
    }
}
