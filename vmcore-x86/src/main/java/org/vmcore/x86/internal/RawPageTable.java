package org.vmcore.x86.internal;

import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.PageTable;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.Walker;

/**
 * The page tables of one address space, rooted at CR3, with the raw entry operations the
 * generic mm needs ({@code ptep_get}, {@code ptep_get_and_clear}, compare-and-set,
 * {@code set_pte_at} of any entry, {@code pud_populate}, {@code pud_clear}); {@link PageTable} is
 * the public, validated subset of it. Every table is a frame of simulated physical memory taken
 * from the owner's node; entries are real x86-64 entries in the frame's bytes, so a hardware
 * {@link Walker} reads exactly what this class writes.
 *
 * <p>Leaf operations ({@link #map}, {@link #unmap}, {@link #protect}, {@link #install}) work at
 * all three leaf levels. Table operations ({@link #populate}, {@link #clearTable}) let the
 * generic mm point an entry at a table owned by someone else, which is how hugetlb shares PMD
 * tables: such a table's share count ({@link MemMap#ptShareCount}) counts the extra
 * pointers, and this class never frees a table whose share count is above zero.
 *
 * <p>Every method validates its input before changing anything; a call that throws leaves the
 * tables as they were.
 *
 * <p>Locking. Two kinds of operation, as in the kernel:
 * <ul>
 *   <li><b>Atomic on one entry, no lock</b>: {@link #slot}, {@link #entry}, {@link #readSlot},
 *       {@link #readTable}, {@link #compareAndSetSlot}, {@link #getAndClearSlot} and
 *       {@link #protectSlot} are single atomic word loads, compare-and-sets or get-and-sets
 *       ({@code TableMemory}), and the hardware {@link Walker} sets A and D by compare-and-set
 *       from CPU threads while anything else runs. An update through a slot never loses a bit the
 *       walker set: it compares against the entry it read, or swaps and returns the old entry
 *       with its bits. What they do not
 *       protect is the table itself: a slot address stays valid only while no structure change
 *       frees or unhooks its table, so their callers hold the generic mm's lock (in vmcore-impl,
 *       the machine lock) from {@link #slot} to the last use of the slot.
 *   <li><b>Structure changes, under this table's monitor</b> (the kernel's
 *       {@code mm->page_table_lock}): {@link #map}, {@link #install}, {@link #unmap},
 *       {@link #protect}, {@link #populate}, {@link #clearTable}, {@link #freeEmptyTables} and
 *       {@link #destroy}, and the accounting
 *       they keep ({@link #tablePages}, {@link #tablesAt}). They lock themselves; they still
 *       need the caller's mm lock against the slot users above, since a table they free may be
 *       one a slot points into. Inside the monitor they take only the allocators' locks (physical
 *       memory, page-table window, buddy allocator). The table pages themselves are
 *       {@link TablePages}'.
 * </ul>
 */
public final class RawPageTable extends PageTableEntries {
    private final TablePages tables;
    private final HugePmdTables hugePmds;
    private volatile Runnable tableFreeBarrier = () -> { };

    /**
     * Allocates an empty root table on {@code node}.
     *
     * @param memory the physical memory the tables are allocated from
     * @param mode 4- or 5-level paging
     * @param node the NUMA node every table of this tree is allocated on
     * @throws InvalidArgumentException if the node does not exist
     * @throws OutOfMemoryException if the node has no free frame
     */
    public RawPageTable(PhysicalMemory memory, PagingMode mode, int node) {
        super(memory, mode, node);
        this.tables = new TablePages(this, frames, contents, descriptors, mode, node);
        this.hugePmds = new HugePmdTables(this, tables);
    }

    /**
     * Table pages this tree references, the root included; see {@link PageTable#tablePages()}.
     *
     * @return the number of table frames
     */
    public synchronized long tablePages() {
        return tables.count();
    }

    /**
     * Tables of {@code level} this tree points at, shared ones included.
     *
     * @param level the level of the tables counted
     * @return the number of tables of that level
     */
    public synchronized long tablesAt(Level level) {
        checkLevel(level);
        return level == root ? 1 : tables.countTables(rootPfn, root, level);
    }

    // ---- leaf operations, under the monitor ----

    /**
     * Maps {@code va} to the page at {@code pfn}; see {@link PageTable#map}.
     *
     * @param va the virtual address, canonical and aligned to {@code size}
     * @param pfn the page frame number of the page, aligned to {@code size}
     * @param size the page size of the leaf
     * @param flags the leaf's attribute bits, with PRESENT or PROTNONE
     * @throws InvalidArgumentException as {@link PageTable#map} documents
     * @throws OutOfMemoryException if a table cannot be allocated (nothing is changed)
     */
    public synchronized void map(long va, long pfn, PageSize size, long flags) {
        checkLeafAddress(va, size);
        if (!memory.isValidPfn(pfn) || !memory.isValidPfn(pfn + size.frames() - 1)) {
            throw new InvalidArgumentException("pfn", pfn,
                    "must name " + size.frames() + " frame(s) inside memory (frame count 0x" + Long.toHexString(memory.frameCount()) + ")");
        }
        if ((pfn & (size.frames() - 1)) != 0) {
            throw new InvalidArgumentException("pfn", pfn, "must be aligned to " + size.label() + " (a multiple of " + size.frames() + ")");
        }
        long illegal = Pte.illegalLeafFlags(flags, size);
        if (illegal != 0) {
            throw new InvalidArgumentException("flags", flags, "must not carry bits 0x" + Long.toHexString(illegal)
                    + " in a " + size.label() + " leaf (PFN and PS bits are set by map)");
        }
        if ((flags & (Pte.PRESENT | Pte.PROTNONE)) == 0) {
            throw new InvalidArgumentException("flags", flags, "must contain PRESENT or PROTNONE");
        }
        install(va, Level.ofLeaf(size), Pte.leaf(pfn, size, flags));
    }

    /**
     * Writes {@code entry} (a leaf, or a swap/migration/hwpoison entry) into the empty slot for
     * {@code va} at {@code level}, allocating missing tables (set_pte_at).
     *
     * @param va the virtual address, canonical and aligned to the level's page size
     * @param level PTE, PMD or PUD
     * @param entry the leaf, swap, migration or hwpoison entry to store, not a table pointer
     * @throws InvalidArgumentException if level holds no leaves, va is unaligned for it, the
     *                                  entry points to a table, or the slot is occupied
     * @throws OutOfMemoryException if a table cannot be allocated (nothing is changed)
     */
    public synchronized void install(long va, Level level, long entry) {
        ensureAlive();
        PageSize size = level.leafSize();
        if (size == null) {
            throw new InvalidArgumentException("level", level, "must be PUD, PMD or PTE to hold a leaf");
        }
        checkLeafAddress(va, size);
        if (Pte.isNone(entry)) {
            throw new InvalidArgumentException("entry", entry, "must not be empty (use unmap to clear)");
        }
        if (level != Level.PTE && (entry & Pte.PRESENT) != 0 && (entry & Pte.PSE) == 0) {
            throw new InvalidArgumentException("entry", entry, "must be a leaf (PS set) at " + level);
        }
        long slot = slotForWrite(va, level);
        long old = readSlot(slot);
        if (!Pte.isNone(old)) {
            // Undo nothing: slotForWrite only allocates tables that were missing, and a missing table
            // cannot hold an occupied slot.
            throw new InvalidArgumentException("va", va, "must not be mapped already at " + level + " (entry " + Pte.describe(old, level) + ")");
        }
        TableMemory.write(contents, slot >>> 12, slotIndex(slot), entry);
    }

    /**
     * The slot for {@code va} at {@code level} (a leaf level), allocating the tables above it that
     * are missing (pte_alloc, huge_pte_alloc): the fault path takes the slot's table lock, checks
     * the slot is still empty and fills it with {@link #compareAndSetSlot}.
     *
     * @param va the virtual address, canonical and aligned to the level's page size
     * @param level PTE, PMD or PUD
     * @return the slot's physical address
     * @throws OutOfMemoryException if a table cannot be allocated (nothing is changed)
     */
    public synchronized long allocSlot(long va, Level level) {
        ensureAlive();
        PageSize size = level.leafSize();
        if (size == null) {
            throw new InvalidArgumentException("level", level, "must be PUD, PMD or PTE to hold a leaf");
        }
        checkLeafAddress(va, size);
        return slotForWrite(va, level);
    }

    /**
     * Clears the leaf (or swap entry) of {@code size} that maps {@code va}; see {@link PageTable#unmap}.
     *
     * @param va the virtual address, canonical and aligned to {@code size}
     * @param size the page size of the leaf
     * @return the entry as it was when cleared
     * @throws InvalidArgumentException if no leaf or swap entry of that size is there
     */
    public synchronized long unmap(long va, PageSize size) {
        long slot = existingLeafSlot(va, size);
        return getAndClearSlot(slot);
    }

    /**
     * Changes the protection of the present leaf of {@code size} at {@code va}; see
     * {@link PageTable#protect}.
     *
     * @param va the virtual address, canonical and aligned to {@code size}
     * @param size the page size of the leaf
     * @param protFlags the new protection bits, within {@link Pte#PROT_BITS} plus {@link Pte#PROTNONE}
     * @return the entry before the change
     * @throws InvalidArgumentException as {@link PageTable#protect} documents
     */
    public synchronized long protect(long va, PageSize size, long protFlags) {
        if ((protFlags & ~(Pte.PROT_BITS | Pte.PROTNONE)) != 0) {
            throw new InvalidArgumentException("protFlags", protFlags, "must combine only PRESENT, RW, USER, GLOBAL/PROTNONE, NX and PKEY bits");
        }
        if ((protFlags & (Pte.PRESENT | Pte.PROTNONE)) == 0) {
            throw new InvalidArgumentException("protFlags", protFlags, "must contain PRESENT or PROTNONE");
        }
        long slot = existingLeafSlot(va, size);
        long old = protectSlot(slot, size, protFlags);
        if (old == 0) {
            throw new InvalidArgumentException("va", va, "must be mapped by a present " + size.label() + " leaf (entry "
                    + Pte.describe(readSlot(slot), Level.ofLeaf(size)) + ")");
        }
        return old;
    }

    // ---- transparent huge pages ----

    /**
     * As {@link #allocSlot}, but -1 instead of an exception when an entry on the way is a leaf (a
     * huge entry another fault installed meanwhile): the fault that wanted a 4 KiB slot retries.
     *
     * @param va the virtual address, canonical and aligned to the level's page size
     * @param level PTE, PMD or PUD
     * @return the slot's physical address, or -1
     * @throws OutOfMemoryException if a table cannot be allocated (nothing is changed)
     */
    public synchronized long tryAllocSlot(long va, Level level) {
        ensureAlive();
        long tablePfn = rootPfn;
        for (Level at = root; at != level; at = at.below()) {
            long e = TableMemory.read(contents, tablePfn, at.index(va));
            if (Pte.isNone(e)) {
                break;
            }
            if (!isTablePointer(e, at)) {
                return -1;
            }
            tablePfn = Pte.pfn(e);
        }
        return allocSlot(va, level);
    }

    /**
     * Fills the empty slot with {@code entry} under the tree's monitor, so that no table
     * allocation on the way to the same slot (which also runs under it) can overwrite it: a huge
     * entry installed at the PMD level while another fault allocates a PTE table there.
     *
     * @param slot a leaf slot from {@link #allocSlot}
     * @param entry the entry to store
     * @return false, changing nothing, when the slot was not empty
     */
    public synchronized boolean installIfNone(long slot, long entry) {
        ensureAlive();
        if (!Pte.isNone(readSlot(slot))) {
            return false;
        }
        return compareAndSetSlot(slot, readSlot(slot), entry);
    }

    /**
     * The operations of transparent huge pages on this tree: deposited tables, splits, collapses.
     *
     * @return the huge-PMD operations of this tree
     */
    public HugePmdTables hugePmds() {
        return hugePmds;
    }

    // ---- table operations, under the monitor ----

    /**
     * Points the empty entry for {@code va} at {@code level} (PML4, PUD or PMD) at the existing
     * table in frame {@code tablePfn}, allocating missing tables above it (pud_populate). The
     * caller accounts for the sharing (huge_pmd_share raises the share count before it populates).
     *
     * @param va the virtual address, canonical
     * @param level the level of the entry to fill: PML4, PUD or PMD
     * @param tablePfn the page frame number of the existing lower table
     * @throws InvalidArgumentException if level holds no table pointers, the frame is not a page
     *                                  table, or the slot is occupied
     */
    public synchronized void populate(long va, Level level, long tablePfn) {
        ensureAlive();
        checkCanonical(va, "va");
        if (level == Level.PTE || level == root) {
            throw new InvalidArgumentException("level", level, "must be below the root and above PTE");
        }
        checkLevel(level);
        if (!memory.isValidPfn(tablePfn) || !descriptors.test(tablePfn, FrameFlags.PGTABLE)) {
            throw new InvalidArgumentException("tablePfn", tablePfn, "must be a page-table frame");
        }
        long slot = slotForWrite(va, level);
        long old = readSlot(slot);
        if (!Pte.isNone(old)) {
            throw new InvalidArgumentException("va", va, "must have an empty " + level + " entry (entry " + Pte.describe(old, level) + ")");
        }
        TableMemory.write(contents, slot >>> 12, slotIndex(slot), Pte.table(tablePfn));
        tables.countShared(1); // mm_inc_nr_pmds: the shared table now counts for this tree too
    }

    /**
     * Clears the entry for {@code va} at {@code level} that points to a lower table and returns
     * that table's PFN, without freeing it (pud_clear in huge_pmd_unshare).
     *
     * @param va the virtual address, canonical
     * @param level the level of the entry to clear
     * @return the page frame number of the table the entry pointed to
     * @throws InvalidArgumentException if the entry does not point to a table
     */
    public synchronized long clearTable(long va, Level level) {
        ensureAlive();
        checkLevel(level);
        long slot = slot(va, level);
        long e = slot < 0 ? 0 : readSlot(slot);
        if (slot < 0 || !isTablePointer(e, level)) {
            throw new InvalidArgumentException("va", va, "must have a " + level + " entry that points to a table (entry " + Pte.describe(e, level) + ")");
        }
        getAndClearSlot(slot);
        tables.countShared(-1); // mm_dec_nr_pmds: the table is no longer this tree's
        return Pte.pfn(e);
    }

    /**
     * Frees the empty tables reachable from {@code [start, end)}; see {@link PageTable#freeEmptyTables}.
     *
     * @param start the first virtual address of the range, canonical and 4 KiB aligned
     * @param end one past the last virtual address of the range
     * @return the number of tables freed
     */
    public synchronized int freeEmptyTables(long start, long end) {
        ensureAlive();
        checkRange(start, end);
        return tables.deferFrees(() -> tables.freeEmpty(rootPfn, root, 0, start, end), tableFreeBarrier);
    }

    /**
     * Sets what runs after tables are unhooked and before their frames go back (by default
     * nothing): the engine waits there for lockless walkers (tlb_remove_table_sync_one).
     *
     * @param barrier what to run, not null
     */
    public void setTableFreeBarrier(Runnable barrier) {
        this.tableFreeBarrier = barrier;
    }

    /** Frees every table, the root included; see {@link PageTable#destroy}. */
    public synchronized void destroy() {
        if (destroyed) {
            return;
        }
        tables.deferFrees(() -> {
            tables.release(rootPfn, root);
            return null;
        }, tableFreeBarrier);
        destroyed = true;
    }

    /**
     * Whether {@link #destroy()} was called.
     *
     * @return true once the tables are freed
     */
    public synchronized boolean isDestroyed() {
        return destroyed;
    }

    /**
     * The tables in the kernel's dump format ({@link PtDump}), user half only.
     *
     * @return one line per run of adjacent entries at the same level with the same attributes
     */
    public String dump() {
        return PtDump.dump(contents, mode, rootPfn, 0, mode.userAddressLimit());
    }

    /**
     * The tables over {@code [start, end)} in the kernel's dump format ({@link PtDump}).
     *
     * @param start the first virtual address of the range, canonical and 4 KiB aligned
     * @param end one past the last virtual address of the range
     * @return the dump lines of the runs that cover the range
     */
    public String dump(long start, long end) {
        checkRange(start, end);
        return PtDump.dump(contents, mode, rootPfn, start, end);
    }

    // ---- internals ----

    private long existingLeafSlot(long va, PageSize size) {
        ensureAlive();
        checkLeafAddress(va, size);
        Level level = Level.ofLeaf(size);
        long slot = slot(va, level);
        long e = slot < 0 ? 0 : readSlot(slot);
        if (slot < 0 || Pte.isNone(e) || isTablePointer(e, level)) {
            throw new InvalidArgumentException("va", va, "must be mapped by a " + size.label() + " leaf or swap entry (entry " + Pte.describe(e, Level.ofLeaf(size)) + ")");
        }
        return slot;
    }

    /** The slot for va at level, allocating missing tables all or nothing. */
    long slotForWrite(long va, Level level) {
        long tablePfn = rootPfn;
        for (Level at = root; at != level; at = at.below()) {
            long e = TableMemory.read(contents, tablePfn, at.index(va));
            if (Pte.isNone(e)) {
                return tables.allocateBelow(va, tablePfn, at, level);
            }
            if (!isTablePointer(e, at)) {
                throw new InvalidArgumentException("va", va, "is covered by a " + at + " entry that is not a table (entry " + Pte.describe(e, at) + ")");
            }
            tablePfn = Pte.pfn(e);
        }
        return (tablePfn << 12) | ((long) level.index(va) << 3);
    }

    void checkLeafAddress(long va, PageSize size) {
        checkCanonical(va, "va");
        if (!size.isAligned(va)) {
            throw new InvalidArgumentException("va", va, "must be aligned to " + size.label());
        }
    }

    private void checkRange(long start, long end) {
        checkCanonical(start, "start");
        if ((start & 0xFFF) != 0) {
            throw new InvalidArgumentException("start", start, "must be 4K aligned");
        }
        if ((end & 0xFFF) != 0 || Long.compareUnsigned(end, start) <= 0) {
            throw new InvalidArgumentException("end", end, "must be 4K aligned and above start 0x" + Long.toHexString(start));
        }
        if (!mode.isCanonical(end - 1) || (start < 0) != (end - 1 < 0)) {
            throw new InvalidArgumentException("end", end, "must keep [start, end) inside one canonical half");
        }
    }
}
