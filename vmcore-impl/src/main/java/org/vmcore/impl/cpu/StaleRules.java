package org.vmcore.impl.cpu;

import org.vmcore.api.Access;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.WalkResult;
import org.vmcore.x86.tlb.Tlb;

/**
 * When a cached entry is stale against the tables as they are now: the comparisons the
 * stale-translation detector makes on every use and the invariant checker makes on every cached
 * entry. The tables are read by a software walk ({@code Walker.translate}), which sets no A or D
 * bit. Whether an invalidation is open or a flush owed is the caller's to check.
 */
public final class StaleRules {
    private static final Level[] LEVELS = Level.values();

    private StaleRules() {
    }

    /**
     * Whether the tables, whose effective bits for the address are {@code tableBits} (RW and USER
     * ANDed, NX ORed over the walk; 0 when nothing maps it), refuse a user access of {@code access}.
     */
    public static boolean refuses(long tableBits, Access access) {
        return switch (access) {
            case READ -> (tableBits & Pte.USER) == 0;
            case WRITE -> (tableBits & (Pte.RW | Pte.USER)) != (Pte.RW | Pte.USER);
            case EXECUTE -> (tableBits & (Pte.USER | Pte.NX)) != Pte.USER;
        };
    }

    /**
     * The paging-structure cache value ({@link Tlb#pscValue}) the tables hold now for an entry of
     * cache {@code psc} covering the address of {@code walk}, a software walk from the root just
     * made: the table the entry at that level points to, with the RW, USER and NX bits
     * accumulated down to it; 0 when the walk did not pass through that level to a table below
     * (an entry not present, or a leaf).
     *
     * @param walk a software walk of the address from the root of its tables
     * @param psc  {@link Tlb#PML4E}, {@link Tlb#PDPTE} or {@link Tlb#PDE}
     */
    public static long pscHeld(WalkResult walk, int psc) {
        Level below = Tlb.pscTableLevel(psc);
        long table = walk.tablePfn(below);
        if (table < 0) {
            return 0;
        }
        long all = Pte.RW | Pte.USER;
        long any = 0;
        for (int ord = 0; ord < below.ordinal(); ord++) {
            long e = walk.entryAt(LEVELS[ord]); // 0 above the root: a 4-level walk reads no PML5
            if (walk.tablePfn(LEVELS[ord]) >= 0) {
                all &= e;
                any |= e;
            }
        }
        return Tlb.pscValue(table, (all & (Pte.RW | Pte.USER)) | (any & Pte.NX));
    }

    /**
     * Whether a cached paging-structure value is stale against what the tables hold now
     * ({@link #pscHeld}): they hold none, or point to another table, or allow less than it
     * (RW or USER cleared, NX set). A cache that allows less than the tables is not stale: the
     * CPU faults and walks again, as it does after Linux raises permissions without a flush.
     */
    public static boolean pscStale(long cached, long held) {
        if (held == 0 || (cached & Pte.PFN_MASK) != (held & Pte.PFN_MASK)) {
            return true;
        }
        return (cached & ~held & (Pte.RW | Pte.USER)) != 0 || (held & ~cached & Pte.NX) != 0;
    }

    /** log2 of the bytes an entry of cache {@code psc} covers: 39, 30 or 21. */
    public static int pscShift(int psc) {
        return Tlb.pscTableLevel(psc).shift() + 9;
    }
}
