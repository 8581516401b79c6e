package org.vmcore.impl.cpu;

import org.vmcore.api.Access;
import org.vmcore.api.PageTableLevel;
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
 * the CPU's thread inside the handshake, so its counters are plain fields. A walk that filled
 * the TLB counts as a miss, one that ended in a page fault as a fault.
 */
final class TlbFill {
    private static final Level[] LEVELS = Level.values();

    private final Tlb tlb;
    private final Walker walker;
    private final WalkResult out = new WalkResult();
    private int faultCode;
    private final long[] missesBySize = new long[3];
    private long faults;
    private long pscHits;
    private int lastStart; // the level ordinal the last walk started from
    private int lastPsc = -1; // the paging-structure cache the last walk started from, or -1
    private long lastPscValue; // and the entry it started from

    TlbFill(Tlb tlb, Walker walker) {
        this.tlb = tlb;
        this.walker = walker;
    }

    /**
     * Walks the tables for a user access to {@code va} under {@code pcid}, from the deepest
     * paging-structure cache entry that covers it, and caches the leaf and the upper entries the
     * walk used. Returns the physical address, or -1 with {@link #faultCode} set.
     */
    long walk(int pcid, long cr3, PagingMode mode, long va, Access kind) {
        int access = PageFaultCode.USER | switch (kind) {
            case READ -> 0;
            case WRITE -> PageFaultCode.WRITE;
            case EXECUTE -> PageFaultCode.FETCH;
        };
        int psc = mode == PagingMode.FOUR_LEVEL || mode == PagingMode.FIVE_LEVEL ? tlb.pscDeepest(pcid, va) : -1;
        boolean ok;
        int startOrd;
        long bits;
        if (psc >= 0) {
            long pv = tlb.pscLookup(psc, pcid, va);
            Level start = Tlb.pscTableLevel(psc);
            ok = walker.walkFrom(mode, va, access, out, start, (pv & Pte.PFN_MASK) >>> 12, pv);
            startOrd = start.ordinal();
            bits = pv;
            pscHits++;
            lastPscValue = pv;
        } else {
            ok = walker.walk(cr3, mode, va, access, out);
            startOrd = Level.root(mode).ordinal();
            bits = Pte.RW | Pte.USER;
        }
        lastPsc = psc;
        lastStart = startOrd;
        if (!ok) {
            faultCode = out.faultCode();
            if ((faultCode & PageFaultCode.GENERAL_PROTECTION) == 0) {
                faults++; // a non-canonical address raises #GP before any walk: not a page fault
            }
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

    /**
     * Reports the last walk to an instrumented access: its start, the entry it read at each
     * level (physical address, and whether the walk set its A or D bit), and its leaf, into
     * {@code log} (if not null), and their cycles to {@code meter}'s cost model (if any).
     */
    void report(long va, PagingMode mode, OutcomeLog log, CycleMeter meter) {
        boolean costed = meter.model() != null;
        Level last = out.level();
        if (last == null) {
            return; // non-canonical (#GP): no walk was made
        }
        if (log != null) {
            log.walkStarted(apiLevel(LEVELS[lastStart], mode));
        }
        for (int ord = lastStart; ord <= last.ordinal(); ord++) {
            Level level = LEVELS[ord];
            long address = (out.tablePfn(level) << 12) | ((long) level.index(va) << 3);
            PageTableLevel named = apiLevel(level, mode);
            if (log != null) {
                log.reference(address, named, (out.setAccessed(level) ? 1 : 0) | (out.setDirty(level) ? 2 : 0));
            }
            if (costed) {
                meter.walkReference(named, address);
            }
        }
        if (log != null && out.ok()) {
            log.walked(va, out.pageSize(), out.physicalAddress());
        }
    }

    /** The kernel's name of an x86 level: PML4 is the PGD with 4-level paging and the P4D with 5-level. */
    static PageTableLevel apiLevel(Level level, PagingMode mode) {
        return switch (level) {
            case PTE -> PageTableLevel.PTE;
            case PMD -> PageTableLevel.PMD;
            case PUD -> PageTableLevel.PUD;
            case PML4 -> mode == PagingMode.FIVE_LEVEL ? PageTableLevel.P4D : PageTableLevel.PGD;
            case PML5 -> PageTableLevel.PGD;
        };
    }

    /** The paging-structure cache ({@link Tlb#PML4E}, PDPTE, PDE) the last walk started from, or -1 for the root. */
    int lastPsc() {
        return lastPsc;
    }

    /** The cached entry the last walk started from, when {@link #lastPsc} is not -1. */
    long lastPscValue() {
        return lastPscValue;
    }

    /** The head frame the last walk translated to, or -1 when it faulted. */
    long lastPagePfn() {
        return out.ok() ? out.pagePfn() : -1;
    }

    /** The fault code of the last walk that failed. */
    int faultCode() {
        return faultCode;
    }

    /** Misses filled with a page of {@code PageSize} ordinal {@code size}. */
    long misses(int size) {
        return missesBySize[size];
    }

    /** Walks that filled the TLB. */
    long misses() {
        return missesBySize[0] + missesBySize[1] + missesBySize[2];
    }

    /** Walks that ended in a page fault. */
    long faults() {
        return faults;
    }

    long pscHits() {
        return pscHits;
    }
}
