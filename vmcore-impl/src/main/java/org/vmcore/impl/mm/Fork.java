package org.vmcore.impl.mm;

import org.vmcore.api.NotifierEvent;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.vma.VmArea;

/**
 * fork's dup_mmap (kernel/fork.c): every VMA is copied into the child (anon_vma_fork links the
 * child's anon_vma), and copy_page_range copies the entries of the mappings that need it, inside
 * a notifier range that write-protects the parent's COW entries; then the parent's TLB is flushed
 * (flush_tlb_mm(oldmm)). The entry copying itself (copy_pte_range, copy_nonpresent_pte) is in
 * {@link PageOps}. A fork that fails, or whose notifiers threw, closes the child again.
 *
 * <p>It may touch the parent's and the child's VMA trees and page tables, the notifier chain and
 * the TLB shootdown; the facade holds the machine lock.
 */
@SuppressWarnings("try") // an Invalidation is used only for its scope: the notifier range ends with the block
final class Fork {
    private final SimAddressSpace mm;
    private final MmContext ctx;

    Fork(SimAddressSpace mm, MmContext ctx) {
        this.mm = mm;
        this.ctx = ctx;
    }

    /** dup_mmap into {@code child}, a new address space; throws (with the child closed) if the fork fails. */
    void dupMmap(SimAddressSpace child) {
        assert Thread.holdsLock(ctx.lock());
        try {
            for (VmArea v : mm.vmaTree().all()) {
                VmArea copy = v.forkCopy(child);
                mm.pages.prepareForkedAnon(v, copy);
                child.insertVma(copy);
                if (mm.pages.needsCopy(v)) { // copy_page_range write-protects the parent's COW entries
                    try (Invalidation inv = Invalidation.start(mm.notifiers(), v.start(), v.end(), NotifierEvent.PROTECTION_PAGE)) {
                        mm.pages.copyForFork(v, copy);
                    }
                }
            }
        } catch (RuntimeException e) { // out of memory, or a notifier refused: the child goes, the parent stays usable
            ctx.shootdown().flushTlbMm(mm);
            throw closeChild(child, e);
        }
        ctx.shootdown().flushTlbMm(mm); // dup_mmap's flush_tlb_mm(oldmm)
        if (ctx.callbackFailures().any()) { // the fork completed, but the caller gets the exception, not the child
            throw closeChild(child, ctx.callbackFailures().take());
        }
    }

    /** Closes a child that fork will not return; what the close throws joins {@code e}. */
    private RuntimeException closeChild(SimAddressSpace child, Throwable e) {
        try {
            child.close();
        } catch (RuntimeException c) {
            e.addSuppressed(c);
        }
        return CallbackFailures.sneaky(ctx.callbackFailures().suppressInto(e));
    }
}
