package org.vmcore.impl.mm;

import java.util.ArrayList;
import org.vmcore.impl.tlb.TlbGather;
import org.vmcore.impl.vma.VmArea;

/**
 * exit_mmap (mm/mmap.c): mmu_notifier_release first, then every CPU leaves the address space and
 * its PCID is flushed everywhere (it may be reused), then every VMA is zapped and removed and the
 * page table freed. It may touch the address space's VMA tree, page table and page operations,
 * the notifier chain and the TLB shootdown; the caller holds the machine lock.
 */
final class Exit {
    private Exit() {
    }

    /** exit_mmap of {@code mm}, whose physical memory is still there. */
    static void exitMmap(SimAddressSpace mm, MmContext ctx) {
        assert ctx.lock().isHeldByCurrentThread();
        mm.notifiers().release(); // exit_mmap: mmu_notifier_release first; what it throws waits for the end
        // Before any frame is freed: CPUs running here leave (their next access throws
        // ClosedException) and the PCID, which may be reused, is dropped everywhere.
        ctx.shootdown().flushExiting(mm);
        TlbGather gather = new TlbGather();
        for (VmArea v : new ArrayList<>(mm.vmaTree().all())) {
            mm.zap.zapPageRange(v, v.start(), v.end(), gather, true);
            mm.zap.removeVma(v);
        }
        mm.pageTable().destroy();
    }
}
