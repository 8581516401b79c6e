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
import org.junit.jupiter.params.provider.ValueSource;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Errno;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationPhase;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MigrationWaitException;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageFlag;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.Regression;
import org.vmcore.api.UnmapOutcome;
import org.vmcore.api.UnmapResult;
import org.vmcore.api.VmException;
import org.vmcore.impl.Fixtures;
import org.vmcore.impl.SimMachine;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/** Migration of pages behind shared PMD tables: the scenarios of the semantics reference, section 7. */
class MigrationTest {
    private static final int SHARED = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
    private static final long H = 6 * MIB; // the hot huge page: file page 3 of the window

    /** Two nodes with 2 MiB pools on both, n sharers of one 1 GiB window (each at its own aligned address). */
    private static final class Setup implements AutoCloseable {
        final Machine machine;
        final HugetlbFile file;
        final List<AddressSpace> sharers;

        Setup(int n, boolean regression) {
            Machine.Builder b = Machine.builder().node(2 * GIB).node(2 * GIB).cpus(n + 1)
                    .hugePages(0, PageSize.SIZE_2M, 520).hugePages(1, PageSize.SIZE_2M, 520).detectStaleTranslations(true);
            if (regression) {
                b.enable(Regression.PRE_017B1660);
            } else {
                b.checkInvariantsAfterEveryOperation(true); // the regression leaves stale TLB entries by design
            }
            machine = b.build();
            Fixtures.Sharers window = Fixtures.sharers(machine, false, Fixtures.windowBases(8 * GIB, n));
            file = window.file();
            sharers = window.mms();
        }

        /** Where sharer i maps the window: {@link Fixtures#windowBases} from 8 GiB. */
        static long base(int i) {
            return (8L + 2 * i) * GIB;
        }

        Cpu cpuOf(int i) {
            Cpu cpu = machine.cpu(i);
            if (cpu.current() != sharers.get(i)) {
                cpu.switchTo(sharers.get(i));
            }
            return cpu;
        }

        @Override
        public void close() {
            machine.close();
        }
    }

    @Nested
    @DisplayName("pages behind a shared PMD table: unshare every sharer but the last (017b1660)")
    class SharedPmdTables {
        /**
         * S1, deterministic: P2 caches H in its TLB, migration runs to the point after the copy, P2
         * writes again. Fixed: P2 was unshared and flushed, so its write waits for the migration and
         * then lands in the new page. Pre-fix: P2 writes through its stale TLB entry into the old
         * page, and the write is lost.
         */
        @ParameterizedTest(name = "regression={0}")
        @ValueSource(booleans = {false, true})
        void s1ALateWriteLandsInTheNewPageOnlyWithTheFix(boolean regression) {
            try (Setup s = new Setup(2, regression)) {
                Cpu p1 = s.cpuOf(0);
                Cpu p2 = s.cpuOf(1);
                p1.store(Setup.base(0) + H, 8, 1); // P1 faults first: it owns the table
                p2.store(Setup.base(1) + H + 8, 8, 2); // P2 shares it and caches H
                long old = s.file.pageAt(3);
                assertThat(s.machine.page(old).mapcount()).isEqualTo(1);
                List<String> late = new ArrayList<>();
                s.machine.migration().setObserver(e -> {
                    if (e.phase() == MigrationPhase.AFTER_COPY) {
                        try {
                            p2.store(Setup.base(1) + H + 8, 8, 3);
                            late.add("stored");
                        } catch (MigrationWaitException w) {
                            late.add("waits");
                        }
                    }
                });
                MovePagesResult r = s.machine.migration().movePages(s.sharers.get(0), new long[] {Setup.base(0) + H}, new int[] {1},
                        MigrationService.MPOL_MF_MOVE);
                s.machine.migration().setObserver(null);
                assertThat(r.notMigrated()).isZero();
                assertThat(r.status(0)).isEqualTo(1);
                long fresh = s.file.pageAt(3);
                assertThat(fresh).isNotEqualTo(old);
                assertThat(s.machine.page(fresh).node()).isEqualTo(1);
                if (!regression) {
                    assertThat(late).containsExactly("waits");
                    p2.store(Setup.base(1) + H + 8, 8, 3); // the retry after the migration ended
                    assertThat(s.machine.readPhysical((fresh << 12) + 8, 8)).isEqualTo(3);
                    assertThat(s.machine.staleAccesses()).isEmpty();
                } else {
                    assertThat(late).containsExactly("stored");
                    assertThat(s.machine.readPhysical((fresh << 12) + 8, 8)).as("the write is lost").isEqualTo(2);
                    assertThat(s.machine.readPhysical((old << 12) + 8, 8)).as("it went to the old, freed page").isEqualTo(3);
                    assertThat(s.machine.staleAccesses()).isNotEmpty().allSatisfy(a -> {
                        assertThat(a.addressSpace()).isEqualTo(s.sharers.get(1));
                        assertThat(a.cachedPfn()).isEqualTo(old);
                    });
                }
                // P1 always reads what the new page holds
                assertThat(p1.load(Setup.base(0) + H, 8)).isEqualTo(1);
            }
        }

        /** A write made before the copy is copied even without the fix. */
        @Test
        void aStaleWriteBeforeTheCopyIsCopiedEvenWithoutTheFix() {
            try (Setup s = new Setup(2, true)) {
                Cpu p1 = s.cpuOf(0);
                Cpu p2 = s.cpuOf(1);
                p1.store(Setup.base(0) + H, 8, 1);
                p2.store(Setup.base(1) + H + 8, 8, 2);
                s.machine.migration().setObserver(e -> {
                    if (e.phase() == MigrationPhase.BEFORE_COPY) {
                        p2.store(Setup.base(1) + H + 8, 8, 3);
                    }
                });
                s.machine.migration().movePages(s.sharers.get(0), new long[] {Setup.base(0) + H}, new int[] {1},
                        MigrationService.MPOL_MF_MOVE);
                assertThat(s.machine.readPhysical((s.file.pageAt(3) << 12) + 8, 8)).isEqualTo(3);
            }
        }

        /** S4: whichever sharer owns the table, the first n-1 visited are unshared and the last gets the migration entry. */
        @ParameterizedTest(name = "owner is sharer {0}")
        @ValueSource(ints = {0, 1, 2})
        void s4WalkOrderUnsharesAllButTheLast(int owner) {
            try (Setup s = new Setup(3, false)) {
                s.sharers.get(owner).fault(Setup.base(owner) + H, Access.WRITE);
                for (int i = 0; i < 3; i++) {
                    s.sharers.get(i).fault(Setup.base(i) + H, Access.READ);
                }
                long page = s.file.pageAt(3);
                long table = ((SimAddressSpace) s.sharers.get(owner)).pageTable().entry(Setup.base(owner), Level.PUD);
                assertThat(((SimMachine) s.machine).memory().descriptors().ptShareCount(Pte.pfn(table))).isEqualTo(2);
                List<NotifierRange> ranges = new ArrayList<>();
                for (AddressSpace mm : s.sharers) {
                    mm.registerNotifier(new MmuNotifier() {
                        @Override
                        public void invalidateRangeStart(NotifierRange range) {
                            ranges.add(range);
                        }
                    });
                }
                UnmapResult r = s.machine.rmap().tryToMigrate(page);
                assertThat(r.mappings()).extracting(m -> m.outcome())
                        .containsExactly(UnmapOutcome.UNSHARED, UnmapOutcome.UNSHARED, UnmapOutcome.MIGRATION_ENTRY);
                assertThat(r.mappings()).extracting(m -> m.addressSpace()).containsExactlyElementsOf(s.sharers);
                assertThat(r.success()).isTrue();
                assertThat(s.sharers.get(0).counters().pmdTables()).isZero();
                assertThat(s.sharers.get(1).counters().pmdTables()).isZero();
                assertThat(s.sharers.get(2).counters().pmdTables()).isEqualTo(1);
                assertThat(ranges).as("every range widened to the sharer's whole window").hasSize(3).allSatisfy(range -> {
                    long base = range.start();
                    assertThat(base % GIB).isZero();
                    assertThat(range.end() - base).isEqualTo(GIB);
                });
                assertThat(s.machine.rmap().removeMigrationEntries(page, page)).isEqualTo(1);
                assertThat(s.machine.page(page).mapcount()).isEqualTo(1);
                assertThat(s.sharers.get(0).fault(Setup.base(0) + H, Access.READ)).as("unshared sharers share again on fault")
                        .isEqualTo(FaultResult.SHARED_TABLE);
            }
        }

        /** Without the fix the first sharer visited clears the shared entry and the walk stops at mapcount 0. */
        @Test
        void preFixWalkStopsAfterTheFirstSharer() {
            try (Setup s = new Setup(3, true)) {
                for (int i = 0; i < 3; i++) {
                    s.sharers.get(i).fault(Setup.base(i) + H, Access.WRITE);
                }
                UnmapResult r = s.machine.rmap().tryToMigrate(s.file.pageAt(3));
                assertThat(r.mappings()).extracting(m -> m.outcome()).containsExactly(UnmapOutcome.MIGRATION_ENTRY);
                assertThat(s.sharers.get(1).counters().pmdTables()).as("nobody was unshared").isEqualTo(1);
                assertThat(s.sharers.get(2).fault(Setup.base(2) + H, Access.READ)).as("every sharer sees the migration entry")
                        .isEqualTo(FaultResult.MIGRATION_WAIT);
                s.machine.rmap().removeMigrationEntries(s.file.pageAt(3), s.file.pageAt(3));
            }
        }
    }

    @Nested
    @DisplayName("move_pages and migrate_pages")
    class MovePagesAndMigratePages {
        /** S5: mappings that cannot share each hold an entry; without MOVE_ALL a page mapped twice is refused. */
        @Test
        void s5NonShareableMappingsMigrateWithPerProcessEntries() {
            try (Machine machine = Machine.builder().node(2 * GIB).node(2 * GIB).hugePages(0, PageSize.SIZE_2M, 64)
                    .hugePages(1, PageSize.SIZE_2M, 64).build()) {
                HugetlbFile file = machine.hugetlbfs().create("f", 64 * MIB, PageSize.SIZE_2M);
                AddressSpace a = machine.createAddressSpace();
                AddressSpace b = machine.createAddressSpace();
                a.mmap(file, 0, GIB, 64 * MIB, Protection.READ_WRITE, SHARED); // under 1 GiB: no sharing
                b.mmap(file, 0, 3 * GIB, 64 * MIB, Protection.READ_WRITE, SHARED);
                a.fault(GIB, Access.WRITE);
                b.fault(3 * GIB, Access.READ);
                long page = file.pageAt(0);
                assertThat(machine.page(page).mapcount()).isEqualTo(2);
                MovePagesResult refused = machine.migration().movePages(a, new long[] {GIB}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
                assertThat(refused.status(0)).isEqualTo(-Errno.EACCES);
                assertThat(refused.notMigrated()).as("do_pages_move: -EACCES is reported in status only").isZero();
                assertThat(machine.migration().migratePages(a, new int[] {0}, new int[] {1}, MigrationService.MPOL_MF_MOVE))
                        .as("MOVE skips it: nothing queued, nothing failed").isZero();
                assertThat(file.pageAt(0)).isEqualTo(page);

                List<UnmapOutcome> outcomes = new ArrayList<>();
                machine.migration().setObserver(e -> {
                    if (e.phase() == MigrationPhase.AFTER_UNMAP) {
                        assertThat(machine.page(e.oldPfn()).mapcount()).isZero();
                        outcomes.add(UnmapOutcome.MIGRATION_ENTRY);
                    }
                });
                MovePagesResult moved = machine.migration().movePages(a, new long[] {GIB}, new int[] {1}, MigrationService.MPOL_MF_MOVE_ALL);
                assertThat(moved.status(0)).isEqualTo(1);
                long fresh = file.pageAt(0);
                assertThat(machine.page(fresh).mapcount()).isEqualTo(2);
                assertThat(a.pageAt(GIB)).isEqualTo(fresh);
                assertThat(b.pageAt(3 * GIB)).isEqualTo(fresh);
                assertThat(machine.migration().stats()).containsEntry("hugetlb_migrate_success", 1L).containsEntry("pgmigrate_success", 512L);
            }
        }

        @Test
        void movePagesReportsStatusesAsTheKernelDoes() {
            try (Setup s = new Setup(1, false)) {
                AddressSpace mm = s.sharers.getFirst();
                long base = Setup.base(0);
                mm.fault(base, Access.WRITE);
                long anon = mm.mmap(0, 8192, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
                mm.fault(anon, Access.WRITE);
                long[] addresses = {base + 4096, base, base + 4096, base + 2 * MIB, 0x1000, anon, anon + 4096};
                MovePagesResult query = s.machine.migration().movePages(mm, addresses, null, MigrationService.MPOL_MF_MOVE);
                assertThat(query.status()).containsExactly(0, 0, 0, -Errno.ENOENT, -Errno.EFAULT, 0, -Errno.ENOENT);
                MovePagesResult r = s.machine.migration().movePages(mm, addresses, new int[] {1, 1, 1, 1, 1, 1, 1},
                        MigrationService.MPOL_MF_MOVE);
                // a tail address: -EACCES, also right after its head, whose batch migrates only when the tail
                // stops it (do_pages_move); lookup errors are reported in status only, not counted
                assertThat(r.status()).containsExactly(-Errno.EACCES, 1, -Errno.EACCES, -Errno.ENOENT, -Errno.EFAULT, 1, -Errno.ENOENT);
                assertThat(r.notMigrated()).isZero();
                MovePagesResult again = s.machine.migration().movePages(mm, new long[] {base + 4096}, new int[] {1},
                        MigrationService.MPOL_MF_MOVE);
                assertThat(again.status()).as("once the head moved, a tail address is already there").containsExactly(1);
                assertThatThrownBy(() -> s.machine.migration().movePages(mm, addresses, new int[] {2, 2, 2, 2, 2, 2, 2},
                        MigrationService.MPOL_MF_MOVE)).isInstanceOf(InvalidArgumentException.class).hasMessageContaining("-ENODEV");
                assertThatThrownBy(() -> s.machine.migration().movePages(mm, addresses, new int[] {1}, MigrationService.MPOL_MF_MOVE))
                        .isInstanceOf(InvalidArgumentException.class);
                assertThatThrownBy(() -> s.machine.migration().movePages(mm, addresses, null, 0)).hasMessageContaining("flags=0");
            }
        }

        @Test
        void migratePagesMovesEveryPageOfTheAddressSpaceAndKeepsContents() {
            try (Setup s = new Setup(2, false)) {
                Cpu p1 = s.cpuOf(0);
                Cpu p2 = s.cpuOf(1);
                for (int i = 0; i < 8; i++) {
                    p1.store(Setup.base(0) + i * 2 * MIB + 64, 8, 100 + i);
                }
                for (int i = 0; i < 8; i++) {
                    assertThat(p2.load(Setup.base(1) + i * 2 * MIB + 64, 8)).isEqualTo(100 + i);
                }
                long free0 = s.machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free();
                assertThat(s.machine.migration().migratePages(s.sharers.get(0), new int[] {0}, new int[] {1},
                        MigrationService.MPOL_MF_MOVE)).isZero();
                for (int i = 0; i < 8; i++) {
                    assertThat(s.machine.page(s.file.pageAt(i)).node()).isEqualTo(1);
                    assertThat(p2.load(Setup.base(1) + i * 2 * MIB + 64, 8)).isEqualTo(100 + i);
                    p2.store(Setup.base(1) + i * 2 * MIB + 64, 8, 200 + i);
                    assertThat(p1.load(Setup.base(0) + i * 2 * MIB + 64, 8)).isEqualTo(200 + i);
                }
                assertThat(s.machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free()).isEqualTo(free0 + 8);
                assertThat(s.machine.staleAccesses()).isEmpty();
            }
        }

        @Test
        void anonymousPagesMigrateAcrossAForkTree() {
            try (Setup s = new Setup(1, false)) {
                AddressSpace root = s.sharers.getFirst();
                long va = root.mmap(0, 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
                Cpu cpu = s.cpuOf(0);
                cpu.store(va, 8, 77);
                AddressSpace child = root.fork();
                AddressSpace grandchild = child.fork();
                long page = root.pageAt(va);
                MovePagesResult r = s.machine.migration().movePages(root, new long[] {va}, new int[] {1}, MigrationService.MPOL_MF_MOVE_ALL);
                assertThat(r.status(0)).isEqualTo(1);
                long fresh = root.pageAt(va);
                assertThat(fresh).isNotEqualTo(page);
                assertThat(child.pageAt(va)).isEqualTo(fresh);
                assertThat(grandchild.pageAt(va)).isEqualTo(fresh);
                assertThat(s.machine.page(fresh).mapcount()).isEqualTo(3);
                assertThat(s.machine.page(fresh).anonymous()).isTrue();
                assertThat(cpu.load(va, 8)).isEqualTo(77);
                cpu.store(va, 8, 78); // still copy-on-write after migration
                assertThat(root.pageAt(va)).isNotEqualTo(fresh);
            }
        }
    }

    @Nested
    @DisplayName("soft offline and memory offline")
    class Offline {
        /** S2: soft offline of a shared page: the pool shrinks by one and every sharer sees the replacement. */
        @Test
        void s2SoftOfflineRetiresTheOldPage() {
            try (Setup s = new Setup(3, false)) {
                for (int i = 0; i < 3; i++) {
                    s.cpuOf(i).store(Setup.base(i) + H + 8 * i, 8, 10 + i);
                }
                long old = s.file.pageAt(3);
                int node = s.machine.page(old).node();
                long total = s.machine.hugetlbfs().pool(node, PageSize.SIZE_2M).total();
                assertThat(s.machine.migration().softOffline(old)).isZero();
                assertThat(s.machine.hugetlbfs().pool(node, PageSize.SIZE_2M).total()).isEqualTo(total - 1);
                assertThat(s.machine.page(old).flags()).contains(PageFlag.HWPOISON);
                long fresh = s.file.pageAt(3);
                assertThat(fresh).isNotEqualTo(old);
                for (int i = 0; i < 3; i++) {
                    for (int j = 0; j < 3; j++) {
                        assertThat(s.cpuOf(i).load(Setup.base(i) + H + 8 * j, 8)).isEqualTo(10 + j);
                    }
                    assertThat(s.sharers.get(i).pageAt(Setup.base(i) + H)).isEqualTo(fresh);
                }
                assertThat(s.machine.migration().softOffline(old)).as("already poisoned").isEqualTo(-Errno.EBUSY);
                long freePage = -1;
                for (long pfn = 0; pfn < 2 * (2 * GIB >>> 12) && freePage < 0; pfn += 512) {
                    var p = s.machine.page(pfn);
                    if (p.flags().contains(PageFlag.HUGETLB) && p.refcount() == 0) {
                        freePage = pfn;
                    }
                }
                int freeNode = s.machine.page(freePage).node();
                long totalFree = s.machine.hugetlbfs().pool(freeNode, PageSize.SIZE_2M).total();
                assertThat(s.machine.migration().softOffline(freePage)).as("a free huge page is dissolved").isZero();
                assertThat(s.machine.hugetlbfs().pool(freeNode, PageSize.SIZE_2M).total()).isEqualTo(totalFree - 1);
                assertThat(s.machine.staleAccesses()).isEmpty();
            }
        }

        /** S3: offlining the range that holds the shared pages migrates them to the other node. */
        @Test
        void s3OfflineRangeMovesEverythingOut() {
            try (Setup s = new Setup(2, false)) {
                for (int i = 0; i < 4; i++) {
                    s.cpuOf(0).store(Setup.base(0) + i * 2 * MIB, 8, 50 + i);
                }
                s.cpuOf(1).load(Setup.base(1), 8);
                long page = s.file.pageAt(0);
                int node = s.machine.page(page).node();
                assertThat(node).isZero();
                // the 2 MiB blocks from the first to the last page in use: not the whole gigabyte,
                // whose last frame may be the shared zero page, which cannot go (it is reserved)
                long start = page;
                long end = page;
                for (int i = 0; i < 4; i++) {
                    start = Math.min(start, s.file.pageAt(i));
                    end = Math.max(end, s.file.pageAt(i) + 512);
                }
                var result = s.machine.migration().offlineRange(node, start, end);
                assertThat(result.migratedPages()).as("the four huge pages in use, nothing else").isEqualTo(4);
                assertThat(result.offlinedFrames()).isPositive();
                for (int i = 0; i < 4; i++) {
                    assertThat(s.machine.page(s.file.pageAt(i)).node()).isEqualTo(1);
                    assertThat(s.cpuOf(1).load(Setup.base(1) + i * 2 * MIB, 8)).isEqualTo(50 + i);
                }
                assertThat(s.machine.staleAccesses()).isEmpty();
            }
        }

        @Test
        void offlineRefusesPageTablesAndChangesNothing() {
            try (Setup s = new Setup(1, false)) {
                AddressSpace mm = s.sharers.getFirst();
                mm.fault(Setup.base(0), Access.WRITE);
                long table = Pte.pfn(((SimAddressSpace) mm).pageTable().entry(Setup.base(0), Level.PUD));
                long start = table & ~511L;
                String before = Fixtures.state(s.machine);
                assertThatThrownBy(() -> s.machine.migration().offlineRange(0, start, start + 512))
                        .isInstanceOf(VmException.class).hasMessageContaining("page table");
                assertThat(Fixtures.state(s.machine)).isEqualTo(before);
                assertThatThrownBy(() -> s.machine.migration().offlineRange(0, start + 1, start + 512))
                        .isInstanceOf(InvalidArgumentException.class).hasMessageContaining("2 MiB aligned");
            }
        }
    }
}
