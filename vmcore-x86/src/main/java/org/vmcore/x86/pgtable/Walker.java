package org.vmcore.x86.pgtable;

import java.lang.foreign.MemorySegment;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.internal.DirectMap;
import org.vmcore.x86.internal.PageTableFrames;
import org.vmcore.x86.internal.PageTableWindow;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.internal.TableMemory;
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
 * <p>The permission and reserved-bit rules are {@link AccessRights}'; the common case, every
 * table in the node's page-table window and every bit already as the access needs it, takes the
 * short path of {@link WindowWalk}, and anything else the full walk here.
 *
 * <p>Supervisor accesses follow SMEP/SMAP off. A walk allocates nothing. A walker belongs to one
 * CPU and is used by one thread at a time.
 */
public final class Walker extends WindowWalk {
    private static final int LEVEL_COUNT = Level.values().length;
    private static final int PTE_ORD = Level.PTE.ordinal();
    private static final int PUD_ORD = Level.PUD.ordinal();

    private final PageTableFrames frames;
    private final DirectMap contents;
    private final long frameCount;
    private final int maxPhysAddrBits;
    private final AccessRights rights;
    private int pkru;
    // Host pages of the tables used last at each level: a frame's page never changes once it
    // exists (DirectMap), so this lookup cache needs no invalidation. It is not a model of
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
        super(physReserved(maxPhysAddrBits));
        if (maxPhysAddrBits < 36 || maxPhysAddrBits > PhysicalMemory.MAX_PHYS_BITS) {
            throw new InvalidArgumentException("maxPhysAddrBits", maxPhysAddrBits, "must be between 36 and 52");
        }
        if (memory.frameCount() > (1L << (maxPhysAddrBits - 12))) {
            throw new InvalidArgumentException("maxPhysAddrBits", maxPhysAddrBits,
                    "must address all " + (memory.frameCount() << 12) + " bytes of memory");
        }
        this.frames = SharedSecrets.pageTableFrames(memory);
        this.contents = SharedSecrets.directMap(memory);
        this.frameCount = memory.frameCount();
        this.maxPhysAddrBits = maxPhysAddrBits;
        this.rights = new AccessRights(physReserved(maxPhysAddrBits));
    }

    /** The PFN bits at and above MAXPHYADDR: reserved in every entry. */
    private static long physReserved(int maxPhysAddrBits) {
        return ((1L << 52) - 1) & ~((1L << maxPhysAddrBits) - 1);
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
        PageTableWindow[] windows = frames.windows();
        seeWindows(windows);
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
                if (rights.reserved(e, ord, leaf) != 0) {
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
                int denied = AccessRights.permissionFault(access, all & Pte.RW, all & Pte.USER, any & Pte.NX, e, pkru);
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
                out.markSet(ord, (e & Pte.ACCESSED) == 0, (want & ~e & Pte.DIRTY) != 0);
            }
        }
        return true;
    }
}
