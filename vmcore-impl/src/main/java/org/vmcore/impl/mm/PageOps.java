package org.vmcore.impl.mm;

import java.util.function.ObjLongConsumer;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.hugetlb.HugetlbPools;
import org.vmcore.impl.hugetlb.PmdSharing;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.vma.AnonVma;
import org.vmcore.impl.vma.MappingRegistry;
import org.vmcore.impl.vma.MmStruct;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * Page-level work of one address space: walking the leaves of a range (zapping them is
 * {@link Zap}, copying them for fork is {@link Fork}), changing their protection
 * (change_protection / hugetlb_change_protection), and taking and dropping page references
 * (rmap add/remove, put_page).
 */
final class PageOps {
    /** Visits one non-empty leaf slot. */
    @FunctionalInterface
    interface LeafVisitor {
        void visit(long va, long slot, long entry);
    }

    private final SimAddressSpace mm;
    private final PhysicalMemory memory;
    private final MemMap descriptors;
    private final MappingRegistry registry;
    private final HugetlbPools pools;
    private final Thp thp;
    private final CallbackFailures failures;
    /** The transparent huge pages of this address space: their faults and folios. */
    final HugeMemory huge;
    /** What the other paths do with their PMD entries. */
    final HugePmds hugePmds;

    PageOps(MmContext ctx, SimAddressSpace mm) {
        this.mm = mm;
        this.memory = ctx.memory();
        this.descriptors = SharedSecrets.memMap(memory);
        this.registry = ctx.registry();
        this.pools = ctx.pools();
        this.thp = ctx.thp();
        this.failures = ctx.callbackFailures();
        this.huge = new HugeMemory(ctx, mm);
        this.hugePmds = new HugePmds(ctx, mm);
    }

    // ---- leaf iteration ----

    /** Visits the head PFN of every page {@code v} maps (not the zero page), with its address; the caller holds the lock. */
    static void forEachMappedPage(VmArea v, ObjLongConsumer<Long> visitor) {
        HugeMemory.forEachHugePage(v, visitor);
        PageSize size = v.pageSize();
        forEachLeaf(v, v.start(), v.end(), (va, slot, e) -> {
            if (Pte.isPresent(e) && !ZeroPage.maps(e)) { // vm_normal_page: no page behind the zero page's entries
                visitor.accept(va, Pte.pfn(e, size));
            }
        });
    }

    /**
     * Calls {@code visitor} for every non-empty leaf slot of {@code vma}'s page size in
     * {@code [from, to)}, skipping missing tables a whole table span at a time. For reading only:
     * the entries may change under it (faults of other address spaces through a shared table, a
     * migration); a path that changes them uses {@link #forEachLeafLocked}.
     */
    static void forEachLeaf(VmArea vma, long from, long to, LeafVisitor visitor) {
        walkLeaves(vma, from, to, visitor, false);
    }

    /**
     * As {@link #forEachLeaf}, with each table's page-table lock held while its entries are
     * visited (zap_pte_range, change_pte_range, copy_pte_range): a migration of one of the pages,
     * which holds only the rmap and page-table locks, sees each entry before or after, never
     * half changed. The visitor must take no other page-table lock and no sleeping lock.
     */
    static void forEachLeafLocked(VmArea vma, long from, long to, LeafVisitor visitor) {
        walkLeaves(vma, from, to, visitor, true);
    }

    private static void walkLeaves(VmArea vma, long from, long to, LeafVisitor visitor, boolean locked) {
        MmStruct mm = vma.owner();
        RawPageTable table = mm.pageTable();
        PageSize size = vma.pageSize();
        Level leaf = Level.ofLeaf(size);
        if (size == PageSize.SIZE_1G) {
            KMutex ptl = locked ? mm.pageTableLock() : null; // 1 GiB entries live under page_table_lock
            for (long va = from; va < to; va += size.bytes()) {
                long slot = table.slot(va, leaf);
                if (slot < 0) {
                    continue;
                }
                if (ptl != null) {
                    ptl.lock();
                }
                try {
                    long e = table.readSlot(slot);
                    if (!Pte.isNone(e)) {
                        visitor.visit(va, slot, e);
                    }
                } finally {
                    if (ptl != null) {
                        ptl.unlock();
                    }
                }
            }
            return;
        }
        long span = size.bytes() << 9; // one table of leaves: 2 MiB of PTEs, 1 GiB of PMDs
        for (long chunk = from & -span; chunk < to; chunk += span) {
            long first = Math.max(from, chunk);
            long last = Math.min(to, chunk + span);
            long base = table.slot(first, leaf);
            if (base < 0) {
                continue;
            }
            KMutex ptl = locked ? mm.lock().ptLocks().ofSlot(base) : null;
            if (ptl != null) {
                ptl.lock();
            }
            try {
                for (long va = first; va < last; va += size.bytes()) {
                    long slot = base + (((va - first) >>> size.shift()) << 3);
                    long e = table.readSlot(slot);
                    if (!Pte.isNone(e)) {
                        visitor.visit(va, slot, e);
                    }
                }
            } finally {
                if (ptl != null) {
                    ptl.unlock();
                }
            }
        }
    }

    // ---- protection ----

    /** Gives the VMA its new protection and applies it to all its entries (change_protection). */
    void changeProtection(VmArea vma, Protection prot) {
        if (!vma.kind().isHugetlb()) {
            vma.setProtection(prot);
            changeProtectionLocked(vma, vma.start(), vma.end());
            return;
        }
        // hugetlb_change_protection: the VMA lock and i_mmap_rwsem for write around the new flags, the
        // unshare and the change, so that no sibling shares the table with the new flags and old entries.
        vma.hugetlbVmaLock().downWrite();
        try {
            vma.mapping().iMmapRwsem().downWrite();
            try {
                vma.setProtection(prot);
                changeProtectionLocked(vma, vma.start(), vma.end());
            } finally {
                vma.mapping().iMmapRwsem().upWrite();
            }
        } finally {
            vma.hugetlbVmaLock().upWrite();
        }
    }

    private void changeProtectionLocked(VmArea vma, long from, long to) {
        RawPageTable table = mm.pageTable();
        PageSize size = vma.pageSize();
        if (vma.kind() == VmaKind.HUGETLB_SHARED && size == PageSize.SIZE_2M) {
            // hugetlb_change_protection unshares shared windows; their pages fault back in later.
            for (long window = from & PmdSharing.PUD_MASK; window < to; window += PmdSharing.PUD_SIZE) {
                PmdSharing.hugePmdUnshare(vma, Math.max(window, from));
            }
        }
        boolean write = vma.protection().write();
        boolean shared = vma.kind().isShared();
        long readOnly = vma.pteProtection(false); // once per call: the VMA's protection is settled
        long readWrite = vma.pteProtection(true);
        hugePmds.forEachHugePmd(vma, from, to, (haddr, slot, pmd) -> hugePmds.changePmd(slot, pmd, write, readOnly, readWrite));
        forEachLeafLocked(vma, from, to, (va, slot, e) -> {
            if (!Pte.isPresent(e)) {
                return; // swap or migration entries keep their own permissions
            }
            boolean writable = write && (shared || exclusiveAnon(Pte.pfn(e, size)));
            table.protectSlot(slot, size, writable ? readWrite : readOnly);
        });
    }

    /** Whether the private page may be written in place: an anonymous page nobody else maps. */
    boolean exclusiveAnon(long pfn) {
        return isAnon(pfn) && descriptors.mapcount(pfn) == 1 && descriptors.refcount(pfn) == 1;
    }

    boolean isAnon(long pfn) {
        return (descriptors.flags(pfn) & FrameFlags.ANON) != 0;
    }

    // ---- page references ----

    /** Drops one mapping of the page (folio_remove_rmap_pte + folio_put). */
    void putMapped(long pfn, boolean hugetlb) {
        descriptors.addMapcount(pfn, -1);
        putReference(pfn, hugetlb);
    }

    /**
     * Drops one reference; the last one frees the page (the whole folio, for a page of a
     * transparent huge page) to its pool or the buddy allocator.
     */
    void putReference(long pfn, boolean hugetlb) {
        long head = descriptors.folio(pfn);
        if (descriptors.addRefcount(head, -1) > 0) {
            return;
        }
        if (hugetlb) {
            pools.poolOf(head).free(head);
        } else {
            memory.free(head);
        }
    }

    /**
     * A zeroed 4 KiB frame from the home node, else any node; when none is free, direct reclaim's
     * deferred split shrinker first splits the partly unmapped huge pages (giving back their
     * unmapped pages) and the allocation is tried once more.
     */
    long allocateBasePage() {
        int nodes = memory.nodes().size();
        for (int round = 0; round < 2; round++) {
            for (int i = 0; i < nodes; i++) {
                long pfn = memory.tryAllocate((mm.homeNode() + i) % nodes, 0, true);
                if (pfn >= 0) {
                    return pfn;
                }
            }
            if (round == 0 && thp.splitDeferred(Integer.MAX_VALUE, descriptors, failures) == 0) {
                break;
            }
        }
        throw new OutOfMemoryException("no free 4K frame on any node for mm" + mm.id());
    }

    /**
     * anon_vma_prepare: the anon_vma new anonymous pages of the VMA go under; a compatible
     * neighbour's is reused, so the two VMAs can still merge later.
     */
    AnonVma anonVmaPrepare(VmArea vma) {
        AnonVma current = vma.anonVma();
        if (current != null) {
            return current;
        }
        // Two faults of the VMA may get here at once: the anon_vma's lock, then page_table_lock,
        // and the first to find the VMA still without one installs its candidate.
        AnonVma reused = mm.vmaTree().mergeableAnonVma(vma);
        AnonVma candidate = reused != null ? reused : registry.newAnonVma(null);
        boolean installed = false;
        candidate.rwsem().downWrite();
        try {
            mm.pageTableLock().lock();
            try {
                if (vma.anonVma() == null) {
                    vma.anonChain().add(candidate);
                    candidate.link(vma);
                    vma.setAnonVma(candidate);
                    installed = true;
                }
            } finally {
                mm.pageTableLock().unlock();
            }
        } finally {
            candidate.rwsem().upWrite();
        }
        if (!installed && reused == null) {
            registry.unregister(candidate.id());
        }
        return vma.anonVma();
    }

    /** Makes pfn a new anonymous page of vma at va, mapped once (folio_add_new_anon_rmap). */
    void newAnonRmap(VmArea vma, long pfn, long va) {
        AnonVma anonVma = anonVmaPrepare(vma);
        descriptors.setFlags(pfn, FrameFlags.ANON | FrameFlags.UPTODATE);
        descriptors.setMapping(pfn, anonVma.id(), vma.linearPageIndex(va));
        descriptors.setMapcount(pfn, 1);
    }
}
