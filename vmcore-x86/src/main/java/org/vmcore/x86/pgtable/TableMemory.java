package org.vmcore.x86.pgtable;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import org.vmcore.x86.mem.FrameContents;

/**
 * Atomic access to page-table entries stored in frame contents. Entries are 64-bit
 * little-endian words; an entry's address is its table's physical address plus 8 times its
 * index. Every access is atomic on the word, as the hardware's and the kernel's are.
 */
final class TableMemory {
    private static final ValueLayout.OfLong ENTRY_LAYOUT = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle ENTRY = ENTRY_LAYOUT.varHandle();

    private TableMemory() {
    }

    static long read(FrameContents contents, long tablePfn, int index) {
        MemorySegment page = contents.pageOrNull(tablePfn);
        return page == null ? 0 : (long) ENTRY.getVolatile(page, (long) index << 3);
    }

    static long read(MemorySegment table, int index) {
        return (long) ENTRY.getVolatile(table, (long) index << 3);
    }

    /** An atomic read with no ordering, as the hardware walker's reads are. */
    static long readOpaque(MemorySegment table, int index) {
        return (long) ENTRY.getOpaque(table, (long) index << 3);
    }

    /**
     * A plain read at a byte offset (a table inside a page-table window): an aligned 8-byte read
     * is single-copy atomic on a 64-bit host, and the walker's reads need no ordering, as the
     * hardware walker's have none; the CPU's shootdown handshake orders what must be ordered.
     */
    static long readAt(MemorySegment memory, long offset) {
        return memory.get(ENTRY_LAYOUT, offset);
    }

    static void write(FrameContents contents, long tablePfn, int index, long entry) {
        ENTRY.setVolatile(contents.page(tablePfn), (long) index << 3, entry);
    }

    static boolean compareAndSet(FrameContents contents, long tablePfn, int index, long expected, long entry) {
        return ENTRY.compareAndSet(contents.page(tablePfn), (long) index << 3, expected, entry);
    }

    static boolean compareAndSet(MemorySegment table, int index, long expected, long entry) {
        return ENTRY.compareAndSet(table, (long) index << 3, expected, entry);
    }

    static long getAndSet(FrameContents contents, long tablePfn, int index, long entry) {
        return (long) ENTRY.getAndSet(contents.page(tablePfn), (long) index << 3, entry);
    }
}
