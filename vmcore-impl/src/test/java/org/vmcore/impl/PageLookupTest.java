package org.vmcore.impl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.Locale;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Page;
import org.vmcore.api.PageFlag;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.Regression;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameFlags;

/** Machine.page(pfn) for every frame, as /proc/kpagecount and /proc/kpageflags report each 4 KiB frame. */
class PageLookupTest {
    @Test
    @DisplayName("a tail frame of a 2 MiB or 1 GiB page reports the huge page (head pfn, size, mapcount, refcount)")
    void aTailFrameReportsItsHugePage() {
        Machine machine = Machine.builder().node(4 * GIB).hugePages(0, PageSize.SIZE_2M, 2).hugePages(0, PageSize.SIZE_1G, 1).build();
        try {
            AddressSpace a = machine.createAddressSpace();
            AddressSpace b = machine.createAddressSpace();
            HugetlbFile two = machine.hugetlbfs().create("two", 2 * MIB, PageSize.SIZE_2M);
            HugetlbFile one = machine.hugetlbfs().create("one", GIB, PageSize.SIZE_1G);
            a.mmap(two, 0, 4 * GIB, 2 * MIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
            b.mmap(two, 0, 6 * GIB, 2 * MIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
            a.mmap(one, 0, 8 * GIB, GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
            a.fault(4 * GIB, Access.WRITE);
            b.fault(6 * GIB, Access.READ);
            a.fault(8 * GIB, Access.WRITE);
            long head2m = two.pageAt(0);
            long head1g = one.pageAt(0);
            Page page2m = machine.page(head2m);
            assertThat(page2m.size()).isEqualTo(PageSize.SIZE_2M);
            assertThat(page2m.mapcount()).isEqualTo(2);
            for (long tail : new long[] {head2m + 1, head2m + 255, head2m + 511}) {
                assertThat(machine.page(tail)).as("pfn 0x%x", tail).isEqualTo(page2m);
            }
            Page page1g = machine.page(head1g);
            assertThat(page1g.size()).isEqualTo(PageSize.SIZE_1G);
            for (long tail : new long[] {head1g + 1, head1g + 512, head1g + 0x3ffff}) {
                assertThat(machine.page(tail)).as("pfn 0x%x", tail).isEqualTo(page1g);
            }
            assertThat(machine.checkInvariants()).isEmpty();
        } finally {
            machine.close();
        }
        assertThat(machine.offHeapBytes()).isZero();
    }

    @Test
    @DisplayName("a free frame reports as free, with no references and no mappings")
    void aFreeFrameReportsAsFree() {
        Machine machine = Machine.builder().node(GIB).build();
        try {
            AddressSpace mm = machine.createAddressSpace();
            long va = mm.mmap(0, 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
            mm.fault(va, Access.WRITE);
            long pfn = mm.pageAt(va);
            assertThat(machine.page(pfn).flags()).contains(PageFlag.ANON);
            mm.munmap(va, 4096);
            Page freed = machine.page(pfn);
            assertThat(freed.flags()).containsExactly(PageFlag.BUDDY);
            assertThat(freed.pfn()).isEqualTo(pfn);
            assertThat(freed.refcount()).isZero();
            assertThat(freed.mapcount()).isZero();
            assertThat(freed.size()).isEqualTo(PageSize.SIZE_4K);
            assertThat(machine.page(machine.config().nodeBytes().getFirst() / 4096 - 2).flags()).as("never used (the last frame is the zero page)").containsExactly(PageFlag.BUDDY);
            assertThat(machine.checkInvariants()).isEmpty();
        } finally {
            machine.close();
        }
        assertThat(machine.offHeapBytes()).isZero();
    }

    @Test
    @DisplayName("each frame-descriptor flag reports as the PageFlag of the same kernel name, and the set is unmodifiable")
    void eachDescriptorFlagHasItsPageFlag() {
        try (Machine machine = Machine.builder().node(GIB).build()) {
            AddressSpace mm = machine.createAddressSpace();
            long va = mm.mmap(0, 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
            mm.fault(va, Access.WRITE);
            long pfn = mm.pageAt(va);
            assertThat(machine.page(pfn).flags()).containsExactly(PageFlag.UPTODATE, PageFlag.ANON);
            MemMap d = SharedSecrets.memMap(((SimMachine) machine).memory());
            int[] bits = {FrameFlags.LOCKED, FrameFlags.REFERENCED, FrameFlags.UPTODATE, FrameFlags.DIRTY, FrameFlags.LRU,
                FrameFlags.HEAD, FrameFlags.ANON, FrameFlags.HUGETLB, FrameFlags.PGTABLE, FrameFlags.HWPOISON, FrameFlags.RESERVED,
                FrameFlags.ISOLATED, FrameFlags.MLOCKED};
            String[] kernelNames = {"locked", "referenced", "uptodate", "dirty", "lru", "head", "anon", "hugetlb", "pgtable",
                "hwpoison", "reserved", "isolated", "mlocked"};
            int original = d.flags(pfn);
            for (int i = 0; i < bits.length; i++) {
                d.clearFlags(pfn, ~FrameFlags.ALLOCATED);
                d.setFlags(pfn, bits[i]);
                assertThat(FrameFlags.describe(d.flags(pfn))).isEqualTo(kernelNames[i] + "|allocated");
                assertThat(machine.page(pfn).flags()).as(kernelNames[i]).containsExactly(PageFlag.valueOf(kernelNames[i].toUpperCase(
                        Locale.ROOT)));
            }
            d.clearFlags(pfn, ~FrameFlags.ALLOCATED);
            d.setFlags(pfn, original);
            Page page = machine.page(pfn);
            assertThatThrownBy(() -> page.flags().add(PageFlag.DIRTY)).isInstanceOf(UnsupportedOperationException.class);
            assertThatThrownBy(() -> new Page(0, PageSize.SIZE_4K, 0, 0, 0, null, false, null, 0))
                    .isInstanceOf(InvalidArgumentException.class).hasMessageContaining("flags=null");
            assertThat(machine.checkInvariants()).isEmpty();
        }
    }

    @Test
    @DisplayName("Machine.toString names the configuration and the live address spaces, and works after close")
    void machineToString() {
        Machine machine = Machine.builder().node(GIB).node(2 * GIB).cpus(2).hugePages(1, PageSize.SIZE_2M, 4)
                .enable(Regression.PRE_017B1660).build();
        machine.createAddressSpace();
        assertThat(machine.toString()).isEqualTo("Machine[nodes 1G 2G, 2 CPUs, 4-level paging, hugetlb node1 4x2M,"
                + " regressions [PRE_017B1660], 1 address space]");
        machine.close();
        assertThat(machine.toString()).isEqualTo("Machine[closed, nodes 1G 2G, 2 CPUs, 4-level paging, hugetlb node1 4x2M,"
                + " regressions [PRE_017B1660]]");
    }
}
