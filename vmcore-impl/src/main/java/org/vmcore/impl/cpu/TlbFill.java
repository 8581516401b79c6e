package org.vmcore.impl.cpu;

import org.vmcore.api.PagingMode;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.PageFaultCode;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.WalkResult;
import org.vmcore.x86.pgtable.Walker;
import org.vmcore.x86.tlb.Tlb;

/**
 * The TLB fill of one CPU on a miss: the hardware walk (from a paging-structure cache entry
 * when one covers the address), then the leaf and the upper entries the walk used go into the
 * TLB and its paging-structure caches with the permissions accumulated down to them. Runs on
 * the CPU's thread inside the handshake, so its counters are plain fields.
 */
final class TlbFill {
    private static final Level[] LEVELS = Level.values();

    private final Tlb tlb;
    private final Walker walker;
    private final WalkResult out = new WalkResult();
    private int faultCode;
    private final long[] missesBySize = new long[3];
    private long walks;
    private long pscHits;

    TlbFill(Tlb tlb, Walker walker) {
        this.tlb = tlb;
        this.walker = walker;
    }

    /**
     * Walks the tables for a user access to {@code va} under {@code pcid}, from the deepest
     * paging-structure cache entry that covers it, and caches the leaf and the upper entries the
     * walk used. Returns the physical address, or -1 with {@link #faultCode} set.
     */
    long walk(int pcid, long cr3, PagingMode mode, long va, boolean write) {
        int access = PageFaultCode.USER | (write ? PageFaultCode.WRITE : 0);
        int psc = mode == PagingMode.FOUR_LEVEL || mode == PagingMode.FIVE_LEVEL ? tlb.pscDeepest(pcid, va) : -1;
        boolean ok;
        int startOrd;
        long bits;
        walks++;
        if (psc >= 0) {
            long pv = tlb.pscLookup(psc, pcid, va);
            Level start = Tlb.pscTableLevel(psc);
            ok = walker.walkFrom(mode, va, access, out, start, (pv & Pte.PFN_MASK) >>> 12, pv);
            startOrd = start.ordinal();
            bits = pv;
            pscHits++;
        } else {
            ok = walker.walk(cr3, mode, va, access, out);
            startOrd = Level.root(mode).ordinal();
            bits = Pte.RW | Pte.USER;
        }
        if (!ok) {
            faultCode = out.faultCode();
            return -1;
        }
        int leafOrd = out.level().ordinal();
        missesBySize[out.pageSize().ordinal()]++;
        tlb.insert(pcid, va, out.pageSize(), (out.pagePfn() << 12) | Pte.PRESENT | Pte.ACCESSED | out.effectiveBits()
                | (out.entry() & Pte.DIRTY));
        // Cache the upper entries this walk used, with the permissions accumulated down to them.
        long rw = bits & Pte.RW;
        long us = bits & Pte.USER;
        long nx = bits & Pte.NX;
        for (int ord = startOrd; ord < leafOrd; ord++) {
            long e = out.entryAt(LEVELS[ord]);
            rw &= e;
            us &= e;
            nx |= e & Pte.NX;
            int cache = ord == Level.PML4.ordinal() ? Tlb.PML4E : ord == Level.PUD.ordinal() ? Tlb.PDPTE
                    : ord == Level.PMD.ordinal() ? Tlb.PDE : -1;
            if (cache >= 0) {
                tlb.pscInsert(cache, pcid, va, Tlb.pscValue(Pte.pfn(e), rw | us | nx));
            }
        }
        return out.physicalAddress();
    }

    /** The fault code of the last walk that failed. */
    int faultCode() {
        return faultCode;
    }

    /** Misses filled with a page of {@code PageSize} ordinal {@code size}. */
    long misses(int size) {
        return missesBySize[size];
    }

    long walks() {
        return walks;
    }

    long pscHits() {
        return pscHits;
    }
}
