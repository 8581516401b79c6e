package org.vmcore.x86.internal;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import org.vmcore.x86.pgtable.Level;

/**
 * Atomic access to page-table entries stored in frame contents. Entries are 64-bit
 * little-endian words; an entry's address is its table's physical address plus 8 times its
 * index. Every access is atomic on the word, as the hardware's and the kernel's are.
 */
public final class TableMemory {
    private static final ValueLayout.OfLong ENTRY_LAYOUT = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle ENTRY = ENTRY_LAYOUT.varHandle();

    private TableMemory() {
    }

    /**
     * A volatile read of entry {@code index} of the table in frame {@code tablePfn}.
     *
     * @param pages the frames' host pages
     * @param tablePfn the table's frame
     * @param index the entry index, 0 to 511
     * @return the entry; 0 for a frame never written
     */
    public static long read(DirectMap pages, long tablePfn, int index) {
        MemorySegment page = pages.pageOrNull(tablePfn);
        return page == null ? 0 : (long) ENTRY.getVolatile(page, (long) index << 3);
    }

    /**
     * A volatile read of entry {@code index} of a table's host page.
     *
     * @param table the table's 4096-byte page
     * @param index the entry index, 0 to 511
     * @return the entry
     */
    public static long read(MemorySegment table, int index) {
        return (long) ENTRY.getVolatile(table, (long) index << 3);
    }

    /**
     * An atomic read with no ordering, as the hardware walker's reads are.
     *
     * @param table the table's 4096-byte page
     * @param index the entry index, 0 to 511
     * @return the entry
     */
    public static long readOpaque(MemorySegment table, int index) {
        return (long) ENTRY.getOpaque(table, (long) index << 3);
    }

    /**
     * A plain read at a byte offset (a table inside a page-table window): an aligned 8-byte read
     * is single-copy atomic on a 64-bit host, and the walker's reads need no ordering, as the
     * hardware walker's have none; the CPU's shootdown handshake orders what must be ordered.
     *
     * @param memory the window's segment
     * @param offset the entry's byte offset in it, 8-byte aligned
     * @return the entry
     */
    public static long readAt(MemorySegment memory, long offset) {
        return memory.get(ENTRY_LAYOUT, offset);
    }

    /**
     * A volatile write of entry {@code index} of the table in frame {@code tablePfn}.
     *
     * @param pages the frames' host pages
     * @param tablePfn the table's frame
     * @param index the entry index, 0 to 511
     * @param entry the new entry
     */
    public static void write(DirectMap pages, long tablePfn, int index, long entry) {
        ENTRY.setVolatile(pages.page(tablePfn), (long) index << 3, entry);
    }

    /**
     * Writes all 512 entries of the table in frame {@code tablePfn}, which no walker reaches yet
     * (a table about to be linked): one bulk copy, then a release fence, so that the store that
     * links the table publishes them.
     *
     * @param pages the frames' host pages
     * @param tablePfn the table's frame
     * @param entries the 512 entries, in index order
     */
    public static void writeUnlinked(DirectMap pages, long tablePfn, long[] entries) {
        MemorySegment.copy(entries, 0, pages.page(tablePfn), ENTRY_LAYOUT, 0, Level.ENTRIES);
        VarHandle.releaseFence();
    }

    /**
     * Replaces entry {@code index} of the table in frame {@code tablePfn} if it still equals
     * {@code expected}.
     *
     * @param pages the frames' host pages
     * @param tablePfn the table's frame
     * @param index the entry index, 0 to 511
     * @param expected the entry the caller last read
     * @param entry the new entry
     * @return true when replaced
     */
    public static boolean compareAndSet(DirectMap pages, long tablePfn, int index, long expected, long entry) {
        return ENTRY.compareAndSet(pages.page(tablePfn), (long) index << 3, expected, entry);
    }

    /**
     * Replaces entry {@code index} of a table's host page if it still equals {@code expected}.
     *
     * @param table the table's 4096-byte page
     * @param index the entry index, 0 to 511
     * @param expected the entry the caller last read
     * @param entry the new entry
     * @return true when replaced
     */
    public static boolean compareAndSet(MemorySegment table, int index, long expected, long entry) {
        return ENTRY.compareAndSet(table, (long) index << 3, expected, entry);
    }

    /**
     * Swaps entry {@code index} of the table in frame {@code tablePfn} for {@code entry}.
     *
     * @param pages the frames' host pages
     * @param tablePfn the table's frame
     * @param index the entry index, 0 to 511
     * @param entry the new entry
     * @return the entry before, with every bit set up to the swap
     */
    public static long getAndSet(DirectMap pages, long tablePfn, int index, long entry) {
        return (long) ENTRY.getAndSet(pages.page(tablePfn), (long) index << 3, entry);
    }
}
