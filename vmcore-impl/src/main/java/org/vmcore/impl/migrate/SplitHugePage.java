package org.vmcore.impl.migrate;

import java.util.concurrent.atomic.AtomicLong;
import org.vmcore.api.Errno;
import org.vmcore.impl.base.FolioLock;
import org.vmcore.impl.base.HugePageSplitter;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.mm.Thp;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.rmap.HugePagePtes;
import org.vmcore.impl.rmap.TryToUnmap;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * split_huge_page for a transparent huge page (mm/huge_memory.c): its 512 pages become 512 pages
 * of their own. Under the folio lock, with a reference of its own: unmap_folio turns every entry
 * mapping it into a migration entry (a PMD entry into a PMD migration entry, a PTE into one to its
 * page); if nothing else then holds the folio, its reference count is frozen at 0 (so that no
 * speculative reference gets in), the descriptors are split (each page anonymous, under the
 * folio's anon_vma, at its own index), remap_page maps each page again (a PMD migration entry
 * becomes its deposited PTE table, counted in thp_split_pmd), and the pages nothing maps any more
 * go back to the allocator (the memory a partial munmap left behind).
 */
public final class SplitHugePage implements HugePageSplitter {
    private static final int NR = 512;

    private final MachineLock lock;
    private final PhysicalMemory memory;
    private final MemMap descriptors;
    private final TryToUnmap unmap;
    private final HugePagePtes ptes;
    private final RemoveMigrationPtes remove;
    private final AtomicLong splits = new AtomicLong();
    private volatile Thp thp;
    private final CallbackFailures failures;

    SplitHugePage(MachineLock lock, PhysicalMemory memory, TryToUnmap unmap, RemoveMigrationPtes remove,
                  CallbackFailures failures) {
        this.failures = failures;
        this.lock = lock;
        this.memory = memory;
        this.descriptors = SharedSecrets.memMap(memory);
        this.unmap = unmap;
        this.ptes = unmap.hugePagePtes();
        this.remove = remove;
    }

    /** The machine's THP state, where PMD splits are counted and the deferred split queue is. */
    void useThp(Thp thp) {
        this.thp = thp;
    }

    /**
     * The deferred split shrinker (deferred_split_scan), for reclaim: splits the queued, partly
     * unmapped huge pages; what a notifier threw goes to the operation's callback failures.
     */
    @Override
    public boolean referencedOrLocked(long head) {
        return ptes.referencedOrLocked(head);
    }

    @Override
    public void countSwapoutFallback() {
        Thp t = thp;
        if (t != null) {
            t.countSwapoutFallback();
        }
    }

    @Override
    public void runDeferred() {
        Thp t = thp;
        if (t != null) {
            t.splitDeferred(Integer.MAX_VALUE, descriptors, failures);
        }
    }

    /** thp_split_page. */
    long splits() {
        return splits.get();
    }

    /**
     * Splits the huge page headed by {@code head}; the caller holds the machine lock. Returns 0, or
     * -EBUSY (not a huge page any more, mapped by a PMD, or held by something besides its
     * mappings) or -EAGAIN (its folio lock is held: a migration or another split).
     */
    @Override
    public int split(long head) {
        assert lock.isHeldByCurrentThread();
        int flags = descriptors.flags(head);
        if ((flags & (FrameFlags.LARGE_RMAPPABLE | FrameFlags.ALLOCATED)) != (FrameFlags.LARGE_RMAPPABLE | FrameFlags.ALLOCATED)
                || (flags & FrameFlags.ANON) == 0 || descriptors.mapping(head) == 0) {
            return -Errno.EBUSY;
        }
        if (!descriptors.getUnlessZero(head)) {
            return -Errno.EBUSY; // being freed
        }
        if (!FolioLock.tryLock(descriptors, head)) {
            put(head);
            return -Errno.EAGAIN;
        }
        boolean frozen = false;
        boolean partly = becomesPartlyMapped(head);
        try {
            unmap.tryToMigrate(head); // unmap_folio: PMD entries and PTEs alike
            if (partly && thp != null) {
                thp.countDeferredSplit();
            }
            // can_split_folio: no mapping and no pin left, only this split's reference
            frozen = memory.descriptors().folioMapcount(head) == 0 && descriptors.freezeRefcount(head, 1);
        } finally {
            if (!frozen) { // not splittable now, or a notifier refused the unmap: remap_page, as it was
                remove.removeMigrationPtes(head, head);
                FolioLock.unlock(descriptors, head);
                put(head);
            }
        }
        if (!frozen) {
            return -Errno.EBUSY;
        }
        int kept = flags & (FrameFlags.ANON | FrameFlags.UPTODATE | FrameFlags.DIRTY | FrameFlags.LAZYFREE);
        long mapping = descriptors.mapping(head);
        long index = descriptors.index(head);
        descriptors.splitLarge(head, kept | FrameFlags.LOCKED); // each page locked like the head until remapped
        descriptors.setRefcount(head, 1);
        for (int i = 1; i < NR; i++) {
            descriptors.setMapping(head + i, mapping, index + i);
        }
        int pmds = ptes.restoreSplitPmds(head); // each page maps itself now: its own mapcount and reference
        ptes.restore(head, head);
        if (pmds > 0 && thp != null) {
            thp.countSplitPmds(pmds);
        }
        for (int i = 0; i < NR; i++) {
            FolioLock.unlock(descriptors, head + i);
            put(head + i); // the split's reference: the pages nothing maps go
        }
        splits.incrementAndGet();
        return 0;
    }

    /**
     * Whether unmap_folio, taking the PTEs of a huge page no PMD maps one at a time, leaves it
     * partly mapped on the way (deferred_split_folio from folio_remove_rmap_ptes), which Linux
     * counts in thp_deferred_split_page unless it was queued already.
     */
    private boolean becomesPartlyMapped(long head) {
        if (descriptors.entireMapcount(head) != 0 || (descriptors.flags(head) & FrameFlags.PARTIALLY_MAPPED) != 0) {
            return false;
        }
        int mapped = 0;
        for (int i = 0; i < NR && mapped < 2; i++) {
            mapped += descriptors.mapcount(head + i) > 0 ? 1 : 0;
        }
        return mapped >= 2;
    }

    private void put(long pfn) {
        if (descriptors.addRefcount(pfn, -1) == 0) {
            memory.free(pfn);
        }
    }
}
