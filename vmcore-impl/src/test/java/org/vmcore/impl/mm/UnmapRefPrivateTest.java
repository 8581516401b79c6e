package org.vmcore.impl.mm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.HugetlbPoolState;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Mapping;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.impl.Fixtures;

/**
 * A private hugetlb reservation owner whose copy-on-write finds the pool empty takes the page
 * back from its children (hugetlb_wp with outside_reserve, then unmap_ref_private); a child whose
 * page was taken gets SIGBUS on its next fault in that VMA (hugetlb_no_page, HPAGE_RESV_UNMAPPED).
 */
class UnmapRefPrivateTest {
    private static final int PRIVATE = MapFlags.MAP_PRIVATE | MapFlags.MAP_FIXED;
    private static final int SHARED_POPULATE = MapFlags.MAP_SHARED | MapFlags.MAP_POPULATE;
    private static final long VA = GIB;
    private static final long H = 2 * MIB;

    /** A parent, cpu 0 running in it, and a child forked from it. */
    private record Forked(Machine machine, Cpu cpu, AddressSpace parent, AddressSpace child) {
    }

    /**
     * A machine whose pool holds one 2 MiB page; the parent maps a hugetlbfs file MAP_PRIVATE at
     * VA and writes 7 there through cpu 0, which takes the only page as its anonymous copy; then
     * forks, so the child maps that page too and the pool is empty.
     */
    private static Forked forkedOwnerOfTheOnlyHugePage() {
        Machine machine = Machine.builder().node(GIB).cpus(1).hugePages(0, PageSize.SIZE_2M, 1)
                .checkInvariantsAfterEveryOperation(true).build();
        Cpu cpu = machine.cpu(0);
        HugetlbFile file = machine.hugetlbfs().create("private", H, PageSize.SIZE_2M);
        AddressSpace parent = machine.createAddressSpace();
        parent.mmap(file, 0, VA, H, Protection.READ_WRITE, PRIVATE);
        cpu.switchTo(parent);
        cpu.store(VA, 8, 7);
        return new Forked(machine, cpu, parent, parent.fork());
    }

    /** Closes child, parent and machine: the huge page is back in the pool and no off-heap byte is left. */
    private static void closeAndCheckThePoolIsWhole(Forked f) {
        f.child().close();
        f.parent().close();
        assertThat(f.machine().hugetlbfs().pool(0, PageSize.SIZE_2M).free()).isEqualTo(1);
        f.machine().close();
        assertThat(f.machine().offHeapBytes()).isZero();
    }

    @Test
    @DisplayName("hugetlb_wp: the owner's COW with an empty pool unmaps the page from the child and reuses it")
    void theOwnerTakesThePageBackAndTheChildGetsSigbus() {
        Machine machine = Machine.builder().node(GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 3)
                .checkInvariantsAfterEveryOperation(true).build();
        Cpu cpu0 = machine.cpu(0);
        Cpu cpu1 = machine.cpu(1);
        HugetlbFile file = machine.hugetlbfs().create("private", 2 * H, PageSize.SIZE_2M);
        AddressSpace parent = machine.createAddressSpace();
        parent.mmap(file, 0, VA, 2 * H, Protection.READ_WRITE, PRIVATE);
        cpu0.switchTo(parent);
        cpu0.store(VA, 8, 0x1111);
        cpu0.store(VA + H, 8, 0x2222); // both reservations consumed: two anonymous huge pages
        long page = parent.pageAt(VA);

        AddressSpace child = parent.fork();
        List<NotifierRange> childRanges = new ArrayList<>();
        child.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                childRanges.add(range);
            }
        });
        cpu1.switchTo(child);
        assertThat(cpu1.load(VA, 8)).as("the child shares the parent's anonymous page").isEqualTo(0x1111);
        assertThat(child.pageAt(VA)).isEqualTo(page);

        HugetlbFile other = machine.hugetlbfs().create("drain", H, PageSize.SIZE_2M);
        AddressSpace drainer = machine.createAddressSpace();
        drainer.mmap(other, 0, 0, H, Protection.READ_WRITE, SHARED_POPULATE);
        assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free()).as("the pool is drained").isZero();

        cpu0.store(VA + 16, 8, 0x3333); // the owner's COW: no page to copy into
        assertThat(parent.pageAt(VA)).as("reused in place, no allocation").isEqualTo(page);
        assertThat(cpu0.load(VA, 8)).isEqualTo(0x1111);
        assertThat(cpu0.load(VA + 16, 8)).isEqualTo(0x3333);
        assertThat(machine.rmap().mappings(page)).containsExactly(new Mapping(parent, VA));
        assertThat(child.pageAt(VA)).as("unmapped from the child").isEqualTo(-1);
        assertThat(childRanges).as("the child's notifiers heard of it")
                .anyMatch(r -> r.start() <= VA && r.end() >= VA + H);
        assertThat(cpu1.tlbHolds(child, VA)).as("and its TLBs forgot it").isFalse();
        assertThat(machine.checkInvariants()).isEmpty();

        assertThatThrownBy(() -> cpu1.load(VA, 8)).isInstanceOfSatisfying(SegmentationFaultException.class, e -> {
            assertThat(e.cause()).isEqualTo(SegmentationFaultException.Cause.HUGETLB_RESV_UNMAPPED);
            assertThat(e.address()).isEqualTo(VA);
            assertThat(e.access()).isEqualTo(Access.READ);
        });
        assertThatThrownBy(() -> child.fault(VA + 8, Access.WRITE)).isInstanceOf(SegmentationFaultException.class)
                .hasMessageContaining("HUGETLB_RESV_UNMAPPED");
        assertThat(cpu1.load(VA + H, 8)).as("the child's other page is untouched").isEqualTo(0x2222);
        assertThat(cpu0.load(VA + H, 8)).isEqualTo(0x2222);
        assertThat(machine.checkInvariants()).isEmpty();

        cpu1.switchTo(null);
        child.close();
        drainer.close();
        parent.close();
        HugetlbPoolState pool = machine.hugetlbfs().pool(0, PageSize.SIZE_2M);
        assertThat(pool.free()).as("every huge page back").isEqualTo(3 - other.cachedPages());
        assertThat(pool.reserved()).isZero();
        assertThat(machine.checkInvariants()).isEmpty();
        machine.close();
        assertThat(machine.offHeapBytes()).isZero();
    }

    @ParameterizedTest
    @ValueSource(booleans = {true, false})
    void aChildsNotifierThatThrowsReachesTheOwnerAndLeavesAConsistentState(boolean atStart) {
        Forked f = forkedOwnerOfTheOnlyHugePage();
        Machine machine = f.machine();
        Cpu cpu = f.cpu();
        AddressSpace parent = f.parent();
        AddressSpace child = f.child();
        IllegalStateException boom = new IllegalStateException("notifier");
        MmuNotifier thrower = new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                if (atStart) {
                    throw boom;
                }
            }

            @Override
            public void invalidateRangeEnd(NotifierRange range) {
                if (!atStart) {
                    throw boom;
                }
            }
        };
        child.registerNotifier(thrower);
        assertThatThrownBy(() -> cpu.store(VA, 8, 8)).isSameAs(boom);
        assertThat(machine.checkInvariants()).isEmpty();
        assertThat(cpu.load(VA, 8)).as("no data lost").isEqualTo(7);
        assertThat(child.pageAt(VA)).as(atStart ? "rolled back: the child still maps it" : "completed: unmapped")
                .isEqualTo(atStart ? parent.pageAt(VA) : -1);
        child.unregisterNotifier(thrower);
        cpu.store(VA, 8, 8);
        assertThat(cpu.load(VA, 8)).isEqualTo(8);
        assertThat(machine.rmap().mappings(parent.pageAt(VA))).containsExactly(new Mapping(parent, VA));
        assertThat(machine.checkInvariants()).isEmpty();
        closeAndCheckThePoolIsWhole(f);
    }

    @Test
    @DisplayName("a COW by a VMA that is not the reservation owner still fails with an empty pool")
    void aChildsCowWithAnEmptyPoolStillFails() {
        Forked f = forkedOwnerOfTheOnlyHugePage();
        Machine machine = f.machine();
        Cpu cpu = f.cpu();
        AddressSpace parent = f.parent();
        AddressSpace child = f.child();
        cpu.switchTo(child);
        assertThatThrownBy(() -> cpu.store(VA, 8, 8)).isInstanceOf(OutOfMemoryException.class);
        assertThat(cpu.load(VA, 8)).isEqualTo(7);
        cpu.switchTo(parent);
        assertThat(cpu.load(VA, 8)).as("the parent keeps its page mapped").isEqualTo(7);
        assertThat(machine.rmap().mappings(parent.pageAt(VA))).hasSize(2);
        assertThat(machine.checkInvariants()).isEmpty();
        closeAndCheckThePoolIsWhole(f);
    }
}
