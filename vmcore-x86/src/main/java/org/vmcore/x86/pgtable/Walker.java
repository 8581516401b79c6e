package org.vmcore.x86.pgtable;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.mem.FrameContents;
import org.vmcore.x86.mem.PageTableWindow;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * The hardware page walker of one CPU: translates a virtual address through the tables at
 * CR3 the way an x86-64 core does.
 *
 * <p>It checks canonicality (#GP otherwise), presence, reserved bits (physical-address bits at
 * and above MAXPHYADDR, PS in PML4/PML5 entries, the low PFN bits of 2 MiB and 1 GiB leaves),
 * user/supervisor and write permission over all levels (CR0.WP is on, as Linux runs), NX
 * (EFER.NXE on), and protection keys against PKRU for user data accesses (CR4.PKE on; PKRU
 * 0 allows everything). After a successful check it sets A in every entry it used and D in
 * the leaf on a write, each with a compare-and-set, restarting the walk if an entry changed
 * underneath, as the hardware's locked updates do. A failed walk sets no bits.
 *
 * <p>Supervisor accesses follow SMEP/SMAP off. A walk allocates nothing. A walker belongs to one
 * CPU and is used by one thread at a time.
 */
public final class Walker {
    private static final int LEVEL_COUNT = Level.values().length;
    private static final int PTE_ORD = Level.PTE.ordinal();
    private static final int PMD_ORD = Level.PMD.ordinal();
    private static final int PUD_ORD = Level.PUD.ordinal();
    private static final long LOW_2M_PFN_BITS = ((1L << 21) - 1) & ~((1L << 13) - 1);
    private static final long LOW_1G_PFN_BITS = ((1L << 30) - 1) & ~((1L << 13) - 1);
    // Index bits of an address shifted to a byte offset in a table: 9 bits times 8 bytes.
    private static final long INDEX_BYTES = (Level.ENTRIES - 1) << 3;
    // Entries are little-endian words at 8-byte aligned offsets; the unaligned layout only spares
    // the fast walk a check its offsets pass by construction.
    private static final ValueLayout.OfLong ENTRY = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    // What the fast walk reads before the memory has a window: one page of zeros for the whole
    // JVM, never freed (4 KiB), so the fast walk needs no null test.
    private static final MemorySegment NO_WINDOW = Arena.global().allocate(PhysicalMemory.FRAME_BYTES);

    private final PhysicalMemory memory;
    private final FrameContents contents;
    private final long frameCount;
    private final int maxPhysAddrBits;
    private final long physReserved;
    // Reserved bits by level ordinal: for an entry that points to a table, and for a leaf.
    private final long[] tableReserved = new long[LEVEL_COUNT];
    private final long[] leafReserved = new long[LEVEL_COUNT];
    private int pkru;
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
    // Host pages of the tables used last at each level: a frame's page never changes once it
    // exists (FrameContents), so this lookup cache needs no invalidation. It is not a model of
    // the CPU's paging-structure caches; the walk still reads every entry from memory.
    private final long[] cachedTablePfn = {-1, -1, -1, -1, -1};
    private final MemorySegment[] cachedTable = new MemorySegment[5];

    /**
     * A walker with MAXPHYADDR of 46 bits, a common value for server cores.
     *
     * @param memory the physical memory the tables are read from
     */
    public Walker(PhysicalMemory memory) {
        this(memory, 46);
    }

    /**
     * A walker whose CPU implements {@code maxPhysAddrBits} physical-address bits.
     *
     * @param memory the physical memory the tables are read from
     * @param maxPhysAddrBits MAXPHYADDR, 36 to 52; PFN bits above it are reserved and fault with RSVD
     * @throws InvalidArgumentException if the width is outside 36..52 or too small for the memory
     */
    public Walker(PhysicalMemory memory, int maxPhysAddrBits) {
        if (maxPhysAddrBits < 36 || maxPhysAddrBits > PhysicalMemory.MAX_PHYS_BITS) {
            throw new InvalidArgumentException("maxPhysAddrBits", maxPhysAddrBits, "must be between 36 and 52");
        }
        if (memory.frameCount() > (1L << (maxPhysAddrBits - 12))) {
            throw new InvalidArgumentException("maxPhysAddrBits", maxPhysAddrBits,
                    "must address all " + (memory.frameCount() << 12) + " bytes of memory");
        }
        this.memory = memory;
        this.contents = memory.contents();
        this.frameCount = memory.frameCount();
        this.maxPhysAddrBits = maxPhysAddrBits;
        this.physReserved = ((1L << 52) - 1) & ~((1L << maxPhysAddrBits) - 1);
        for (int ord = 0; ord < LEVEL_COUNT; ord++) {
            tableReserved[ord] = reservedBits(ord, false);
            leafReserved[ord] = reservedBits(ord, true);
        }
    }

    /**
     * MAXPHYADDR of this walker's CPU.
     *
     * @return the width in bits, 36 to 52
     */
    public int maxPhysAddrBits() {
        return maxPhysAddrBits;
    }

    /**
     * The PKRU register: two bits per key, access-disable (2k) and write-disable (2k+1).
     *
     * @return the register's 32 bits
     */
    public int pkru() {
        return pkru;
    }

    /**
     * Loads PKRU (WRPKRU).
     *
     * @param pkru the new register value, two bits per protection key
     */
    public void setPkru(int pkru) {
        this.pkru = pkru;
    }

    /**
     * Walks {@code table} for an access; see {@link #walk(long, PagingMode, long, int, WalkResult)}.
     *
     * @param table the page table whose CR3 and paging mode are used
     * @param va the virtual address
     * @param access the access bits, within {@link PageFaultCode#ACCESS_BITS}
     * @param out where the translation or fault is written
     * @return true with the translation in {@code out}, or false with {@code out.faultCode()} set
     */
    public boolean walk(PageTable table, long va, int access, WalkResult out) {
        return walk(table.cr3(), table.mode(), va, access, out);
    }

    /**
     * Translates {@code va} for an access described by {@link PageFaultCode#WRITE},
     * {@link PageFaultCode#USER} and {@link PageFaultCode#FETCH} bits in {@code access}.
     *
     * @param cr3 the physical address of the root table
     * @param mode 4- or 5-level paging
     * @param va the virtual address
     * @param access the access bits, within {@link PageFaultCode#ACCESS_BITS}
     * @param out where the translation or fault is written
     * @return true with the translation in {@code out}, or false with {@code out.faultCode()} set
     */
    public boolean walk(long cr3, PagingMode mode, long va, int access, WalkResult out) {
        checkAccess(access);
        return (pkru == 0 && mode.isCanonical(va)
                && fastWalk(Level.root(mode).ordinal(), cr3 & Pte.PFN_MASK, WalkResult.FROM_ROOT, va, access, out))
                || walk(cr3, mode, va, access, out, true, -1, 0);
    }

    /**
     * A hardware walk that starts below the root, as a CPU does when a paging-structure cache
     * holds the entry above {@code startLevel}: {@code tablePfn} is the table at
     * {@code startLevel} and {@code upperBits} the RW, USER and NX bits the cached upper
     * entries contribute (RW and USER as the AND, NX as the OR over those levels; other bits are
     * ignored). Levels above {@code startLevel} are neither read nor marked accessed.
     *
     * @param mode 4- or 5-level paging
     * @param va the virtual address, canonical
     * @param access the access bits, within {@link PageFaultCode#ACCESS_BITS}
     * @param out where the translation or fault is written
     * @param startLevel the level of the table the walk starts in
     * @param tablePfn the page frame number of that table
     * @param upperBits the effective RW, USER and NX bits of the levels above
     * @return true with the translation in {@code out}, or false with {@code out.faultCode()} set
     * @throws InvalidArgumentException if {@code startLevel} is above the root of {@code mode},
     *         {@code tablePfn} is not a 40-bit page frame number, or {@code access} has other bits
     */
    public boolean walkFrom(PagingMode mode, long va, int access, WalkResult out, Level startLevel, long tablePfn,
                            long upperBits) {
        checkAccess(access);
        if (startLevel.ordinal() < Level.root(mode).ordinal()) {
            throw new InvalidArgumentException("startLevel", startLevel, "must exist in " + mode + " paging");
        }
        if (tablePfn < 0 || tablePfn > Pte.PFN_MASK >>> 12) {
            throw new InvalidArgumentException("tablePfn", tablePfn, "must be a page frame number of 0 to 2^40 - 1");
        }
        // The fast walk checks only the levels it reads: the upper ones must allow the access.
        long perms = access & (PageFaultCode.WRITE | PageFaultCode.USER);
        boolean upperAllows = (upperBits & perms) == perms
                && ((access & PageFaultCode.FETCH) == 0 || (upperBits & Pte.NX) == 0);
        if (upperAllows && pkru == 0 && mode.isCanonical(va) && tablePfn < frameCount
                && fastWalk(startLevel.ordinal(), tablePfn << 12, upperBits, va, access, out)) {
            return true;
        }
        return walk(tablePfn << 12, mode, va, access, out, true, startLevel.ordinal(), upperBits);
    }

    private static void checkAccess(int access) {
        if ((access & ~PageFaultCode.ACCESS_BITS) != 0) {
            throw new InvalidArgumentException("access", access, "must combine only WRITE (2), USER (4) and FETCH (16)");
        }
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
    boolean fastWalk(int startOrd, long table, long upperBits, long va, int access, WalkResult out) { // package-private for FastWalkTest
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
        long lowPfnBits = ord == PTE_ORD ? 0 : ord == PMD_ORD ? LOW_2M_PFN_BITS : LOW_1G_PFN_BITS;
        if (((diff & (windowHighMask | need | forbid | Pte.PSE)) | ((e ^ leafNeed) & (leafNeed | forbid | lowPfnBits))) != 0) {
            return false;
        }
        out.succeeded(startOrd, ord, va);
        return true;
    }

    /**
     * Caches the first page-table window in fields. Windows are only ever added and the first
     * never changes once claimed, so the fast walk needs no check that its copy is current;
     * the full walk calls this when the memory has claimed windows since the last call.
     */
    private void seeWindows(PageTableWindow[] windows) {
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

    /**
     * A software walk (the kernel's follow_page): finds the entry that maps {@code va} without
     * checking permissions and without setting A or D. Returns true when a present leaf maps it;
     * otherwise {@code out.entry()} and {@code out.level()} show where the walk stopped.
     *
     * @param cr3 the physical address of the root table
     * @param mode 4- or 5-level paging
     * @param va the virtual address
     * @param out where the entry and its level are written
     * @return true when a present leaf maps {@code va}
     */
    public boolean translate(long cr3, PagingMode mode, long va, WalkResult out) {
        return walk(cr3, mode, va, 0, out, false, -1, 0);
    }

    private boolean walk(long cr3, PagingMode mode, long va, int access, WalkResult out, boolean hardware, int startOrd,
                         long upperBits) {
        if (!mode.isCanonical(va)) {
            out.failed(LEVEL_COUNT, -1, PageFaultCode.GENERAL_PROTECTION | access, va);
            return false;
        }
        int rootOrd = startOrd >= 0 ? startOrd : Level.root(mode).ordinal();
        // What the levels above the start contribute: RW and USER (ANDed down the walk), NX (ORed).
        // ACCESSED joins the AND so one test tells whether any entry still needs its A bit.
        long upper = startOrd >= 0 ? upperBits : WalkResult.FROM_ROOT;
        long upperAll = (upper & (Pte.RW | Pte.USER)) | Pte.ACCESSED;
        long upperAny = upper & Pte.NX;
        PageTableWindow[] windows = memory.tableWindows();
        if (windows != seenWindows) {
            seeWindows(windows);
        }
        out.begin(cr3, upper); // begin keeps the PFN bits
        while (true) {
            long tablePfn = cr3 >>> 12;
            long all = upperAll;
            long any = upperAny;
            int ord = rootOrd;
            long e;
            while (true) {
                int index = (int) ((va >>> Level.shift(ord)) & (Level.ENTRIES - 1));
                if (tablePfn >= frameCount) { // no memory behind the address: reads as all ones
                    out.record(ord, -1L);
                    return stop(out, rootOrd, ord, access | PageFaultCode.PROTECTION | PageFaultCode.RESERVED, va);
                }
                e = readEntry(windows, ord, tablePfn, index);
                out.record(ord, e);
                if ((e & Pte.PRESENT) == 0) {
                    return stop(out, rootOrd, ord, access, va);
                }
                // PS in a PML4E or PML5E is reserved, so only PUD and PMD entries can be large leaves.
                boolean leaf = ord == PTE_ORD || (ord >= PUD_ORD && (e & Pte.PSE) != 0);
                if ((e & (leaf ? leafReserved[ord] : tableReserved[ord])) != 0) {
                    return stop(out, rootOrd, ord, access | PageFaultCode.PROTECTION | PageFaultCode.RESERVED, va);
                }
                all &= e;
                any |= e;
                if (leaf) {
                    break;
                }
                tablePfn = (e & Pte.PFN_MASK) >>> 12;
                ord++;
            }
            if (hardware) {
                int denied = permissionFault(access, all & Pte.RW, all & Pte.USER, any & Pte.NX, e);
                if (denied != 0) {
                    return stop(out, rootOrd, ord, denied, va);
                }
                boolean write = (access & PageFaultCode.WRITE) != 0;
                if ((all & Pte.ACCESSED) == 0 || (write && (e & Pte.DIRTY) == 0)) {
                    if (!setAccessedDirty(va, rootOrd, ord, write, out)) {
                        continue; // an entry changed under us: walk again
                    }
                }
            }
            out.succeeded(rootOrd, ord, va);
            return true;
        }
    }

    /** Records where a failed walk stopped. */
    private static boolean stop(WalkResult out, int rootOrd, int ord, int faultCode, long va) {
        out.failed(rootOrd, ord, faultCode, va);
        return false;
    }

    /**
     * Reads entry {@code index} of the table at {@code tablePfn}: by arithmetic inside a
     * page-table window, else through the frame's page.
     */
    private long readEntry(PageTableWindow[] windows, int ord, long tablePfn, int index) {
        for (PageTableWindow window : windows) {
            if (window.contains(tablePfn)) {
                return TableMemory.readAt(window.memory(), ((tablePfn - window.base()) << 12) + ((long) index << 3));
            }
        }
        MemorySegment table = tablePage(ord, tablePfn);
        return table == null ? 0 : TableMemory.readOpaque(table, index);
    }

    private MemorySegment tablePage(int ord, long tablePfn) {
        if (cachedTablePfn[ord] == tablePfn) {
            return cachedTable[ord];
        }
        MemorySegment page = contents.pageOrNull(tablePfn);
        if (page != null) {
            cachedTablePfn[ord] = tablePfn;
            cachedTable[ord] = page;
        }
        return page;
    }

    private long reservedBits(int ord, boolean large) {
        if (ord < PUD_ORD) {
            return physReserved | Pte.PSE;
        }
        if (large && ord != PTE_ORD) {
            return physReserved | (ord == PUD_ORD ? LOW_1G_PFN_BITS : LOW_2M_PFN_BITS);
        }
        return physReserved;
    }

    private int permissionFault(int access, long rwAll, long usAll, long nxAny, long leaf) {
        boolean user = (access & PageFaultCode.USER) != 0;
        boolean write = (access & PageFaultCode.WRITE) != 0;
        boolean fetch = (access & PageFaultCode.FETCH) != 0;
        int fault = access | PageFaultCode.PROTECTION;
        if (user && usAll == 0) {
            return fault;
        }
        if (write && rwAll == 0) { // CR0.WP=1: supervisor writes obey RW too
            return fault;
        }
        if (fetch && (nxAny & Pte.NX) != 0) {
            return fault;
        }
        if (user && !fetch && pkru != 0) {
            int key = Pte.pkey(leaf);
            boolean accessDisabled = (pkru >>> (2 * key) & 1) != 0;
            boolean writeDisabled = (pkru >>> (2 * key + 1) & 1) != 0;
            if (accessDisabled || (write && writeDisabled)) {
                return fault | PageFaultCode.PKEY;
            }
        }
        return 0;
    }

    private boolean setAccessedDirty(long va, int rootOrd, int leafOrd, boolean write, WalkResult out) {
        for (int ord = rootOrd; ord <= leafOrd; ord++) {
            long e = out.recordedEntry(ord);
            long want = ord == leafOrd && write ? Pte.ACCESSED | Pte.DIRTY : Pte.ACCESSED;
            if ((e & want) != want) {
                int index = (int) ((va >>> Level.shift(ord)) & (Level.ENTRIES - 1));
                MemorySegment table = tablePage(ord, out.recordedTable(rootOrd, ord) >>> 12);
                if (table == null || !TableMemory.compareAndSet(table, index, e, e | want)) {
                    return false;
                }
                out.record(ord, e | want);
            }
        }
        return true;
    }
}
