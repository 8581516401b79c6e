package org.vmcore.impl.hugetlb;

import org.vmcore.impl.vma.VmArea;

/**
 * What truncating a hugetlbfs file needs from the address-space layer above (hugetlb_vmdelete_list
 * calling unmap_hugepage_range on each VMA that maps past the new end). The mm package implements
 * it and the machine hands it to {@link HugetlbFsImpl}, so the arrow keeps pointing down.
 */
public interface HugetlbVmdelete {
    /** Zaps [from, to) of the hugetlb VMA v (its address space's notifiers and TLBs included); the VMA stays. */
    void unmapHugepageRange(VmArea v, long from, long to);
}
