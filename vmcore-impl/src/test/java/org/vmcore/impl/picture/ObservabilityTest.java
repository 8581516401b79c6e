package org.vmcore.impl.picture;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MachineStats;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.impl.Fixtures;

class ObservabilityTest {
    @Test
    void theDotPictureShowsOneSharedTableWithAParentPerSharer() {
        try (Machine machine = Machine.builder().node(4 * GIB).cpus(1).hugePages(0, PageSize.SIZE_2M, 600).build()) {
            long[] bases = Fixtures.windowBases(2 * GIB, 3);
            List<AddressSpace> mms = Fixtures.sharers(machine, false, bases).mms();
            for (int i = 0; i < 3; i++) {
                mms.get(i).fault(bases[i], Access.WRITE);
                mms.get(i).fault(bases[i] + 2 * MIB, Access.READ);
            }
            String dot = machine.pageTableDot(mms, 0, 8 * GIB, false);
            assertThat(dot).startsWith("digraph pagetables {").endsWith("}\n");
            Matcher shared = Pattern.compile("(t[0-9a-f]+) \\[shape=box,style=filled,fillcolor=gold,label=\"PMD table").matcher(dot);
            assertThat(shared.find()).as("one shared PMD table node").isTrue();
            String table = shared.group(1);
            assertThat(shared.find()).as("only one").isFalse();
            assertThat(dot).contains("shared by 3 address spaces");
            assertThat(count(dot, "-> " + table + " ")).as("edges into the shared table: one per sharer's PUD entry").isEqualTo(3);
            assertThat(count(dot, "[shape=box,style=bold")).as("address space nodes").isEqualTo(3);
            assertThat(count(dot, "[shape=ellipse")).as("page nodes: the two pages faulted").isEqualTo(2);
            assertThat(count(dot, table + " -> p")).as("leaf edges drawn once, from the shared table").isEqualTo(2);
            assertThatThrownBy(() -> machine.pageTableDot(List.of(), 0, GIB, false)).isInstanceOf(InvalidArgumentException.class);
        }
    }

    @Test
    void statsReadLikeVmstatAndMeminfo() {
        try (Machine machine = Machine.builder().node(GIB).hugePages(0, PageSize.SIZE_2M, 8).build()) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(0, 16 * 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_POPULATE);
            HugetlbFile file = machine.hugetlbfs().create("f", 8 * MIB, PageSize.SIZE_2M);
            mm.mmap(file, 0, 0, 8 * MIB, Protection.READ_WRITE, MapFlags.MAP_SHARED);
            MachineStats stats = machine.stats();
            assertThat(stats.vmstat()).containsEntry("pgfault", 16L).containsKeys("pgmigrate_success", "nr_tlb_remote_flush");
            assertThat(stats.meminfo()).containsEntry("MemTotal", GIB / 1024).containsEntry("AnonPages", 64L)
                    .containsEntry("PageTables", 16L).containsEntry("HugePages_Total", 8L).containsEntry("HugePages_Free", 8L)
                    .containsEntry("HugePages_Rsvd", 4L).containsEntry("Hugepagesize", 2048L);
            assertThat(stats.report()).contains("pgfault 16").containsPattern("PageTables:\\s+16 kB")
                    .containsPattern("HugePages_Rsvd:\\s+4\\n");
        }
    }

    private static int count(String s, String what) {
        int n = 0;
        for (int i = s.indexOf(what); i >= 0; i = s.indexOf(what, i + 1)) {
            n++;
        }
        return n;
    }
}
