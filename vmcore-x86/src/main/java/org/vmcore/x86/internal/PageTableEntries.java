package org.vmcore.x86.internal;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Objects;
import org.vmcore.api.ClosedException;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.PageTable;
import org.vmcore.x86.pgtable.Pte;

/**
 * The half of {@link RawPageTable} that takes no lock: finding an entry's slot and reading or
 * updating one entry atomically ({@code ptep_get}, {@code ptep_get_and_clear}, compare-and-set,
 * the protection change of one found leaf). The hardware walker sets A and D by compare-and-set
 * from CPU threads meanwhile; an update through a slot never loses a bit it set, as it compares
 * against the entry it read or swaps and returns the old entry with its bits. A slot stays valid
 * only while no structure change frees or unhooks its table, which the caller's mm lock ensures.
 */
abstract class PageTableEntries {
    private static final ValueLayout.OfLong ENTRY_LAYOUT = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);

    final PhysicalMemory memory;
    final DirectMap contents;
    final MemMap descriptors;
    final PageTableFrames frames;
    final PagingMode mode;
    final Level root;
    final int node;
    final long rootPfn;
    /** Set under the owner's monitor by destroy; read without it by the slot updates. */
    boolean destroyed;

    /** Allocates the root table on {@code node}. */
    PageTableEntries(PhysicalMemory memory, PagingMode mode, int node) {
        this.memory = memory;
        this.contents = SharedSecrets.directMap(memory);
        this.descriptors = SharedSecrets.memMap(memory);
        this.frames = SharedSecrets.pageTableFrames(memory);
        this.mode = Objects.requireNonNull(mode, "mode");
        this.root = Level.root(mode);
        memory.node(node); // validates the id
        this.node = node;
        long pfn = frames.tryAllocate(node);
        if (pfn < 0) {
            throw new OutOfMemoryException("no free frame on node " + node + " for a page table");
        }
        frames.account(pfn, true);
        this.rootPfn = pfn;
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
     * and pictures that read whole tables); a table never written reads as zeros.
     *
     * @param tablePfn the page frame number of the table
     * @return a new array of 512 entries, index 0 first
     */
    public long[] readTable(long tablePfn) {
        MemorySegment page = contents.pageOrNull(tablePfn);
        return page == null ? new long[Level.ENTRIES] : page.toArray(ENTRY_LAYOUT);
    }

    /**
     * Reads the entry at physical address {@code slot} (ptep_get).
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

    /**
     * {@link PageTable#protect} on a leaf slot the caller has already found (a range walk):
     * replaces the protection bits atomically (pte_modify). Returns the old entry, or 0
     * (changing nothing) if the slot does not hold a present or PROT_NONE leaf.
     *
     * @param slot the physical address of the leaf entry
     * @param size the page size of the leaf
     * @param protFlags the new protection bits, valid for {@link PageTable#protect}
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

    /**
     * Whether {@code e}, at {@code level}, points to a lower table.
     *
     * @param e an entry
     * @param level the level it was read at
     * @return true for a present non-leaf entry above PTE
     */
    public static boolean isTablePointer(long e, Level level) {
        return level != Level.PTE && (e & Pte.PRESENT) != 0 && !Pte.isLeaf(e, level);
    }

    static int slotIndex(long slot) {
        return (int) ((slot & 0xFFF) >>> 3);
    }

    void checkLevel(Level level) {
        if (level == null || level.ordinal() < root.ordinal()) {
            throw new InvalidArgumentException("level", level, "must exist in " + mode + " paging");
        }
    }

    void checkCanonical(long va, String name) {
        if (!mode.isCanonical(va)) {
            throw new InvalidArgumentException(name, va, "must be canonical for " + mode.virtualAddressBits() + "-bit addresses");
        }
    }

    void ensureAlive() {
        if (destroyed) {
            throw new ClosedException("page table at cr3 0x" + Long.toHexString(cr3()));
        }
        memory.ensureOpen();
    }
}
