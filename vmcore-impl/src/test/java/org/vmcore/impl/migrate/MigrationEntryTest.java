package org.vmcore.impl.migrate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.HugetlbPoolState;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationPhase;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MmCounters;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.PageFlag;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.UnmapOutcome;
import org.vmcore.api.UnmapResult;
import org.vmcore.impl.Fixtures;

/**
 * Migration entries are first-class page-table entries: fork copies them, unmap, exit and
 * truncate zap them with their RSS counters, and the page they point at stays alive exactly as
 * long as something (a reference or an entry) holds it.
 */
class MigrationEntryTest {
    private static final long VA = 0x10_0000_0000L;
    private static final long HVA = 0x20_0000_0000L;
    private static final long VALUE = 0x5eed_cafe_f00dL;
    private static final int ANON_PRIVATE = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    private static final int ANON_SHARED = MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    private static final int FILE_PRIVATE = MapFlags.MAP_PRIVATE | MapFlags.MAP_FIXED;
    private static final int FILE_SHARED = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;

    private static Machine machine() {
        return Machine.builder().node(GIB).node(GIB).cpus(1).hugePages(0, PageSize.SIZE_2M, 8)
                .hugePages(1, PageSize.SIZE_2M, 8).build();
    }

    private static void write(Machine machine, AddressSpace mm, long va, long value) {
        mm.fault(va, Access.WRITE);
        machine.writePhysical(mm.translate(va), 8, value);
    }

    private static long read(Machine machine, AddressSpace mm, long va) {
        mm.fault(va, Access.READ);
        return machine.readPhysical(mm.translate(va), 8);
    }

    private static void assertNoNegativeCounter(Machine machine) {
        for (AddressSpace mm : machine.addressSpaces()) {
            MmCounters c = mm.counters();
            assertThat(c.anonPages()).as("RssAnon of %s", mm).isNotNegative();
            assertThat(c.shmemPages()).as("RssShmem of %s", mm).isNotNegative();
            assertThat(c.hugetlbBytes()).as("HugetlbPages of %s", mm).isNotNegative();
        }
    }

    private static void assertPoolsIdle(Machine machine) {
        for (int node = 0; node < machine.config().nodeBytes().size(); node++) {
            HugetlbPoolState pool = machine.hugetlbfs().pool(node, PageSize.SIZE_2M);
            assertThat(pool.free()).as("free huge pages on node %d", node).isEqualTo(pool.total());
            assertThat(pool.reserved()).as("reserved huge pages").isZero();
        }
    }

    /** Closes the machine and checks that nothing off-heap is left. */
    private static void closeClean(Machine machine) {
        machine.close();
        assertThat(machine.offHeapBytes()).isZero();
    }

    @Nested
    @DisplayName("fork: copy_nonpresent_pte and copy_hugetlb_page_range")
    class Fork {
        @Test
        @DisplayName("fork copies an anonymous migration entry as a read one in both mms (copy_nonpresent_pte)")
        void forkCopiesAnAnonymousMigrationEntry() {
            Machine machine = machine();
            long free = machine.freeFrames();
            AddressSpace parent = machine.createAddressSpace();
            parent.mmap(VA, 4096, Protection.READ_WRITE, ANON_PRIVATE);
            write(machine, parent, VA, VALUE);
            long pfn = parent.pageAt(VA);
            UnmapResult r = machine.rmap().tryToMigrate(pfn);
            assertThat(r.mappings()).extracting(m -> m.outcome()).containsExactly(UnmapOutcome.MIGRATION_ENTRY);

            AddressSpace child = parent.fork();
            assertThat(child.counters().anonPages()).as("the child's RSS counts the migration entry").isEqualTo(1);
            assertThat(parent.counters().anonPages()).isEqualTo(1);
            assertThat(machine.page(pfn).refcount()).as("copy_nonpresent_pte takes no page reference").isZero();
            assertThat(machine.checkInvariants()).isEmpty();

            assertThat(machine.rmap().removeMigrationEntries(pfn, pfn)).as("the parent's and the child's entry").isEqualTo(2);
            assertThat(machine.page(pfn).mapcount()).isEqualTo(2);
            assertThat(machine.page(pfn).refcount()).isEqualTo(2);
            assertThat(read(machine, child, VA)).as("the child keeps the data, not a zero page").isEqualTo(VALUE);
            assertThat(child.pageAt(VA)).isEqualTo(pfn);
            // The WRITE entry became READ in the parent too: its write copies instead of reaching the child's page.
            assertThat(parent.fault(VA, Access.WRITE)).isEqualTo(FaultResult.COW_COPY);
            machine.writePhysical(parent.translate(VA), 8, 7);
            assertThat(read(machine, child, VA)).isEqualTo(VALUE);
            assertThat(machine.checkInvariants()).isEmpty();
            assertNoNegativeCounter(machine);
            child.close();
            parent.close();
            assertThat(machine.freeFrames()).isEqualTo(free);
            closeClean(machine);
        }

        @Test
        @DisplayName("fork copies a private hugetlb migration entry (copy_hugetlb_page_range)")
        void forkCopiesAPrivateHugetlbMigrationEntry() {
            Machine machine = machine();
            long free = machine.freeFrames();
            HugetlbFile file = machine.hugetlbfs().create("private", 4 * MIB, PageSize.SIZE_2M);
            AddressSpace parent = machine.createAddressSpace();
            parent.mmap(file, 0, HVA, 2 * MIB, Protection.READ_WRITE, FILE_PRIVATE);
            write(machine, parent, HVA, VALUE);
            long pfn = parent.pageAt(HVA);
            assertThat(machine.page(pfn).anonymous()).isTrue();
            machine.rmap().tryToMigrate(pfn);

            AddressSpace child = parent.fork();
            assertThat(child.counters().hugetlbBytes()).isEqualTo(2 * MIB);
            assertThat(machine.checkInvariants()).isEmpty();
            assertThat(machine.rmap().removeMigrationEntries(pfn, pfn)).isEqualTo(2);
            assertThat(read(machine, child, HVA)).as("the child keeps the private huge page").isEqualTo(VALUE);
            assertThat(child.pageAt(HVA)).isEqualTo(pfn);
            assertThat(parent.fault(HVA, Access.WRITE)).as("both entries were made read-only").isEqualTo(FaultResult.COW_COPY);
            assertThat(machine.checkInvariants()).isEmpty();
            assertNoNegativeCounter(machine);
            child.close();
            parent.close();
            assertPoolsIdle(machine);
            assertThat(machine.freeFrames()).isEqualTo(free);
            closeClean(machine);
        }

        @Test
        @DisplayName("fork does not copy a shmem mapping (vma_needs_copy): the child faults the page cache in")
        void forkDuringShmemMigrationKeepsTheData() {
            Machine machine = machine();
            long free = machine.freeFrames();
            AddressSpace parent = machine.createAddressSpace();
            parent.mmap(VA, 4096, Protection.READ_WRITE, ANON_SHARED);
            write(machine, parent, VA, VALUE);
            long pfn = parent.pageAt(VA);
            machine.rmap().tryToMigrate(pfn);
            AddressSpace child = parent.fork();
            assertThat(child.counters().shmemPages()).isZero();
            assertThat(parent.counters().shmemPages()).as("try_to_migrate leaves RssShmem alone").isEqualTo(1);
            assertThat(machine.checkInvariants()).isEmpty();
            assertThat(machine.rmap().removeMigrationEntries(pfn, pfn)).isEqualTo(1);
            assertThat(read(machine, child, VA)).isEqualTo(VALUE);
            assertThat(machine.checkInvariants()).isEmpty();
            child.close();
            parent.close();
            assertThat(machine.freeFrames()).isEqualTo(free);
            closeClean(machine);
        }

        @Test
        @DisplayName("a fork between unmap and remap of move_pages gets the new page through remove_migration_ptes")
        void forkInsideMovePagesMapsTheNewPageInTheChild() {
            Machine machine = machine();
            long free = machine.freeFrames();
            AddressSpace parent = machine.createAddressSpace();
            parent.mmap(VA, 4096, Protection.READ_WRITE, ANON_PRIVATE);
            write(machine, parent, VA, VALUE);
            long old = parent.pageAt(VA);
            List<AddressSpace> children = new ArrayList<>();
            machine.migration().setObserver(e -> {
                if (e.phase() == MigrationPhase.AFTER_UNMAP) {
                    children.add(parent.fork());
                }
            });
            MovePagesResult r = machine.migration().movePages(parent, new long[] {VA}, new int[] {1},
                    MigrationService.MPOL_MF_MOVE);
            machine.migration().setObserver(null);
            assertThat(r.status(0)).isEqualTo(1);
            AddressSpace child = children.getFirst();
            long fresh = parent.pageAt(VA);
            assertThat(fresh).isNotEqualTo(old);
            assertThat(child.pageAt(VA)).as("the child maps the new page").isEqualTo(fresh);
            assertThat(machine.page(fresh).mapcount()).isEqualTo(2);
            assertThat(read(machine, child, VA)).isEqualTo(VALUE);
            assertThat(machine.page(old).flags()).contains(PageFlag.BUDDY);
            assertThat(machine.checkInvariants()).isEmpty();
            child.close();
            parent.close();
            assertThat(machine.freeFrames()).isEqualTo(free);
            closeClean(machine);
        }
    }

    @Nested
    @DisplayName("zap: zap_nonpresent_ptes")
    class Zap {
        @Test
        @DisplayName("munmap between unmap and remap of move_pages: the new page's last reference frees it")
        void munmapInsideMovePagesLeavesNoPageBehind() {
            Machine machine = machine();
            long free = machine.freeFrames();
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 2 * 4096, Protection.READ_WRITE, ANON_PRIVATE);
            write(machine, mm, VA, VALUE);
            write(machine, mm, VA + 4096, VALUE); // keeps the page tables, so only pages could leak
            machine.migration().setObserver(e -> {
                if (e.phase() == MigrationPhase.AFTER_UNMAP) {
                    mm.munmap(VA, 4096);
                }
            });
            machine.migration().movePages(mm, new long[] {VA}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
            machine.migration().setObserver(null);
            assertThat(mm.counters().anonPages()).isEqualTo(1);
            assertThat(machine.checkInvariants()).isEmpty();
            mm.close();
            assertThat(machine.freeFrames()).isEqualTo(free);
            closeClean(machine);
        }

        @ParameterizedTest(name = "observer munmaps at {0}, then throws")
        @EnumSource(value = MigrationPhase.class, names = {"AFTER_UNMAP", "BEFORE_COPY"})
        @DisplayName("a migration put back after its page's mappings went frees the page (putback of a folio nothing maps)")
        void munmapThenThrowInsideMovePagesLeavesNoPageBehind(MigrationPhase phase) {
            Machine machine = machine();
            long free = machine.freeFrames();
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 2 * 4096, Protection.READ_WRITE, ANON_PRIVATE);
            write(machine, mm, VA, VALUE);
            write(machine, mm, VA + 4096, VALUE); // keeps the page tables, so only pages could leak
            RuntimeException boom = new IllegalStateException("observer");
            machine.migration().setObserver(e -> {
                if (e.phase() == phase) {
                    mm.munmap(VA, 4096);
                    throw boom;
                }
            });
            assertThatThrownBy(() -> machine.migration().movePages(mm, new long[] {VA}, new int[] {1},
                    MigrationService.MPOL_MF_MOVE)).isSameAs(boom);
            machine.migration().setObserver(null);
            assertThat(mm.counters().anonPages()).isEqualTo(1);
            assertThat(machine.checkInvariants()).isEmpty();
            mm.close();
            assertThat(machine.freeFrames()).isEqualTo(free);
            closeClean(machine);
        }

        @Test
        @DisplayName("munmap over migration entries drops RSS and frees the pages nothing else holds (zap_nonpresent_ptes)")
        void munmapOverMigrationEntries() {
            Machine machine = machine();
            long free = machine.freeFrames();
            HugetlbFile file = machine.hugetlbfs().create("private", 2 * MIB, PageSize.SIZE_2M);
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 2 * 4096, Protection.READ_WRITE, ANON_PRIVATE);
            mm.mmap(VA + 4 * 4096, 4096, Protection.READ_WRITE, ANON_SHARED);
            mm.mmap(file, 0, HVA, 2 * MIB, Protection.READ_WRITE, FILE_PRIVATE);
            write(machine, mm, VA, 1);
            write(machine, mm, VA + 4096, 2);
            write(machine, mm, VA + 4 * 4096, 3);
            write(machine, mm, HVA, 4);
            long anon = mm.pageAt(VA);
            long shmem = mm.pageAt(VA + 4 * 4096);
            long huge = mm.pageAt(HVA);
            for (long pfn : new long[] {anon, shmem, huge}) {
                machine.rmap().tryToMigrate(pfn);
            }
            assertThat(mm.counters().anonPages()).isEqualTo(2);
            assertThat(mm.counters().shmemPages()).isEqualTo(1);
            assertThat(mm.counters().hugetlbBytes()).isEqualTo(2 * MIB);

            mm.munmap(VA, 2 * 4096);
            mm.munmap(VA + 4 * 4096, 4096);
            mm.munmap(HVA, 2 * MIB);
            assertThat(mm.counters().anonPages()).isZero();
            assertThat(mm.counters().shmemPages()).isZero();
            assertThat(mm.counters().hugetlbBytes()).isZero();
            for (long pfn : new long[] {anon, shmem}) {
                assertThat(machine.page(pfn).flags()).as("pfn 0x%x is freed", pfn).contains(PageFlag.BUDDY);
            }
            assertThat(machine.page(huge).refcount()).isZero();
            assertPoolsIdle(machine); // the huge page went back to its pool
            assertThat(machine.checkInvariants()).isEmpty();
            mm.close();
            assertThat(machine.freeFrames()).isEqualTo(free);
            closeClean(machine);
        }

        @Test
        @DisplayName("exit over migration entries frees only what no other entry or cache still holds")
        void exitOverMigrationEntries() {
            Machine machine = machine();
            long free = machine.freeFrames();
            HugetlbFile priv = machine.hugetlbfs().create("private", 2 * MIB, PageSize.SIZE_2M);
            HugetlbFile shared = machine.hugetlbfs().create("shared", 2 * MIB, PageSize.SIZE_2M);
            AddressSpace parent = machine.createAddressSpace();
            parent.mmap(VA, 4096, Protection.READ_WRITE, ANON_PRIVATE);
            parent.mmap(priv, 0, HVA, 2 * MIB, Protection.READ_WRITE, FILE_PRIVATE);
            parent.mmap(shared, 0, HVA + GIB, 2 * MIB, Protection.READ_WRITE, FILE_SHARED);
            write(machine, parent, VA, 1);
            write(machine, parent, HVA, 2);
            write(machine, parent, HVA + GIB, 3);
            long anon = parent.pageAt(VA);
            long huge = parent.pageAt(HVA);
            long cached = parent.pageAt(HVA + GIB);
            for (long pfn : new long[] {anon, huge, cached}) {
                machine.rmap().tryToMigrate(pfn);
            }
            AddressSpace child = parent.fork();
            parent.close();
            assertThat(machine.page(anon).flags()).as("the child's entry still points at it").doesNotContain(PageFlag.BUDDY);
            assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free()).as("the private and the cached huge page are held")
                    .isEqualTo(6);
            assertThat(machine.checkInvariants()).isEmpty();
            assertThat(machine.rmap().removeMigrationEntries(anon, anon)).isEqualTo(1);
            assertThat(machine.rmap().removeMigrationEntries(huge, huge)).isEqualTo(1);
            assertThat(read(machine, child, VA)).isEqualTo(1);
            assertThat(read(machine, child, HVA)).isEqualTo(2);
            assertThat(machine.rmap().tryToMigrate(anon).success()).isTrue();
            assertThat(machine.rmap().tryToMigrate(huge).success()).isTrue();
            child.close();
            assertThat(machine.page(anon).flags()).contains(PageFlag.BUDDY);
            assertThat(machine.page(cached).refcount()).as("the page cache keeps the shared page").isEqualTo(1);
            assertThat(machine.page(cached).mapcount()).isZero();
            assertThat(machine.checkInvariants()).isEmpty();
            priv.truncate(0);
            shared.truncate(0);
            assertPoolsIdle(machine);
            assertThat(machine.freeFrames()).isEqualTo(free);
            closeClean(machine);
        }

        @Test
        @DisplayName("truncate over migration entries (hugetlb_vmdelete_list) settles counters, references and the pool")
        void truncateOverMigrationEntries() {
            Machine machine = machine();
            HugetlbFile file = machine.hugetlbfs().create("f", 4 * MIB, PageSize.SIZE_2M);
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(file, 0, HVA, 4 * MIB, Protection.READ_WRITE, FILE_SHARED);
            mm.mmap(file, 0, HVA + GIB, 4 * MIB, Protection.READ_WRITE, FILE_PRIVATE);
            write(machine, mm, HVA, 1);
            write(machine, mm, HVA + 2 * MIB, 2);
            write(machine, mm, HVA + GIB + 2 * MIB, 3); // a private copy of file page 1
            long cached = file.pageAt(1);
            long anon = mm.pageAt(HVA + GIB + 2 * MIB);
            machine.rmap().tryToMigrate(cached);
            machine.rmap().tryToMigrate(anon);
            assertThat(mm.counters().hugetlbBytes()).isEqualTo(6 * MIB);
            assertThat(machine.checkInvariants()).isEmpty();

            file.truncate(2 * MIB);
            assertThat(mm.counters().hugetlbBytes()).isEqualTo(2 * MIB);
            assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free()).as("file page 1 and its private copy are freed")
                    .isEqualTo(7);
            assertThat(machine.checkInvariants()).isEmpty();
            assertNoNegativeCounter(machine);
            mm.close();
            file.truncate(0);
            assertPoolsIdle(machine);
            closeClean(machine);
        }
    }

    @Nested
    @DisplayName("counters")
    class Counters {
        @Test
        @DisplayName("HugetlbPages does not change during migration (try_to_migrate_one subtracts it only for hwpoison)")
        void hugetlbPagesDoNotChangeDuringMigration() {
            Machine machine = machine();
            HugetlbFile file = machine.hugetlbfs().create("f", 2 * MIB, PageSize.SIZE_2M);
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(file, 0, HVA, 2 * MIB, Protection.READ_WRITE, FILE_SHARED);
            write(machine, mm, HVA, 1);
            List<String> seen = new ArrayList<>();
            machine.migration().setObserver(e -> seen.add(e.phase() + "=" + mm.counters().hugetlbBytes()));
            MovePagesResult r = machine.migration().movePages(mm, new long[] {HVA}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
            machine.migration().setObserver(null);
            assertThat(r.status(0)).isEqualTo(1);
            assertThat(seen).containsExactly("AFTER_UNMAP=" + 2 * MIB, "BEFORE_COPY=" + 2 * MIB, "AFTER_COPY=" + 2 * MIB,
                    "AFTER_REMAP=" + 2 * MIB);
            long pfn = file.pageAt(0);
            machine.rmap().tryToMigrate(pfn);
            assertThat(mm.counters().hugetlbBytes()).isEqualTo(2 * MIB);
            machine.rmap().removeMigrationEntries(pfn, pfn);
            assertThat(mm.counters().hugetlbBytes()).isEqualTo(2 * MIB);
            assertThat(machine.checkInvariants()).isEmpty();
            mm.close();
            closeClean(machine);
        }

        @Test
        @DisplayName("no counter goes negative when a sharer of a PMD table holds the migration entry")
        void noCounterGoesNegativeWithSharedTables() {
            Machine machine = Machine.builder().node(4 * GIB).node(GIB).cpus(1).hugePages(0, PageSize.SIZE_2M, 520).build();
            HugetlbFile file = machine.hugetlbfs().create("f", GIB, PageSize.SIZE_2M);
            AddressSpace a = machine.createAddressSpace();
            AddressSpace b = machine.createAddressSpace();
            AddressSpace c = machine.createAddressSpace();
            a.mmap(file, 0, 4 * GIB, GIB, Protection.READ_WRITE, FILE_SHARED);
            b.mmap(file, 0, 6 * GIB, GIB, Protection.READ_WRITE, FILE_SHARED);
            c.mmap(file, 0, 8 * GIB, GIB, Protection.READ_WRITE, FILE_SHARED);
            write(machine, a, 4 * GIB, 1); // a faults the page; b and c only share a's table
            b.fault(6 * GIB, Access.READ);
            c.fault(8 * GIB, Access.READ);
            long pfn = file.pageAt(0);
            machine.rmap().tryToMigrate(pfn);
            assertNoNegativeCounter(machine);
            machine.rmap().removeMigrationEntries(pfn, pfn);
            assertNoNegativeCounter(machine);
            machine.rmap().tryToMigrate(pfn);
            c.munmap(8 * GIB, GIB);
            b.munmap(6 * GIB, GIB);
            assertNoNegativeCounter(machine);
            assertThat(machine.checkInvariants()).isEmpty();
            for (AddressSpace mm : List.of(a, b, c)) {
                mm.close();
            }
            file.truncate(0);
            assertPoolsIdle(machine);
            closeClean(machine);
        }
    }

    @Nested
    @DisplayName("lazy hugetlb fork")
    class LazyHugetlbFork {
        @Test
        @DisplayName("fork of a private hugetlb mapping without a private page copies nothing (bcd51a3c679d, vma_needs_copy)")
        void forkOfAPrivateHugetlbMappingWithoutAnonPagesIsLazy() {
            Machine machine = machine();
            HugetlbFile file = machine.hugetlbfs().create("f", 4 * MIB, PageSize.SIZE_2M);
            AddressSpace shared = machine.createAddressSpace();
            shared.mmap(file, 0, HVA, 4 * MIB, Protection.READ_WRITE, FILE_SHARED);
            write(machine, shared, HVA, VALUE);
            AddressSpace parent = machine.createAddressSpace();
            parent.mmap(file, 0, HVA, 4 * MIB, Protection.READ_WRITE, FILE_PRIVATE);
            assertThat(read(machine, parent, HVA)).isEqualTo(VALUE);
            long page = file.pageAt(0);

            AddressSpace child = parent.fork();
            assertThat(child.pageAt(HVA)).as("no entry copied").isEqualTo(-1);
            assertThat(child.counters().hugetlbBytes()).isZero();
            assertThat(machine.page(page).mapcount()).isEqualTo(2);
            assertThat(child.fault(HVA, Access.READ)).as("the child faults the file page in").isEqualTo(FaultResult.PAGE_CACHE);
            assertThat(read(machine, child, HVA)).isEqualTo(VALUE);

            write(machine, parent, HVA + 2 * MIB, 5); // now the mapping has an anon_vma: fork copies it
            AddressSpace second = parent.fork();
            assertThat(second.pageAt(HVA)).isEqualTo(page);
            assertThat(second.pageAt(HVA + 2 * MIB)).isEqualTo(parent.pageAt(HVA + 2 * MIB));
            assertThat(second.counters().hugetlbBytes()).isEqualTo(4 * MIB);
            assertThat(machine.checkInvariants()).isEmpty();
            for (AddressSpace mm : List.of(second, child, parent, shared)) {
                mm.close();
            }
            file.truncate(0);
            assertPoolsIdle(machine);
            closeClean(machine);
        }
    }
}
