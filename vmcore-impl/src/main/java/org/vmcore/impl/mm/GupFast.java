package org.vmcore.impl.mm;

import java.util.function.LongFunction;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PageReference;
import org.vmcore.api.PageSize;
import org.vmcore.api.RacePoint;
import org.vmcore.impl.base.LocklessWalkers;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.OperationHook;
import org.vmcore.impl.base.RaceHooks;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * GUP-fast for one page (gup_fast_pgd_range and below): a walk of the page tables that takes
 * no lock, between {@link LocklessWalkers#enter} and {@link LocklessWalkers#exit} as Linux walks
 * with interrupts off. It reads each entry once and goes down through the table it points to;
 * at the leaf it takes a reference unless the page is free (try_grab_folio), then reads the leaf
 * again through the same table and gives the reference back if the entry changed meanwhile.
 * What it never does is check that the table it is in still belongs to this address space: that
 * is the barrier's job.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
final class GupFast {
    private final SimAddressSpace mm;
    private final LocklessWalkers walkers;
    private final RaceHooks races;
    private final LongFunction<PageReference> tryGetPage;
    private final OperationHook hook;

    GupFast(MmContext ctx, SimAddressSpace mm) {
        this.mm = mm;
        this.walkers = ctx.lock().locklessWalkers();
        this.races = ctx.lock().raceHooks();
        this.tryGetPage = ctx.tryGetPage();
        this.hook = ctx.hook();
    }

    /**
     * {@link org.vmcore.api.AddressSpace#getUserPageFast}: no mmap_lock, only the machine lock
     * shared (the machine's life); what a race hook threw surfaces at the end, and then the
     * reference taken is given back.
     */
    PageReference getUserPageFast(long va, boolean write) {
        PageReference ref;
        try (MachineLock.Held locked = mm.lock().shared()) {
            mm.ensureOpen();
            if (!mm.pageTable().mode().isCanonical(va)) {
                throw new InvalidArgumentException("va", va, "must be canonical");
            }
            ref = get(va, write);
        }
        try {
            hook.operationDone();
        } catch (RuntimeException | Error e) {
            if (ref != null) {
                ref.close();
            }
            throw e;
        }
        return ref;
    }

    /** The pinned page at va, or null for the slow path; the caller holds the machine lock shared. */
    private PageReference get(long va, boolean write) {
        RawPageTable table = mm.pageTable();
        walkers.enter();
        try {
            long pudSlot = table.slot(va, Level.PUD);
            long pud = pudSlot < 0 ? 0 : table.readSlot(pudSlot);
            if (!allowed(pud, write)) {
                return null;
            }
            if (Pte.isLeaf(pud, Level.PUD)) {
                return grab(Pte.pfn(pud, PageSize.SIZE_1G) + ((va >>> 12) & 0x3FFFF), pudSlot, pud);
            }
            long pmdSlot = slot(Pte.pfn(pud), va >>> 21);
            races.reach(RacePoint.GUP_FAST_AFTER_PUD, mm, va);
            long pmd = table.readSlot(pmdSlot);
            if (!allowed(pmd, write)) {
                return null;
            }
            if (Pte.isLeaf(pmd, Level.PMD)) {
                return grab(Pte.pfn(pmd, PageSize.SIZE_2M) + ((va >>> 12) & 511), pmdSlot, pmd);
            }
            long pteSlot = slot(Pte.pfn(pmd), va >>> 12);
            long pte = table.readSlot(pteSlot);
            if (!allowed(pte, write)) {
                return null;
            }
            PageReference ref = grab(Pte.pfn(pte), pteSlot, pte);
            if (ref != null && table.readSlot(pmdSlot) != pmd) { // gup_fast_pte_range: the table left (a collapse)
                ref.close();
                return null;
            }
            return ref;
        } finally {
            walkers.exit();
        }
    }

    /** try_grab_folio, then the recheck of the leaf through the same table. */
    private PageReference grab(long pfn, long leafSlot, long leaf) {
        PageReference ref = tryGetPage.apply(pfn);
        if (ref != null && leafSlot >= 0 && mm.pageTable().readSlot(leafSlot) != leaf) {
            ref.close();
            return null;
        }
        return ref;
    }

    private static boolean allowed(long e, boolean write) {
        return Pte.isPresent(e) && (e & Pte.USER) != 0 && (!write || (e & Pte.RW) != 0);
    }

    /** The physical address of entry {@code index & 511} of the table in frame {@code tablePfn}. */
    private static long slot(long tablePfn, long index) {
        return (tablePfn << 12) | ((index & 511) << 3);
    }
}
