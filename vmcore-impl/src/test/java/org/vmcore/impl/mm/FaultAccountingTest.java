package org.vmcore.impl.mm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.AllocationKind;
import org.vmcore.api.Cpu;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MmCounters;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.VmstatCounter;

/**
 * min_flt and maj_flt per address space, against Linux's mm_account_fault (mm/memory.c): a fault
 * handle_mm_fault completes counts in pgfault and, with no I/O, in min_flt; one it fails
 * (VM_FAULT_ERROR: out of memory, SIGBUS) counts in pgfault only; one do_user_addr_fault refuses
 * before handle_mm_fault (bad_area, access_error) counts in neither. GUP (MAP_POPULATE) faults
 * count for the task that populates, as they do in Linux.
 */
class FaultAccountingTest {
    private static final long VA = 0x10_0000_0000L;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;

    private static long pgfault(Machine machine) {
        return machine.vmstatSnapshot().get(VmstatCounter.PGFAULT);
    }

    @Test
    void faultsWithoutIoAreMinorWhereverTheyComeFrom() {
        try (Machine machine = Machine.builder().node(2 * GIB).hugePages(0, PageSize.SIZE_2M, 8).build()) {
            AddressSpace mm = machine.createAddressSpace();
            assertThat(mm.counters().minorFaults()).isZero();
            mm.mmap(VA, 16 * 4096, Protection.READ_WRITE, ANON);
            assertThat(mm.fault(VA, Access.WRITE)).isEqualTo(FaultResult.NEW_PAGE);           // first touch, anonymous
            assertThat(mm.fault(VA, Access.READ)).isEqualTo(FaultResult.ALREADY_MAPPED);      // spurious: still handled
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            cpu.store(VA + 4096, 8, 1);                                                       // a CPU's #PF
            cpu.load(VA + 4096, 8);                                                           // a TLB hit: no fault
            long shmem = mm.mmap(0, 4096, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS);
            mm.fault(shmem, Access.WRITE);                                                    // shmem allocation
            HugetlbFile file = machine.hugetlbfs().create("f", 4 * MIB, PageSize.SIZE_2M);
            long huge = mm.mmap(file, 0, 0, 4 * MIB, Protection.READ_WRITE, MapFlags.MAP_SHARED);
            mm.fault(huge, Access.WRITE);                                                     // hugetlb_no_page
            MmCounters c = mm.counters();
            assertThat(c.minorFaults()).isEqualTo(5);
            assertThat(c.majorFaults()).as("no swap, no file reads").isZero();
            assertThat(pgfault(machine)).isEqualTo(5);
        }
    }

    @Test
    void populateCountsEveryPageItFaultsIn() {
        try (Machine machine = Machine.builder().build()) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 16 * 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
            assertThat(mm.counters().minorFaults()).isEqualTo(16);
            assertThat(pgfault(machine)).isEqualTo(16);
        }
    }

    @Test
    void aPopulateThatRunsOutOfMemoryTakesItsMinorFaultsBack() {
        try (Machine machine = Machine.builder().build()) {
            AddressSpace mm = machine.createAddressSpace();
            machine.failNthAllocation(AllocationKind.FRAME, 3);
            assertThatThrownBy(() -> mm.mmap(VA, 16 * 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE))
                    .isInstanceOf(OutOfMemoryException.class);
            assertThat(mm.counters().minorFaults()).as("the mapping left no trace").isZero();
            assertThat(pgfault(machine)).as("two faults done, the third failed").isEqualTo(3);
        }
    }

    @Test
    void copyOnWriteIsMinorAndAForkedChildStartsAtZero() {
        try (Machine machine = Machine.builder().build()) {
            AddressSpace parent = machine.createAddressSpace();
            parent.mmap(VA, 4096, Protection.READ_WRITE, ANON);
            parent.fault(VA, Access.WRITE);
            AddressSpace child = parent.fork();
            assertThat(child.counters().minorFaults()).as("copy_process zeroes min_flt").isZero();
            assertThat(child.fault(VA, Access.WRITE)).isEqualTo(FaultResult.COW_COPY);
            assertThat(child.counters().minorFaults()).isEqualTo(1);
            assertThat(parent.counters().minorFaults()).isEqualTo(1);
        }
    }

    @Test
    void aFailedFaultCountsInPgfaultOnlyAndARefusedOneNowhere() {
        try (Machine machine = Machine.builder().node(GIB).hugePages(0, PageSize.SIZE_2M, 2).build()) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4096, Protection.READ, ANON);
            assertThatThrownBy(() -> mm.fault(VA + 4096, Access.READ)).isInstanceOf(SegmentationFaultException.class);  // no VMA
            assertThatThrownBy(() -> mm.fault(VA, Access.WRITE)).isInstanceOf(SegmentationFaultException.class);        // access_error
            assertThat(pgfault(machine)).as("refused before handle_mm_fault").isZero();
            long rw = mm.mmap(VA + 16 * 4096, 4096, Protection.READ_WRITE, ANON); // a read would map the zero page
            machine.failNthAllocation(AllocationKind.FRAME, 1);
            assertThatThrownBy(() -> mm.fault(rw, Access.WRITE)).isInstanceOf(OutOfMemoryException.class);            // VM_FAULT_OOM
            HugetlbFile file = machine.hugetlbfs().create("f", 4 * MIB, PageSize.SIZE_2M);
            long huge = mm.mmap(file, 0, 0, 4 * MIB, Protection.READ, MapFlags.MAP_SHARED);
            file.truncate(0);
            assertThatThrownBy(() -> mm.fault(huge, Access.READ)).isInstanceOf(SegmentationFaultException.class)        // VM_FAULT_SIGBUS
                    .satisfies(e -> assertThat(((SegmentationFaultException) e).cause())
                            .isEqualTo(SegmentationFaultException.Cause.BEYOND_EOF));
            assertThat(pgfault(machine)).as("failed in the handler: pgfault counts them").isEqualTo(2);
            assertThat(mm.counters().minorFaults()).as("mm_account_fault skips VM_FAULT_ERROR").isZero();
            mm.fault(VA, Access.READ);
            assertThat(mm.counters().minorFaults()).isEqualTo(1);
        }
    }
}
