package org.vmcore.x86.pgtable;

import java.lang.foreign.MemorySegment;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PageSize;
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
    private static final Level[] LEVELS = Level.values();
    private static final int LEVEL_COUNT = LEVELS.length;
    private static final int PTE_ORD = Level.PTE.ordinal();
    private static final int PMD_ORD = Level.PMD.ordinal();
    private static final int PUD_ORD = Level.PUD.ordinal();
    private static final long LOW_2M_PFN_BITS = ((1L << 21) - 1) & ~((1L << 13) - 1);
    private static final long LOW_1G_PFN_BITS = ((1L << 30) - 1) & ~((1L << 13) - 1);
    // By level ordinal (PML5, PML4, PUD, PMD, PTE): what a leaf there maps.
    private static final long[] LEAF_PFN_MASK = {0, 0, Pte.pfnMask(PageSize.SIZE_1G), Pte.pfnMask(PageSize.SIZE_2M),
        Pte.pfnMask(PageSize.SIZE_4K)};
    private static final long[] LEAF_OFFSET_MASK = {0, 0, (1L << 30) - 1, (1L << 21) - 1, (1L << 12) - 1};

    private final PhysicalMemory memory;
    private final FrameContents contents;
    private final long frameCount;
    private final int maxPhysAddrBits;
    private final long physReserved;
    // Reserved bits by level ordinal: for an entry that points to a table, and for a leaf.
    private final long[] tableReserved = new long[LEVEL_COUNT];
    private final long[] leafReserved = new long[LEVEL_COUNT];
    private int pkru;
    // The first page-table window, as seen at the last change of the memory's window list.
    private PageTableWindow[] seenWindows;
    private MemorySegment windowMemory;
    private long windowBase;
    private long windowFrames;
    // Outputs of fastLeaf besides the leaf itself.
    private int fastOrd;
    private long fastAll;
    private long fastAny;
    // Host pages of the tables used last at each level: a frame's page never changes once it
    // exists (FrameContents), so this lookup cache needs no invalidation. It is not a model of
    // the CPU's paging-structure caches; the walk still reads every entry from memory.
    private final long[] cachedTablePfn = {-1, -1, -1, -1, -1};
    private final MemorySegment[] cachedTable = new MemorySegment[5];

    /** A walker with MAXPHYADDR of 46 bits, a common value for server cores. */
    public Walker(PhysicalMemory memory) {
        this(memory, 46);
    }

    /**
     * A walker whose CPU implements {@code maxPhysAddrBits} physical-address bits.
     *
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

    /** MAXPHYADDR of this walker's CPU. */
    public int maxPhysAddrBits() {
        return maxPhysAddrBits;
    }

    /** The PKRU register: two bits per key, access-disable (2k) and write-disable (2k+1). */
    public int pkru() {
        return pkru;
    }

    /** Loads PKRU (WRPKRU). */
    public void setPkru(int pkru) {
        this.pkru = pkru;
    }

    /** Walks {@code table} for an access; see {@link #walk(long, PagingMode, long, int, WalkResult)}. */
    public boolean walk(PageTable table, long va, int access, WalkResult out) {
        return walk(table.cr3(), table.mode(), va, access, out);
    }

    /**
     * Translates {@code va} for an access described by {@link PageFaultCode#WRITE},
     * {@link PageFaultCode#USER} and {@link PageFaultCode#FETCH} bits in {@code access}.
     *
     * @return true with the translation in {@code out}, or false with {@code out.faultCode} set
     */
    public boolean walk(long cr3, PagingMode mode, long va, int access, WalkResult out) {
        if ((access & ~PageFaultCode.ACCESS_BITS) != 0) {
            throw new InvalidArgumentException("access", access, "must combine only WRITE (2), USER (4) and FETCH (16)");
        }
        return fastWalk(cr3, mode, va, access, out) || walk(cr3, mode, va, access, out, true, -1, 0);
    }

    /**
     * The common hardware walk, written for speed rather than generality: from the root,
     * every table in the first page-table window, ending in a present leaf that allows the access
     * and already has A (and D for a write) set everywhere, with no protection keys in play.
     * Anything else returns false and the full walk decides; nothing it wrote matters then.
     */
    private boolean fastWalk(long cr3, PagingMode mode, long va, int access, WalkResult out) {
        PageTableWindow[] windows = memory.tableWindows();
        if (windows != seenWindows) {
            seeWindows(windows);
        }
        if (windowFrames == 0 || pkru != 0 || !mode.isCanonical(va)) {
            return false;
        }
        boolean five = mode == PagingMode.FIVE_LEVEL;
        long e = fastLeaf(cr3 >>> 12, five, va, out);
        if (e == 0) { // fastAll and fastAny are stale then
            return false;
        }
        long all = fastAll;
        long need = Pte.ACCESSED | ((access & PageFaultCode.USER) != 0 ? Pte.USER : 0)
                | ((access & PageFaultCode.WRITE) != 0 ? Pte.RW | Pte.DIRTY : 0);
        if ((all & need) != need || ((access & PageFaultCode.FETCH) != 0 && (fastAny & Pte.NX) != 0)) {
            return false;
        }
        succeed(out, five ? 0 : 1, fastOrd, e, all, fastAny, va);
        return true;
    }

    /** Caches the first page-table window (usually the only one) in fields, read once per change. */
    private void seeWindows(PageTableWindow[] windows) {
        seenWindows = windows;
        windowMemory = windows.length == 0 ? null : windows[0].memory();
        windowBase = windows.length == 0 ? 0 : windows[0].base();
        windowFrames = windows.length == 0 ? 0 : windows[0].frames();
    }

    /**
     * The table reads of {@link #fastWalk}, written out level by level so that shifts and
     * reserved masks are constants: the leaf entry, with its level in {@link #fastOrd} and the
     * AND and OR of all entries (leaf included; D counts only in the leaf) in {@link #fastAll}
     * and {@link #fastAny}; 0 when a table lies outside the window or an entry is not present
     * or has a reserved bit set.
     */
    private long fastLeaf(long tablePfn, boolean five, long va, WalkResult out) {
        long all = -1L;
        long any = 0;
        long e;
        if (five) {
            e = fastEntry(out, 0, tablePfn, va);
            if ((e & (Pte.PRESENT | tableReserved[0])) != Pte.PRESENT) {
                return 0;
            }
            all &= e;
            any |= e;
            tablePfn = (e & Pte.PFN_MASK) >>> 12;
        }
        e = fastEntry(out, 1, tablePfn, va);
        if ((e & (Pte.PRESENT | tableReserved[1])) != Pte.PRESENT) {
            return 0;
        }
        all &= e;
        any |= e;
        int ord = PUD_ORD;
        e = fastEntry(out, PUD_ORD, (e & Pte.PFN_MASK) >>> 12, va);
        if ((e & Pte.PSE) == 0) {
            if ((e & (Pte.PRESENT | tableReserved[PUD_ORD])) != Pte.PRESENT) {
                return 0;
            }
            all &= e;
            any |= e;
            ord = PMD_ORD;
            e = fastEntry(out, PMD_ORD, (e & Pte.PFN_MASK) >>> 12, va);
            if ((e & Pte.PSE) == 0) {
                if ((e & (Pte.PRESENT | tableReserved[PMD_ORD])) != Pte.PRESENT) {
                    return 0;
                }
                all &= e;
                any |= e;
                ord = PTE_ORD;
                e = fastEntry(out, PTE_ORD, (e & Pte.PFN_MASK) >>> 12, va);
            }
        }
        if ((e & (Pte.PRESENT | leafReserved[ord])) != Pte.PRESENT) {
            return 0;
        }
        fastOrd = ord;
        fastAll = (all | Pte.DIRTY) & e;
        fastAny = any | e;
        return e;
    }

    /** Entry {@code va} selects at level {@code ord} of the table at {@code tablePfn}, recorded in {@code out}; 0 outside the window. */
    private long fastEntry(WalkResult out, int ord, long tablePfn, long va) {
        long rel = tablePfn - windowBase;
        long e = rel >= 0 && rel < windowFrames
                ? TableMemory.readAt(windowMemory, (rel << 12) + (((va >>> (48 - 9 * ord)) & (Level.ENTRIES - 1)) << 3))
                : 0;
        out.tablePfn[ord] = tablePfn;
        out.entries[ord] = e;
        return e;
    }

    /** Fills {@code out} for a walk that ended at the leaf {@code e} at level {@code ord}. */
    private static void succeed(WalkResult out, int rootOrd, int ord, long e, long all, long any, long va) {
        if (rootOrd > 0) {
            out.clearLevels(0, rootOrd);
        }
        if (ord < PTE_ORD) {
            out.clearLevels(ord + 1, LEVEL_COUNT);
        }
        long pagePfn = (e & LEAF_PFN_MASK[ord]) >>> 12;
        out.ok = true;
        out.faultCode = 0;
        out.entry = e;
        out.levelOrd = ord;
        out.entrySlot = (out.tablePfn[ord] << 12) + ((va >>> (48 - 9 * ord)) & (Level.ENTRIES - 1)) * 8;
        out.effectiveBits = (all & (Pte.RW | Pte.USER)) | (any & Pte.NX);
        out.pagePfn = pagePfn;
        out.physicalAddress = (pagePfn << 12) | (va & LEAF_OFFSET_MASK[ord]);
    }

    /**
     * A hardware walk that starts below the root, as a CPU does when a paging-structure cache
     * holds the entry above {@code startLevel}: {@code tablePfn} is the table at
     * {@code startLevel} and {@code upperBits} the RW, USER and NX bits the cached upper
     * entries contribute (RW and USER as the AND, NX as the OR over those levels). Levels above
     * {@code startLevel} are neither read nor marked accessed.
     */
    public boolean walkFrom(PagingMode mode, long va, int access, WalkResult out, Level startLevel, long tablePfn,
                            long upperBits) {
        if ((access & ~PageFaultCode.ACCESS_BITS) != 0) {
            throw new InvalidArgumentException("access", access, "must combine only WRITE (2), USER (4) and FETCH (16)");
        }
        if (startLevel.ordinal() < Level.root(mode).ordinal()) {
            throw new InvalidArgumentException("startLevel", startLevel, "must exist in " + mode + " paging");
        }
        return walk(tablePfn << 12, mode, va, access, out, true, startLevel.ordinal(), upperBits);
    }

    /**
     * A software walk (the kernel's follow_page): finds the entry that maps {@code va} without
     * checking permissions and without setting A or D. Returns true when a present leaf maps it;
     * otherwise {@code out.entry} and {@code out.level()} show where the walk stopped.
     */
    public boolean translate(long cr3, PagingMode mode, long va, WalkResult out) {
        return walk(cr3, mode, va, 0, out, false, -1, 0);
    }

    private boolean walk(long cr3, PagingMode mode, long va, int access, WalkResult out, boolean hardware, int startOrd,
                         long upperBits) {
        if (!mode.isCanonical(va)) {
            out.begin();
            out.faultCode = PageFaultCode.GENERAL_PROTECTION | access;
            out.clearLevels(0, LEVEL_COUNT);
            return false;
        }
        int rootOrd = startOrd >= 0 ? startOrd : mode == PagingMode.FIVE_LEVEL ? 0 : 1;
        // What the levels above the start contribute: RW and USER (ANDed down the walk), NX (ORed).
        // ACCESSED joins the AND so one test tells whether any entry still needs its A bit.
        long upperAll = (startOrd >= 0 ? upperBits & (Pte.RW | Pte.USER) : Pte.RW | Pte.USER) | Pte.ACCESSED;
        long upperAny = startOrd >= 0 ? upperBits & Pte.NX : 0;
        long[] tablePfns = out.tablePfn;
        long[] entries = out.entries;
        PageTableWindow[] windows = memory.tableWindows();
        while (true) {
            long tablePfn = cr3 >>> 12;
            long all = upperAll;
            long any = upperAny;
            int ord = rootOrd;
            long e;
            while (true) {
                int index = (int) ((va >>> (48 - 9 * ord)) & (Level.ENTRIES - 1));
                tablePfns[ord] = tablePfn;
                if (tablePfn >= frameCount) { // no memory behind the address: reads as all ones
                    entries[ord] = -1L;
                    return stop(out, rootOrd, ord, index, -1L, access | PageFaultCode.PROTECTION | PageFaultCode.RESERVED);
                }
                e = readEntry(windows, ord, tablePfn, index);
                entries[ord] = e;
                if ((e & Pte.PRESENT) == 0) {
                    return stop(out, rootOrd, ord, index, e, access);
                }
                // PS in a PML4E or PML5E is reserved, so only PUD and PMD entries can be large leaves.
                boolean leaf = ord == PTE_ORD || (ord >= PUD_ORD && (e & Pte.PSE) != 0);
                if ((e & (leaf ? leafReserved[ord] : tableReserved[ord])) != 0) {
                    return stop(out, rootOrd, ord, index, e, access | PageFaultCode.PROTECTION | PageFaultCode.RESERVED);
                }
                all &= e;
                any |= e;
                if (leaf) {
                    break;
                }
                tablePfn = (e & Pte.PFN_MASK) >>> 12;
                ord++;
            }
            int leafIndex = (int) ((va >>> (48 - 9 * ord)) & (Level.ENTRIES - 1));
            if (hardware) {
                int denied = permissionFault(access, all & Pte.RW, all & Pte.USER, any & Pte.NX, e);
                if (denied != 0) {
                    return stop(out, rootOrd, ord, leafIndex, e, denied);
                }
                boolean write = (access & PageFaultCode.WRITE) != 0;
                if ((all & Pte.ACCESSED) == 0 || (write && (e & Pte.DIRTY) == 0)) {
                    if (!setAccessedDirty(va, rootOrd, ord, write, out)) {
                        continue; // an entry changed under us: walk again
                    }
                    e = entries[ord];
                }
            }
            succeed(out, rootOrd, ord, e, all, any, va);
            return true;
        }
    }

    /** Records where a failed walk stopped; levels above the root and below the stop are unset. */
    private static boolean stop(WalkResult out, int rootOrd, int ord, int index, long e, int faultCode) {
        long slotTable = out.tablePfn[ord];
        out.begin();
        out.clearLevels(0, rootOrd);
        out.clearLevels(ord + 1, LEVEL_COUNT);
        out.entry = e;
        out.levelOrd = ord;
        out.entrySlot = (slotTable << 12) + ((long) index << 3);
        out.faultCode = faultCode;
        return false;
    }

    /**
     * Reads entry {@code index} of the table at {@code tablePfn}: by arithmetic inside a
     * page-table window, else through the frame's page.
     */
    private long readEntry(PageTableWindow[] windows, int ord, long tablePfn, int index) {
        for (PageTableWindow window : windows) {
            long rel = tablePfn - window.base();
            if (rel >= 0 && rel < window.frames()) {
                return TableMemory.readAt(window.memory(), (rel << 12) + ((long) index << 3));
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
            long e = out.entries[ord];
            long want = ord == leafOrd && write ? Pte.ACCESSED | Pte.DIRTY : Pte.ACCESSED;
            if ((e & want) != want) {
                int index = (int) ((va >>> (48 - 9 * ord)) & (Level.ENTRIES - 1));
                MemorySegment table = tablePage(ord, out.tablePfn[ord]);
                if (table == null || !TableMemory.compareAndSet(table, index, e, e | want)) {
                    return false;
                }
                out.entries[ord] = e | want;
            }
        }
        return true;
    }
}
