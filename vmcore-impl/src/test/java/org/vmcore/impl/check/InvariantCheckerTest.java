package org.vmcore.impl.check;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;

import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.HugetlbFile;
import org.vmcore.impl.hugetlb.HugetlbFsImpl;
import org.vmcore.api.InvariantViolationException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.impl.Fixtures.SharedWindow;
import org.vmcore.impl.Fixtures;
import org.vmcore.impl.SimMachine;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.MigrationEntry;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.SwapEntry;

/** Each kind of corruption is named by the checker. */
@SuppressWarnings("try") // a lock hold is used only for its scope
class InvariantCheckerTest {
    private static final long VA = 0x10_0000_0000L;

    /** A machine with anonymous memory and a shared hugetlb window in two processes, then one corruption. */
    private static void corruptAndExpect(Consumer<World> corruption, String rule) {
        corruptAndExpect(corruption, rule, "");
    }

    /** As above, and the violation names {@code detail}. */
    private static void corruptAndExpect(Consumer<World> corruption, String rule, String detail) {
        try (Machine machine = Machine.builder().node(4 * GIB).cpus(1).hugePages(0, PageSize.SIZE_2M, 520).build()) {
            SharedWindow window = Fixtures.sharedWindow(machine, 4 * GIB, 6 * GIB, false);
            HugetlbFile file = window.file();
            AddressSpace a = window.a();
            AddressSpace b = window.b();
            a.mmap(VA, 4 * 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED
                    | MapFlags.MAP_POPULATE);
            a.fault(4 * GIB, Access.WRITE);
            b.fault(6 * GIB, Access.READ);
            machine.cpu(0).switchTo(a);
            machine.cpu(0).load(VA, 8);
            assertThat(machine.checkInvariants()).as("consistent before the corruption").isEmpty();
            World w = new World((SimMachine) machine, (SimAddressSpace) a, (SimAddressSpace) b, file);
            try (MachineLock.Held locked = w.machine.lock().exclusive()) {
                corruption.accept(w);
            }
            assertThat(machine.checkInvariants()).as("violations").anySatisfy(v -> assertThat(v).startsWith(rule).contains(detail));
        }
    }

    @Test
    void anInvalidationLeftOpenIsNamed() {
        corruptAndExpect(w -> w.a().notifiers().rangeStartCompleting(
                new org.vmcore.api.NotifierRange(w.a(), VA, VA + 4096, org.vmcore.api.NotifierEvent.UNMAP)), "open invalidation");
    }

    record World(SimMachine machine, SimAddressSpace a, SimAddressSpace b, HugetlbFile file) {
        MemMap d() {
            return SharedSecrets.memMap(machine.memory());
        }
    }

    @Test
    void aWrongMapcountIsNamed() {
        corruptAndExpect(w -> w.d().addMapcount(w.file().pageAt(0), 1), "mapcount");
    }

    @Test
    void aWrongRefcountIsNamed() {
        corruptAndExpect(w -> w.d().addRefcount(w.a().pageAt(VA), 1), "refcount");
    }

    @Test
    void aWrongShareCountIsNamed() {
        corruptAndExpect(w -> w.d().addPtShareCount(Pte.pfn(w.a().pageTable().entry(4 * GIB, Level.PUD)), 1), "share count");
    }

    @Test
    void aWritableEntryInAReadOnlyVmaIsNamed() {
        corruptAndExpect(w -> w.a().vma(VA).setProtection(Protection.READ), "VMA protection");
    }

    @Test
    void anEntryOutsideAnyVmaIsNamed() {
        corruptAndExpect(w -> w.a().pageTable().install(VA + 16 * 4096, Level.PTE,
                Pte.leaf(w.a().pageAt(VA), PageSize.SIZE_4K, Pte.PRESENT | Pte.USER)), "VMA coverage");
    }

    @Test
    void aClearedEntryStillInATlbIsNamed() {
        corruptAndExpect(w -> w.a().pageTable().getAndClearSlot(w.a().pageTable().slot(VA, Level.PTE)), "TLB");
    }

    @Test
    void aWritableTlbEntryTheTablesWriteProtectedIsNamed() {
        corruptAndExpect(w -> replace(w, 0, w.a().pageTable().entry(VA, Level.PTE) & ~Pte.RW), "TLB", "refuse a store");
    }

    @Test
    void aCachedPdeTheTablesNoLongerHoldIsNamed() {
        corruptAndExpect(w -> w.a().pageTable().getAndClearSlot(w.a().pageTable().slot(VA, Level.PMD)), "paging-structure cache",
                "PDE for 0x1000000000");
    }

    @Test
    void aCachedPdeWithAPermissionTheTablesTookIsNamed() {
        corruptAndExpect(w -> {
            long slot = w.a().pageTable().slot(VA, Level.PMD);
            long e = w.a().pageTable().readSlot(slot);
            w.a().pageTable().compareAndSetSlot(slot, e, e & ~Pte.USER);
        }, "paging-structure cache", "but the tables hold table");
    }

    @Test
    void aCachedPdeOfAnInvalidationInProgressIsNotNamed() {
        try (Machine machine = Machine.builder().node(GIB).cpus(1).build()) {
            SimAddressSpace a = (SimAddressSpace) machine.createAddressSpace();
            a.mmap(VA, 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED
                    | MapFlags.MAP_POPULATE);
            machine.cpu(0).switchTo(a);
            machine.cpu(0).load(VA, 8);
            NotifierRange range = new NotifierRange(a, VA + 0x1000, VA + 0x2000, NotifierEvent.PROTECTION_VMA);
            try (MachineLock.Held locked = ((SimMachine) machine).lock().exclusive()) {
                long slot = a.pageTable().slot(VA, Level.PMD);
                long e = a.pageTable().readSlot(slot);
                a.pageTable().compareAndSetSlot(slot, e, e & ~Pte.USER);
                a.notifiers().rangeStartCompleting(range);
            }
            assertThat(machine.checkInvariants()).as("an invalidation open inside the PDE's 2 MiB covers it")
                    .anySatisfy(v -> assertThat(v).startsWith("open invalidation"))
                    .noneSatisfy(v -> assertThat(v).startsWith("paging-structure cache"));
            try (MachineLock.Held locked = ((SimMachine) machine).lock().exclusive()) {
                a.notifiers().rangeEnd(range);
            }
            assertThat(machine.checkInvariants()).anySatisfy(v -> assertThat(v).startsWith("paging-structure cache"));
        }
    }

    /** Replaces the entry of VA + 4 KiB * page with {@code entry}. */
    private static void replace(World w, int page, long entry) {
        long slot = w.a().pageTable().slot(VA + page * 4096L, Level.PTE);
        w.a().pageTable().compareAndSetSlot(slot, w.a().pageTable().readSlot(slot), entry);
    }

    @Test
    void aStraySwapEntryIsNamed() {
        corruptAndExpect(w -> replace(w, 1, SwapEntry.make(0, 1, 0)), "swap entry", "names no slot of the swap device");
        corruptAndExpect(w -> replace(w, 1, SwapEntry.make(SwapEntry.TYPE_PTE_MARKER, 1, 0)), "stray entry");
    }

    @Test
    void aMigrationEntryToAFreeFrameIsNamed() {
        corruptAndExpect(w -> replace(w, 1, MigrationEntry.make(MigrationEntry.Kind.READ, freeFrame(w.machine()), false, false, 0)),
                "migration entry", "not a live 4K page");
    }

    /** The highest frame the buddy allocator holds (the last one is the zero page, the ones below may be in use). */
    private static long freeFrame(SimMachine machine) {
        for (long pfn = machine.memory().frameCount() - 1; pfn >= 0; pfn--) {
            if (machine.page(pfn).flags().equals(java.util.Set.of(org.vmcore.api.PageFlag.BUDDY))) {
                return pfn;
            }
        }
        throw new AssertionError("no free frame");
    }

    @Test
    void aMigrationEntryWhereTheRmapDoesNotLookIsNamed() {
        // the page of VA has index VA >>> 12: its rmap looks at VA, never at VA + 8 KiB
        corruptAndExpect(w -> {
            long pfn = w.a().pageAt(VA);
            w.machine().rmap().tryToMigrate(pfn);
            replace(w, 2, MigrationEntry.make(MigrationEntry.Kind.READ, pfn, false, false, 0));
        }, "migration entry", "rmap");
    }

    @Test
    void theMapcountOfAPageUnderMigrationIsChecked() {
        corruptAndExpect(w -> {
            long pfn = w.a().pageAt(VA);
            w.machine().rmap().tryToMigrate(pfn);
            w.d().addMapcount(pfn, 1);
        }, "mapcount", "migration entries");
    }

    @Test
    void theRefcountOfAPageUnderMigrationIsChecked() {
        corruptAndExpect(w -> {
            long pfn = w.a().pageAt(VA);
            w.machine().rmap().tryToMigrate(pfn);
            w.d().addRefcount(pfn, 1);
        }, "refcount", "migration entries hold none");
    }

    @Test
    void aMigrationEntryZappedWithoutItsRssIsNamed() {
        corruptAndExpect(w -> {
            w.machine().rmap().tryToMigrate(w.a().pageAt(VA));
            w.a().pageTable().getAndClearSlot(w.a().pageTable().slot(VA, Level.PTE));
        }, "RSS counter", "RssAnon 4 but 3");
    }

    @Test
    void anAllocatedFrameWithoutAReferenceIsNamed() {
        corruptAndExpect(w -> {
            long pfn = w.machine().memory().tryAllocate(0, 0, false);
            w.d().setRefcount(pfn, 0);
        }, "unreferenced frame");
    }

    @Test
    void aPageOnlyAMigrationEntryHoldsIsNotUnreferenced() {
        try (Machine machine = Machine.builder().node(GIB).build()) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED
                    | MapFlags.MAP_POPULATE);
            long pfn = mm.pageAt(VA);
            machine.rmap().tryToMigrate(pfn);
            assertThat(machine.page(pfn).refcount()).isZero();
            assertThat(machine.checkInvariants()).isEmpty();
            machine.rmap().removeMigrationEntries(pfn, pfn);
        }
    }

    @Test
    void aNegativeCounterIsNamed() {
        corruptAndExpect(w -> w.a().addShmemPages(-1), "negative counter");
    }

    @Test
    void aReservationLeakIsNamed() {
        corruptAndExpect(w -> ((HugetlbFsImpl) w.machine().hugetlbfs()).pool(PageSize.SIZE_2M).reserve(1), "pool reservations");
    }

    @Test
    void theOptionThrowsOnTheFirstInconsistentOperation() {
        try (Machine machine = Machine.builder().node(GIB).checkInvariantsAfterEveryOperation(true).build()) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED
                    | MapFlags.MAP_POPULATE);
            SharedSecrets.memMap(((SimMachine) machine).memory()).addMapcount(mm.pageAt(VA), 5);
            assertThatThrownBy(() -> mm.mmap(0, 4096, Protection.READ, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS))
                    .isInstanceOfSatisfying(InvariantViolationException.class, e -> assertThat(e.violations())
                            .anySatisfy(v -> assertThat(v).startsWith("mapcount: pfn")))
                    .hasMessageContaining("after mmap");
        }
    }
}
