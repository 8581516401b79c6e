package org.vmcore.x86.pgtable;

import org.vmcore.api.ClosedException;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * The page tables of one address space, rooted at CR3. Every table is a frame of simulated
 * physical memory taken from the owner's node; entries are real x86-64 entries in the frame's
 * bytes, so a hardware {@link Walker} reads exactly what this class writes.
 *
 * <p>Leaves are mapped, unmapped and re-protected at all three leaf levels (4 KiB PTE, 2 MiB
 * PMD, 1 GiB PUD). The generic mm also points entries at tables owned by other address spaces
 * (hugetlb PMD sharing); such a table's share count ({@link FrameDescriptors#ptShareCount})
 * counts the extra pointers, and a table whose share count is above zero is never freed by one
 * owner. The raw entry operations the generic mm uses for that are not part of this API.
 *
 * <p>Every method validates its input before changing anything; a call that throws leaves the
 * tables as they were. Structure changes lock this object's tables (the kernel's
 * {@code mm->page_table_lock}); a hardware walk may run on another thread meanwhile and set A
 * and D bits, which {@link #unmap} and {@link #protect} never lose.
 */
public final class PageTable {
    private final RawPageTable raw;

    /**
     * Allocates an empty root table on {@code node}.
     *
     * @param memory the physical memory the tables are allocated from
     * @param mode 4- or 5-level paging
     * @param node the NUMA node every table of this tree is allocated on
     * @throws InvalidArgumentException if the node does not exist
     * @throws OutOfMemoryException if the node has no free frame
     */
    public PageTable(PhysicalMemory memory, PagingMode mode, int node) {
        this.raw = new RawPageTable(memory, mode, node);
    }

    /**
     * CR3: the physical address of the root table.
     *
     * @return the root table's PFN times 4096
     */
    public long cr3() {
        return raw.cr3();
    }

    /**
     * The paging mode.
     *
     * @return 4- or 5-level paging, fixed at construction
     */
    public PagingMode mode() {
        return raw.mode();
    }

    /**
     * The root level: PML4 or PML5.
     *
     * @return {@link Level#root} of {@link #mode()}
     */
    public Level rootLevel() {
        return raw.rootLevel();
    }

    /**
     * The node tables are allocated from.
     *
     * @return the NUMA node id
     */
    public int node() {
        return raw.node();
    }

    /**
     * The memory the tables live in.
     *
     * @return the memory given at construction
     */
    public PhysicalMemory memory() {
        return raw.memory();
    }

    /**
     * Table pages this tree references, the root included: the kernel's page-table accounting
     * per mm, in which a shared PMD table counts once for every address space that points at it.
     *
     * @return the number of table frames, 1 or more until {@link #destroy()}
     */
    public long tablePages() {
        return raw.tablePages();
    }

    /**
     * Tables of {@code level} this tree points at (for PMD: the kernel's nr_pmds), shared ones
     * included.
     *
     * @param level the level of the tables counted
     * @return the number of tables of that level
     * @throws InvalidArgumentException if the level does not exist in this paging mode
     */
    public long tablesAt(Level level) {
        return raw.tablesAt(level);
    }

    /**
     * The entry for {@code va} at {@code level}, or 0 when a table on the way is missing or an
     * upper entry is a leaf or a swap entry.
     *
     * @param va the virtual address, canonical
     * @param level the level whose entry is wanted, at or below the root
     * @return the entry as it is now, or 0
     * @throws InvalidArgumentException if va is not canonical or the level does not exist
     */
    public long entry(long va, Level level) {
        return raw.entry(va, level);
    }

    /**
     * Maps {@code va} to the page at {@code pfn} with a leaf of {@code size}, allocating missing
     * tables. {@code flags} are the leaf's attribute bits ({@link Pte}); they must contain
     * {@link Pte#PRESENT}, or {@link Pte#PROTNONE} for a PROT_NONE mapping; PS is added for huge
     * sizes.
     *
     * @param va the virtual address, canonical and aligned to {@code size}
     * @param pfn the page frame number of the page, aligned to {@code size}
     * @param size the page size of the leaf
     * @param flags the leaf's attribute bits (see above)
     * @throws InvalidArgumentException if va or pfn is unaligned, va is not canonical, pfn is
     *                                  outside memory, flags carry bits a leaf of that size may
     *                                  not, or the slot is occupied
     * @throws OutOfMemoryException     if a table cannot be allocated (nothing is changed)
     */
    public void map(long va, long pfn, PageSize size, long flags) {
        raw.map(va, pfn, size, flags);
    }

    /**
     * Clears the leaf (or swap entry) of {@code size} that maps {@code va} and returns the old
     * entry, with any A/D bits the hardware set up to the clear. Tables are not freed; see
     * {@link #freeEmptyTables}.
     *
     * @param va the virtual address, canonical and aligned to {@code size}
     * @param size the page size of the leaf
     * @return the entry as it was when cleared
     * @throws InvalidArgumentException if no leaf or swap entry of that size is there
     */
    public long unmap(long va, PageSize size) {
        return raw.unmap(va, size);
    }

    /**
     * Changes the protection of the present leaf of {@code size} at {@code va}: the bits of
     * {@link Pte#PROT_BITS} are replaced by {@code protFlags}; PFN, caching, A, D and software bits
     * are kept (pte_modify). Switching between present and PROT_NONE re-encodes the PFN.
     *
     * @param va the virtual address, canonical and aligned to {@code size}
     * @param size the page size of the leaf
     * @param protFlags the new protection bits, within {@link Pte#PROT_BITS} plus {@link Pte#PROTNONE}
     * @return the entry before the change
     * @throws InvalidArgumentException if protFlags has other bits, lacks PRESENT and PROTNONE,
     *                                  or no present leaf of that size is there
     */
    public long protect(long va, PageSize size, long protFlags) {
        return raw.protect(va, size, protFlags);
    }

    /**
     * Frees every table below the root, reachable from {@code [start, end)}, whose entries are all
     * empty, bottom up (a table emptied by freeing its children goes too). Shared tables (share
     * count above zero) are left alone.
     *
     * @param start the first virtual address of the range, canonical and 4 KiB aligned
     * @param end one past the last virtual address of the range, 4 KiB aligned, same half
     * @return the number of tables freed
     * @throws InvalidArgumentException if the range is not as described
     */
    public int freeEmptyTables(long start, long end) {
        return raw.freeEmptyTables(start, end);
    }

    /**
     * Frees every table, the root included: the address space exits. Leaves are not touched
     * (their pages belong to the caller). A shared table is not freed; its share count drops.
     * Later changes throw {@link ClosedException}.
     */
    public void destroy() {
        raw.destroy();
    }

    /**
     * Whether {@link #destroy()} was called.
     *
     * @return true once the tables are freed
     */
    public boolean isDestroyed() {
        return raw.isDestroyed();
    }

    /**
     * The tables as the kernel's page-table dump shows them, user half only.
     *
     * @return one line per run of adjacent entries at the same level with the same attributes
     */
    public String dump() {
        return raw.dump();
    }

    /**
     * The tables over {@code [start, end)} (canonical, 4 KiB aligned) in the kernel's dump format.
     *
     * @param start the first virtual address of the range
     * @param end one past the last virtual address of the range
     * @return the dump lines of the runs that cover the range
     * @throws InvalidArgumentException if the range is not canonical, aligned and in one half
     */
    public String dump(long start, long end) {
        return raw.dump(start, end);
    }

    /** The tables with their raw entry operations, for this module's tests. */
    RawPageTable raw() {
        return raw;
    }
}
