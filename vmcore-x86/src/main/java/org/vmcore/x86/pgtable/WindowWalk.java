package org.vmcore.x86.pgtable;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import org.vmcore.x86.internal.PageTableWindow;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * The short path of the hardware walk: every table in the node's page-table window, read by
 * arithmetic on one host segment as a C radix walk reads its tables, and every entry already
 * present, accessed and allowing the access. It decides no fault and sets no bit; whatever it
 * cannot serve, the full walk of {@link Walker} does. A superclass rather than a collaborator so
 * the window's fields are the walker's own fields, as the path is kept small enough for the JIT
 * to inline into its callers.
 */
abstract class WindowWalk {
    private static final int PTE_ORD = Level.PTE.ordinal();
    private static final int PMD_ORD = Level.PMD.ordinal();
    private static final int PUD_ORD = Level.PUD.ordinal();
    // Index bits of an address shifted to a byte offset in a table: 9 bits times 8 bytes.
    private static final long INDEX_BYTES = (Level.ENTRIES - 1) << 3;
    // Entries are little-endian words at 8-byte aligned offsets; the unaligned layout only spares
    // the fast walk a check its offsets pass by construction.
    private static final ValueLayout.OfLong ENTRY = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    // What the fast walk reads before the memory has a window: one page of zeros for the whole
    // JVM, never freed (4 KiB), so the fast walk needs no null test.
    private static final MemorySegment NO_WINDOW = Arena.global().allocate(PhysicalMemory.FRAME_BYTES);

    private final long physReserved;
    // The first page-table window, as seen at the last change of the memory's window list. A
    // window is a naturally aligned power-of-two block, so a table at physical address t lies in
    // it when (t & windowHighMask) == windowBase, at offset (t & windowOffsetMask). Before a
    // window exists the fast walk reads a page of zeros (no entry present, so every fast walk
    // fails), and only the last possible frame would match windowBase.
    private PageTableWindow[] seenWindows;
    private MemorySegment windowMemory = NO_WINDOW;
    private long windowBase = Pte.PFN_MASK;
    private long windowOffsetMask;
    private long windowHighMask = Pte.PFN_MASK;

    /** physReserved: the PFN bits at and above MAXPHYADDR, reserved in every entry. */
    WindowWalk(long physReserved) {
        this.physReserved = physReserved;
    }

    /**
     * The common hardware walk, written for speed rather than generality: from the table at
     * physical address {@code table} at level ordinal {@code startOrd}, every table in the
     * first page-table window, every entry present, accessed (the leaf also dirty for a write),
     * allowing the access and free of reserved bits. Anything else returns false and the full
     * walk decides; what this one recorded in {@code out} is overwritten then. The caller has
     * checked canonicality, that no protection key is in play and that the levels above the
     * start allow the access; their RW, USER and NX bits ({@code upperBits}) go to the result.
     *
     * <p>The levels are written out as a switch that falls through from the start level, so
     * that each level's shift is a constant once {@link #fastEntry} is inlined; the method is
     * kept small enough for the compiler to inline it into its callers.
     *
     * <p>The entries that point to tables are checked together at the end, through one value:
     * the OR of each entry XOR {@code expect}, the entry that points to a table in the window
     * and allows everything (P, A, RW, USER set; NX, PS and reserved bits clear; the window's
     * high address bits). A bit of it is set where some entry differs from that there. The start
     * table joins it by its high address bits. A non-present entry may have led the walk to a
     * wrong table first, which is harmless: every read stays inside the window and the walk fails.
     */
    @SuppressWarnings("fallthrough") // each level falls through to the one below on purpose
    final boolean fastWalk(int startOrd, long table, long upperBits, long va, int access, WalkResult out) { // package-private for FastWalkTest
        out.begin(table, upperBits);
        long expect = windowBase | Pte.PRESENT | Pte.ACCESSED | Pte.RW | Pte.USER;
        long diff = (table ^ windowBase) & windowHighMask;
        long e;
        int ord;
        switch (startOrd) {
            case 0:
                e = fastEntry(0, table, va, out);
                table = e ^ expect;
                diff |= table;
                // fall through
            case 1:
                e = fastEntry(1, table, va, out);
                table = e ^ expect;
                diff |= table;
                // fall through
            case 2: // PS makes a 1 GiB leaf
                e = fastEntry(PUD_ORD, table, va, out);
                if ((e & Pte.PSE) != 0) {
                    ord = PUD_ORD;
                    break;
                }
                table = e ^ expect;
                diff |= table;
                // fall through
            case 3: // PS makes a 2 MiB leaf
                e = fastEntry(PMD_ORD, table, va, out);
                if ((e & Pte.PSE) != 0) {
                    ord = PMD_ORD;
                    break;
                }
                table = e ^ expect;
                diff |= table;
                // fall through
            case 4:
                e = fastEntry(PTE_ORD, table, va, out);
                ord = PTE_ORD;
                break;
            default:
                return false;
        }
        return fastLeaf(startOrd, ord, e, diff, va, access, out);
    }

    /**
     * Reads and records the entry {@code va} selects at level ordinal {@code ord} in the table
     * whose offset in the window is {@code table}'s offset bits, taken to be in the window: for a
     * table outside it, the read stays inside the window and {@link #fastLeaf} discards the walk.
     * {@code table} is the start table's address or the entry above XOR {@code expect},
     * which has the entry's offset bits (the window's base and the flags in {@code expect}
     * have none there). The index is taken with a rotate, which compiles to one instruction
     * (rorx) where a shift needs two, and joined with OR, as offset and index share no bit.
     */
    private long fastEntry(int ord, long table, long va, WalkResult out) {
        long e = windowMemory.get(ENTRY, (table & windowOffsetMask) | (Long.rotateRight(va, Level.shift(ord) - 3) & INDEX_BYTES));
        out.record(ord, e);
        return e;
    }

    /**
     * Ends {@link #fastWalk} at the leaf {@code e} at level ordinal {@code ord}, given how the
     * start table and the entries above the leaf differ from {@code expect}: true with
     * {@code out} filled if every table lies in the window and every entry passes.
     */
    private boolean fastLeaf(int startOrd, int ord, long e, long diff, long va, int access, WalkResult out) {
        // The tables' entries must not differ in their P and A bits, the access's RW and USER
        // bits (PageFaultCode's WRITE and USER are the entries' RW and USER), PS (reserved in
        // PML5 and PML4 entries, impossible in PUD and PMD entries that point to tables), the
        // reserved bits, NX for a fetch, and the window's high address bits. The leaf needs the
        // same present, accessed and permission bits, D for a write, no reserved bit, no NX for
        // a fetch and no PFN bits below a huge page's alignment.
        long need = Pte.PRESENT | Pte.ACCESSED | (access & (PageFaultCode.WRITE | PageFaultCode.USER));
        long forbid = physReserved | ((long) (access & PageFaultCode.FETCH) << (63 - 4));
        long leafNeed = need | ((access & PageFaultCode.WRITE) != 0 ? Pte.DIRTY : 0);
        long lowPfnBits = ord == PTE_ORD ? 0 : ord == PMD_ORD ? AccessRights.LOW_2M_PFN_BITS : AccessRights.LOW_1G_PFN_BITS;
        if (((diff & (windowHighMask | need | forbid | Pte.PSE)) | ((e ^ leafNeed) & (leafNeed | forbid | lowPfnBits))) != 0) {
            return false;
        }
        out.succeeded(startOrd, ord, va);
        return true;
    }

    /**
     * Caches the first page-table window in fields. Windows are only ever added and the first
     * never changes once claimed, so the fast walk needs no check that its copy is current;
     * the full walk calls this with the memory's current list, and it acts only on a new one.
     */
    final void seeWindows(PageTableWindow[] windows) {
        if (windows == seenWindows) {
            return;
        }
        seenWindows = windows;
        if (windows.length > 0) {
            long bytes = windows[0].frames() << 12;
            if (Long.bitCount(bytes) != 1 || ((windows[0].base() << 12) & (bytes - 1)) != 0) {
                throw new IllegalStateException("page-table window at PFN 0x" + Long.toHexString(windows[0].base()) + " of "
                        + windows[0].frames() + " frames is not a naturally aligned power of two, as the fast walk needs");
            }
            windowMemory = windows[0].memory();
            windowBase = windows[0].base() << 12;
            windowOffsetMask = (bytes - 1) & Pte.PFN_MASK;
            windowHighMask = ~(bytes - 1) & Pte.PFN_MASK;
        }
    }
}
