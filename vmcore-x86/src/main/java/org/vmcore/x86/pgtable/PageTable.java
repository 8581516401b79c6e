package org.vmcore.x86.pgtable;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Objects;
import org.vmcore.api.ClosedException;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.mem.FrameContents;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * The page tables of one address space, rooted at CR3. Every table is a frame of simulated
 * physical memory taken from the owner's node; entries are real x86-64 entries in the frame's
 * bytes, so a hardware {@link Walker} reads exactly what this class writes.
 *
 * <p>Leaf operations ({@link #map}, {@link #unmap}, {@link #protect}, {@link #install}) work at
 * all three leaf levels. Table operations ({@link #populate}, {@link #clearTable}) let the
 * generic mm point an entry at a table owned by someone else, which is how hugetlb shares PMD
 * tables: such a table's share count ({@link FrameDescriptors#ptShareCount}) counts the extra
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
 *       memory, page-table window, buddy allocator).
 * </ul>
 */
public final class PageTable {
    private final PhysicalMemory memory;
    private final FrameContents contents;
    private final FrameDescriptors descriptors;
    private final PagingMode mode;
    private final Level root;
    private final int node;
    private final long rootPfn;
    private long tablePages;
    private boolean destroyed;

    /**
     * Allocates an empty root table on {@code node}.
     *
     * @param memory the physical memory the tables are allocated from
     * @param mode 4- or 5-level paging
     * @param node the NUMA node every table of this tree is allocated on
     * @throws OutOfMemoryException if the node has no free frame
     */
    public PageTable(PhysicalMemory memory, PagingMode mode, int node) {
        this.memory = memory;
        this.contents = memory.contents();
        this.descriptors = memory.descriptors();
        this.mode = Objects.requireNonNull(mode, "mode");
        this.root = Level.root(mode);
        memory.node(node); // validates the id
        this.node = node;
        this.rootPfn = allocateTable();
    }

    /**
     * CR3: the physical address of the root table.
     *
     * @return the root table's PFN times 4096
     */
    public long cr3() {
        return rootPfn << 12;
    }

    /**
     * The paging mode.
     *
     * @return 4- or 5-level paging, fixed at construction
     */
    public PagingMode mode() {
        return mode;
    }

    /**
     * The root level: PML4 or PML5.
     *
     * @return {@link Level#root} of {@link #mode()}
     */
    public Level rootLevel() {
        return root;
    }

    /**
     * The node tables are allocated from.
     *
     * @return the NUMA node id
     */
    public int node() {
        return node;
    }

    /**
     * The memory the tables live in.
     *
     * @return the memory given at construction
     */
    public PhysicalMemory memory() {
        return memory;
    }

    /**
     * Table pages this tree references, the root included: the kernel's page-table accounting
     * per mm, in which a shared PMD table counts once for every address space that points at it.
     *
     * @return the number of table frames, 1 or more until {@link #destroy()}
     */
    public synchronized long tablePages() {
        return tablePages;
    }

    /**
     * Tables of {@code level} this tree points at (for PMD: the kernel's nr_pmds), shared ones
     * included.
     *
     * @param level the level of the tables counted
     * @return the number of tables of that level
     */
    public synchronized long tablesAt(Level level) {
        checkLevel(level);
        return level == root ? 1 : countTables(rootPfn, root, level);
    }

    private long countTables(long tablePfn, Level at, Level wanted) {
        long n = 0;
        Level below = at.below();
        long[] entries = readTable(tablePfn);
        for (int i = 0; i < Level.ENTRIES; i++) {
            long e = entries[i];
            if (isTablePointer(e, at)) {
                n += below == wanted ? 1 : countTables(Pte.pfn(e), below, wanted);
            }
        }
        return n;
    }

    // ---- entry lookup ----

    /**
     * The physical address of the entry for {@code va} at {@code level}, or -1 when a table on
     * the way is missing or an upper entry is a leaf or a swap entry.
     *
     * @param va the virtual address, canonical
     * @param level the level whose entry is wanted, at or below the root
     * @return the entry's physical address, or -1
     */
    public long slot(long va, Level level) {
        checkCanonical(va, "va");
        checkLevel(level);
        long tablePfn = rootPfn;
        for (Level at = root; at != level; at = at.below()) {
            long e = TableMemory.read(contents, tablePfn, at.index(va));
            if (!isTablePointer(e, at)) {
                return -1;
            }
            tablePfn = Pte.pfn(e);
        }
        return (tablePfn << 12) | ((long) level.index(va) << 3);
    }

    /**
     * The entry for {@code va} at {@code level}, or 0 when {@link #slot} finds none.
     *
     * @param va the virtual address, canonical
     * @param level the level whose entry is wanted, at or below the root
     * @return the entry as it is now, or 0
     */
    public long entry(long va, Level level) {
        long slot = slot(va, level);
        return slot < 0 ? 0 : readSlot(slot);
    }

    /**
     * All 512 entries of the table in frame {@code tablePfn}, copied in one go (for checkers
     * and dumps that read whole tables); a table never written reads as zeros.
     *
     * @param tablePfn the page frame number of the table
     * @return a new array of 512 entries, index 0 first
     */
    public long[] readTable(long tablePfn) {
        MemorySegment page = contents.pageOrNull(tablePfn);
        return page == null ? new long[Level.ENTRIES] : page.toArray(ENTRY_LAYOUT);
    }

    private static final ValueLayout.OfLong ENTRY_LAYOUT =
            ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);

    /**
     * Reads the entry at physical address {@code slot}.
     *
     * @param slot the physical address of an entry, 8-byte aligned
     * @return the entry, read volatile
     */
    public long readSlot(long slot) {
        return TableMemory.read(contents, slot >>> 12, slotIndex(slot));
    }

    /**
     * Atomically replaces the entry at {@code slot} if it still equals {@code expected}.
     *
     * @param slot the physical address of an entry, 8-byte aligned
     * @param expected the entry the caller last read there
     * @param entry the new entry
     * @return true when the entry was replaced, false when it had changed
     */
    public boolean compareAndSetSlot(long slot, long expected, long entry) {
        ensureAlive();
        return TableMemory.compareAndSet(contents, slot >>> 12, slotIndex(slot), expected, entry);
    }

    /**
     * Atomically clears the entry at {@code slot} and returns it (ptep_get_and_clear).
     *
     * @param slot the physical address of an entry, 8-byte aligned
     * @return the entry before it was cleared, with any A/D bits set up to the clear
     */
    public long getAndClearSlot(long slot) {
        ensureAlive();
        return TableMemory.getAndSet(contents, slot >>> 12, slotIndex(slot), 0);
    }

    // ---- leaf operations ----

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
    public synchronized void map(long va, long pfn, PageSize size, long flags) {
        checkLeafAddress(va, size);
        if (!memory.isValidPfn(pfn) || !memory.isValidPfn(pfn + size.frames() - 1)) {
            throw new InvalidArgumentException("pfn", pfn,
                    "must name " + size.frames() + " frame(s) inside memory (frame count 0x" + Long.toHexString(memory.frameCount()) + ")");
        }
        if ((pfn & (size.frames() - 1)) != 0) {
            throw new InvalidArgumentException("pfn", pfn, "must be aligned to " + size.label() + " (a multiple of " + size.frames() + ")");
        }
        checkLeafFlags(flags, size);
        if ((flags & (Pte.PRESENT | Pte.PROTNONE)) == 0) {
            throw new InvalidArgumentException("flags", flags, "must contain PRESENT or PROTNONE");
        }
        install(va, Level.ofLeaf(size), Pte.leaf(pfn, size, flags));
    }

    /**
     * Writes {@code entry} (a leaf, or a swap/migration/hwpoison entry) into the empty slot for
     * {@code va} at {@code level}, allocating missing tables.
     *
     * @param va the virtual address, canonical and aligned to the level's page size
     * @param level PTE, PMD or PUD
     * @param entry the leaf, swap, migration or hwpoison entry to store, not a table pointer
     * @throws InvalidArgumentException if level holds no leaves, va is unaligned for it, the
     *                                  entry points to a table, or the slot is occupied
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
     * Clears the leaf (or swap entry) of {@code size} that maps {@code va} and returns the old
     * entry, with any A/D bits the hardware set up to the clear. Tables are not freed; see
     * {@link #freeEmptyTables}.
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

    /**
     * {@link #protect} on a leaf slot the caller has already found (a range walk): replaces the
     * protection bits atomically. Returns the old entry, or 0 (changing nothing) if the slot
     * does not hold a present or PROT_NONE leaf. {@code protFlags} must be valid for
     * {@link #protect}.
     *
     * @param slot the physical address of the leaf entry
     * @param size the page size of the leaf
     * @param protFlags the new protection bits, as for {@link #protect}
     * @return the entry before the change, or 0
     */
    public long protectSlot(long slot, PageSize size, long protFlags) {
        ensureAlive();
        while (true) {
            long old = readSlot(slot);
            if (!Pte.isPresent(old)) {
                return 0;
            }
            // pte_modify keeps the caching bits: bit 7 is PAT in a 4 KiB PTE, so only a huge leaf
            // drops it here (as PS, which leaf() sets again). The L1TF inversion covers only the
            // PFN field, so PAT_LARGE (bit 12) of a huge leaf is kept as is.
            long keep = old & ~(Pte.PROT_BITS | Pte.pfnMask(size) | (size == PageSize.SIZE_4K ? 0 : Pte.PSE));
            long updated = Pte.leaf(Pte.pfn(old, size), size, keep | protFlags);
            if (compareAndSetSlot(slot, old, updated)) {
                return old;
            }
        }
    }

    // ---- table operations ----

    /**
     * Points the empty entry for {@code va} at {@code level} (PML4, PUD or PMD) at the existing
     * table in frame {@code tablePfn}, allocating missing tables above it. The caller accounts
     * for the sharing (huge_pmd_share raises the share count before it populates).
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
        tablePages++; // mm_inc_nr_pmds: the shared table now counts for this tree too
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
        tablePages--; // mm_dec_nr_pmds: the table is no longer this tree's
        return Pte.pfn(e);
    }

    /**
     * Frees every table below the root, reachable from {@code [start, end)}, whose entries are all
     * empty, bottom up (a table emptied by freeing its children goes too). Shared tables (share
     * count above zero) are left alone.
     *
     * @param start the first virtual address of the range, canonical
     * @param end one past the last virtual address of the range
     * @return the number of tables freed
     */
    public synchronized int freeEmptyTables(long start, long end) {
        ensureAlive();
        checkRange(start, end);
        return freeEmpty(rootPfn, root, 0, start, end);
    }

    /**
     * Frees every table, the root included: the address space exits. Leaves are not touched
     * (their pages belong to the caller). A shared table is not freed; its share count drops.
     */
    public synchronized void destroy() {
        if (destroyed) {
            return;
        }
        release(rootPfn, root);
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
     * The tables as the kernel's page-table dump shows them, user half only.
     *
     * @return one line per run of adjacent entries at the same level with the same attributes
     */
    public String dump() {
        return PtDump.dump(this, 0, mode.userAddressLimit());
    }

    /**
     * The tables over {@code [start, end)} (canonical, 4 KiB aligned) in the kernel's dump format.
     *
     * @param start the first virtual address of the range
     * @param end one past the last virtual address of the range
     * @return the dump lines of the runs that cover the range
     */
    public String dump(long start, long end) {
        checkRange(start, end);
        return PtDump.dump(this, start, end);
    }

    long rootPfn() {
        return rootPfn;
    }

    FrameContents contents() {
        return contents;
    }

    // ---- internals ----

    static boolean isTablePointer(long e, Level level) {
        return level != Level.PTE && (e & Pte.PRESENT) != 0 && !Pte.isLeaf(e, level);
    }

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
    private long slotForWrite(long va, Level level) {
        int missing = 0;
        long tablePfn = rootPfn;
        Level at = root;
        for (; at != level; at = at.below()) {
            long e = TableMemory.read(contents, tablePfn, at.index(va));
            if (Pte.isNone(e)) {
                missing = level.ordinal() - at.ordinal();
                break;
            }
            if (!isTablePointer(e, at)) {
                throw new InvalidArgumentException("va", va, "is covered by a " + at + " entry that is not a table (entry " + Pte.describe(e, at) + ")");
            }
            tablePfn = Pte.pfn(e);
        }
        if (missing > 0) {
            long[] fresh = new long[missing];
            for (int i = 0; i < missing; i++) {
                long pfn = memory.tryAllocateTable(node);
                if (pfn < 0) {
                    for (int j = 0; j < i; j++) {
                        freeTable(fresh[j]);
                    }
                    throw new OutOfMemoryException("no free frame on node " + node + " for a page table (needed " + missing + ")");
                }
                initTable(pfn);
                fresh[i] = pfn;
            }
            for (int i = 0; i < missing; i++, at = at.below()) {
                TableMemory.write(contents, tablePfn, at.index(va), Pte.table(fresh[i]));
                tablePfn = fresh[i];
            }
        }
        return (tablePfn << 12) | ((long) level.index(va) << 3);
    }

    private long allocateTable() {
        long pfn = memory.tryAllocateTable(node);
        if (pfn < 0) {
            throw new OutOfMemoryException("no free frame on node " + node + " for a page table");
        }
        initTable(pfn);
        return pfn;
    }

    private void initTable(long pfn) {
        descriptors.setFlags(pfn, FrameFlags.PGTABLE);
        contents.page(pfn); // a table is always materialised: walks read it
        tablePages++;
        memory.pageTableFrames().incrementAndGet();
    }

    private void freeTable(long pfn) {
        descriptors.clearFlags(pfn, FrameFlags.PGTABLE);
        memory.free(pfn); // contents stay, like a real freed frame, until the next zeroing allocation
        tablePages--;
        memory.pageTableFrames().decrementAndGet();
    }

    private int freeEmpty(long tablePfn, Level level, long base, long start, long end) {
        int freed = 0;
        Level below = level.below();
        int first = level.index(start);
        int last = level.index(end - 1);
        for (int i = first; i <= last; i++) {
            long e = TableMemory.read(contents, tablePfn, i);
            if (!isTablePointer(e, level)) {
                continue;
            }
            long child = Pte.pfn(e);
            if (descriptors.ptShareCount(child) > 0) {
                continue;
            }
            long childBase = signExtend(base + ((long) i << level.shift()));
            if (below != Level.PTE) {
                freed += freeEmpty(child, below, childBase, Math.max(start, childBase),
                        Math.min(end, childBase + level.entrySpan()));
            }
            if (isEmpty(child)) {
                TableMemory.write(contents, tablePfn, i, 0);
                freeTable(child);
                freed++;
            }
        }
        return freed;
    }

    private void release(long tablePfn, Level level) {
        Level below = level.below();
        for (int i = 0; i < Level.ENTRIES && below != null; i++) {
            long e = TableMemory.read(contents, tablePfn, i);
            if (!isTablePointer(e, level)) {
                continue;
            }
            long child = Pte.pfn(e);
            TableMemory.write(contents, tablePfn, i, 0);
            if (descriptors.ptShareCount(child) > 0) {
                descriptors.addPtShareCount(child, -1); // another address space still uses it
                tablePages--;
            } else {
                release(child, below);
            }
        }
        freeTable(tablePfn);
    }

    private boolean isEmpty(long tablePfn) {
        for (int i = 0; i < Level.ENTRIES; i++) {
            if (!Pte.isNone(TableMemory.read(contents, tablePfn, i))) {
                return false;
            }
        }
        return true;
    }

    private long signExtend(long va) {
        int unused = 64 - mode.virtualAddressBits();
        return (va << unused) >> unused;
    }

    private static int slotIndex(long slot) {
        return (int) ((slot & 0xFFF) >>> 3);
    }

    private void checkLevel(Level level) {
        if (level == null || level.ordinal() < root.ordinal()) {
            throw new InvalidArgumentException("level", level, "must exist in " + mode + " paging");
        }
    }

    private void checkLeafAddress(long va, PageSize size) {
        checkCanonical(va, "va");
        if (!size.isAligned(va)) {
            throw new InvalidArgumentException("va", va, "must be aligned to " + size.label());
        }
    }

    private void checkCanonical(long va, String name) {
        if (!mode.isCanonical(va)) {
            throw new InvalidArgumentException(name, va, "must be canonical for " + mode.virtualAddressBits() + "-bit addresses");
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

    private static void checkLeafFlags(long flags, PageSize size) {
        long illegal = Pte.illegalLeafFlags(flags, size);
        if (illegal != 0) {
            throw new InvalidArgumentException("flags", flags, "must not carry bits 0x" + Long.toHexString(illegal)
                    + " in a " + size.label() + " leaf (PFN and PS bits are set by map)");
        }
    }

    private void ensureAlive() {
        if (destroyed) {
            throw new ClosedException("page table at cr3 0x" + Long.toHexString(cr3()));
        }
        memory.ensureOpen();
    }
}
