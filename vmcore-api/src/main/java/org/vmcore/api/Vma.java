package org.vmcore.api;

/**
 * A snapshot of one virtual memory area: {@code [start, end)} of {@code owner}, mapped with one
 * protection and one backing. Snapshots do not change when the address space does.
 *
 * @param owner      the address space
 * @param start      first address (page aligned)
 * @param end        the address after the last byte
 * @param protection PROT_* of the area
 * @param kind       what backs it
 * @param locked     VM_LOCKED (MAP_LOCKED)
 * @param file       the hugetlbfs file, or null for anonymous memory
 * @param pgoff      the file offset of {@code start} in 4 KiB pages (vm_pgoff); 0 for anonymous
 * @param pageSize   the size of the pages that map it
 */
public record Vma(AddressSpace owner, long start, long end, Protection protection, VmaKind kind, boolean locked,
                  HugetlbFile file, long pgoff, PageSize pageSize) {
    /**
     * Length in bytes.
     *
     * @return length in bytes
     */
    public long length() {
        return end - start;
    }

    /**
     * Whether {@code va} lies inside.
     *
     * @param va the virtual address
     * @return whether {@code va} lies inside
     */
    public boolean contains(long va) {
        return Long.compareUnsigned(va, start) >= 0 && Long.compareUnsigned(va, end) < 0;
    }

    @Override
    public String toString() {
        return String.format("%012x-%012x %s%s %s%s pgoff=%d %s", start, end, protection, kind.isShared() ? "s" : "p",
                kind, locked ? " locked" : "", pgoff, file == null ? "[anon]" : file.name());
    }
}
