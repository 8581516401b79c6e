package org.vmcore.impl.stat;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.TlbStats;
import org.vmcore.api.VmstatCounter;
import org.vmcore.api.VmstatSnapshot;

/** The typed vmstat counters: names, snapshots, intervals and reset. */
class VmstatTest {
    private static final long VA = 0x10_0000_0000L;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;

    @Test
    void vmstatReportsExactlyTheCountersInEnumOrder() {
        try (Machine machine = Machine.builder().build()) {
            assertThat(machine.vmstat().keySet()).containsExactly(
                    Arrays.stream(VmstatCounter.values()).map(VmstatCounter::procName).toArray(String[]::new));
            assertThat(VmstatCounter.PGFAULT.procName()).isEqualTo("pgfault");
            assertThat(VmstatCounter.HUGETLB_MIGRATE_FAIL.procName()).isEqualTo("hugetlb_migrate_fail");
            for (VmstatCounter c : VmstatCounter.values()) {
                assertThat(VmstatCounter.ofProcName(c.procName())).isSameAs(c);
            }
            assertThatThrownBy(() -> VmstatCounter.ofProcName("pgmajfault")).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("procName=pgmajfault");
        }
    }

    @Test
    void theDocsNameEveryCounter() throws IOException {
        String model = Files.readString(Path.of("..", "docs", "MODEL.md"));
        for (VmstatCounter c : VmstatCounter.values()) {
            assertThat(model).as("docs/MODEL.md names " + c.procName()).contains(c.procName());
        }
    }

    @Test
    void aSnapshotMinusAnEarlierOneCountsTheInterval() {
        try (Machine machine = Machine.builder().build()) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 8 * 4096, Protection.READ_WRITE, ANON);
            mm.fault(VA, Access.WRITE);
            VmstatSnapshot before = machine.vmstatSnapshot();
            mm.fault(VA + 4096, Access.WRITE);
            mm.fault(VA + 8192, Access.READ);
            VmstatSnapshot after = machine.vmstatSnapshot();
            VmstatSnapshot interval = after.minus(before);
            assertThat(before.get(VmstatCounter.PGFAULT)).isEqualTo(1);
            assertThat(interval.get(VmstatCounter.PGFAULT)).isEqualTo(2);
            assertThat(interval.get(VmstatCounter.PGMIGRATE_SUCCESS)).isZero();
            assertThat(after.asMap()).isEqualTo(machine.vmstat()).containsEntry("pgfault", 3L);
            assertThat(after).isEqualTo(machine.vmstatSnapshot()).hasSameHashCodeAs(machine.vmstatSnapshot());
            assertThat(interval.toString()).startsWith("vmstat[pgfault 2, pgmigrate_success 0");
            assertThatThrownBy(() -> before.minus(after)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("earlier=").hasMessageContaining("pgfault 3 is above 1");
            assertThatThrownBy(() -> after.minus(null)).isInstanceOf(InvalidArgumentException.class).hasMessageContaining("earlier=null");
            assertThatThrownBy(() -> after.get(null)).isInstanceOf(InvalidArgumentException.class).hasMessageContaining("counter=null");
        }
    }

    @Test
    void ofCopiesAndRefusesNegativeValues() {
        Map<VmstatCounter, Long> values = new EnumMap<>(VmstatCounter.class);
        values.put(VmstatCounter.NR_TLB_REMOTE_FLUSH, 7L);
        VmstatSnapshot s = VmstatSnapshot.of(values);
        values.put(VmstatCounter.NR_TLB_REMOTE_FLUSH, 9L);
        assertThat(s.get(VmstatCounter.NR_TLB_REMOTE_FLUSH)).isEqualTo(7);
        assertThat(s.get(VmstatCounter.PGFAULT)).isZero();
        assertThatThrownBy(() -> VmstatSnapshot.of(Map.of(VmstatCounter.PGFAULT, -1L))).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("pgfault=0xffffffffffffffff").hasMessageContaining("negative");
        assertThatThrownBy(() -> VmstatSnapshot.of(null)).isInstanceOf(InvalidArgumentException.class);
    }

    @Test
    void hugetlbMigrateFailCountsAFolioThatFoundNoTargetPage() {
        // Node 1 has no 2 MiB pages: alloc_migration_target fails, so the folio's migration fails
        // (-ENOMEM): pgmigrate_fail counts its 512 base pages, hugetlb_migrate_fail the folio.
        try (Machine machine = Machine.builder().node(GIB).node(GIB).hugePages(0, PageSize.SIZE_2M, 2).build()) {
            HugetlbFile file = machine.hugetlbfs().create("f", 2 * MIB, PageSize.SIZE_2M);
            AddressSpace mm = machine.createAddressSpace();
            long va = mm.mmap(file, 0, GIB, 2 * MIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED
                    | MapFlags.MAP_POPULATE);
            VmstatSnapshot before = machine.vmstatSnapshot();
            machine.migration().movePages(mm, new long[] {va}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
            VmstatSnapshot interval = machine.vmstatSnapshot().minus(before);
            assertThat(interval.get(VmstatCounter.HUGETLB_MIGRATE_FAIL)).isEqualTo(1);
            assertThat(interval.get(VmstatCounter.PGMIGRATE_FAIL)).isEqualTo(512);
            assertThat(interval.get(VmstatCounter.HUGETLB_MIGRATE_SUCCESS)).isZero();
        }
    }

    @Test
    void resetStartsEveryVmstatCounterFromZeroAndNothingElse() {
        try (Machine machine = Machine.builder().cpus(2).detectStaleTranslations(true).build()) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 8 * 4096, Protection.READ_WRITE, ANON);
            Cpu cpu0 = machine.cpu(0);
            Cpu cpu1 = machine.cpu(1);
            cpu1.switchTo(mm);
            cpu1.store(VA, 8, 1);
            cpu0.switchTo(mm);
            cpu0.store(VA + 4096, 8, 2);
            mm.munmap(VA + 4096, 4096);                         // cpu0 flushes locally and shoots cpu1 down
            machine.checkTranslation("dev", mm, VA + 4096, 1, false); // one stale use
            VmstatSnapshot before = machine.vmstatSnapshot();
            assertThat(before.get(VmstatCounter.PGFAULT)).isEqualTo(2);
            assertThat(before.get(VmstatCounter.NR_TLB_REMOTE_FLUSH)).isPositive();
            assertThat(before.get(VmstatCounter.STALE_TRANSLATION_USES)).isEqualTo(1);
            TlbStats cpuStats = cpu0.stats();

            machine.resetVmstat();

            assertThat(machine.vmstatSnapshot()).isEqualTo(VmstatSnapshot.of(Map.of()));
            assertThat(machine.vmstat().values()).containsOnly(0L);
            assertThat(machine.stats().vmstat().values()).containsOnly(0L);
            assertThat(cpu0.stats()).as("per-CPU TLB statistics are not reset").isEqualTo(cpuStats);
            assertThat(machine.staleAccessCount()).isEqualTo(1);
            assertThat(machine.migration().stats()).as("not reset").isEqualTo(Map.of("pgmigrate_success", 0L, "pgmigrate_fail", 0L,
                    "hugetlb_migrate_success", 0L, "hugetlb_migrate_fail", 0L, "thp_migration_success", 0L, "thp_migration_fail", 0L, "thp_split_page", 0L));
            cpu0.store(VA + 8192, 8, 3);
            assertThat(machine.vmstatSnapshot().get(VmstatCounter.PGFAULT)).as("counts from zero again").isEqualTo(1);
            assertThatThrownBy(() -> machine.vmstatSnapshot().minus(before)).as("across a reset")
                    .isInstanceOf(InvalidArgumentException.class);
            mm.close();
            assertThat(machine.vmstatSnapshot().get(VmstatCounter.PGFAULT)).as("an exited address space's faults stay counted")
                    .isEqualTo(1);
        }
    }
}
