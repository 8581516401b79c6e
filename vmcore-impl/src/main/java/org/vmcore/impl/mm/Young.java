package org.vmcore.impl.mm;

import org.vmcore.api.InvalidArgumentException;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.api.PageSize;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.tlb.TlbShootdown;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * The accessed bit of one page, CPU side and secondary-MMU side together, as page reclaim asks
 * it (include/linux/mmu_notifier.h: ptep_clear_flush_young_notify, ptep_clear_young_notify,
 * mmu_notifier_test_young): the leaf entry's ACCESSED bit is read and, when asked, cleared (and
 * the page flushed from the TLBs), then the notifiers are asked the same. It touches the address
 * space's page table, its notifier chain and the TLB shootdown; the caller holds the machine lock.
 */
final class Young {
    private Young() {
    }

    /** {@link #young} as a public operation: under the machine lock and the mmap_lock for read. */
    @SuppressWarnings("try") // a lock hold is used only for its scope
    static boolean locked(SimAddressSpace mm, MmContext ctx, long va, boolean clear, boolean flush) {
        try (MachineLock.Held locked = mm.lock().shared(); MachineLock.Held mmap = mm.mmapRead()) {
            mm.ensureOpen();
            boolean young = young(mm, ctx.shootdown(), va, clear, flush);
            ctx.hook().operationDone(); // the accessed bits are cleared all the same
            return young;
        }
    }

    /** Whether the page at {@code va} was accessed; with {@code clear} the bits are cleared, with {@code flush} flushed too. */
    static boolean young(SimAddressSpace mm, TlbShootdown shootdown, long va, boolean clear, boolean flush) {
        assert mm.lock().isHeldByCurrentThread();
        RawPageTable table = mm.pageTable();
        VmArea v = mm.vma(va);
        if (v == null) {
            throw new InvalidArgumentException("va", va, "must lie in a mapping");
        }
        PageSize size = v.pageSize();
        long slot = table.slot(size.alignDown(va), Level.ofLeaf(size));
        if (slot < 0 && v.kind() == VmaKind.ANONYMOUS_PRIVATE) { // a transparent huge page: pmdp_test_and_clear_young
            long pmdSlot = table.slot(va & -HugeMemory.SIZE, Level.PMD);
            if (pmdSlot >= 0 && HugeMemory.isHugePmd(table.readSlot(pmdSlot))) {
                size = PageSize.SIZE_2M;
                slot = pmdSlot;
            }
        }
        long addr = size.alignDown(va);
        boolean young = false;
        if (slot >= 0) {
            long e = table.readSlot(slot);
            young = Pte.isPresent(e) && (e & Pte.ACCESSED) != 0;
            if (young && clear) {
                long cur = e;
                while (!table.compareAndSetSlot(slot, cur, cur & ~Pte.ACCESSED)) {
                    cur = table.readSlot(slot);
                    if (!Pte.isPresent(cur)) {
                        break; // a migration (which takes no mmap_lock) replaced the entry meanwhile
                    }
                }
                if (flush) {
                    shootdown.flushTlbMmRange(mm, addr, addr + size.bytes(), size.shift());
                }
            }
        }
        if (!clear) {
            young |= mm.notifiers().testYoung(addr);
        } else {
            young |= flush ? mm.notifiers().clearFlushYoung(addr, addr + size.bytes()) : mm.notifiers().clearYoung(addr, addr + size.bytes());
        }
        return young;
    }
}
