package org.vmcore.impl.check;

import java.util.List;
import org.vmcore.api.PageSize;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.hugetlb.HugePagePool;
import org.vmcore.impl.hugetlb.HugetlbPools;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.rmap.RmapWalk;
import org.vmcore.impl.vma.MappingRegistry;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.Pte;

/**
 * The invariant checker's rules for one leaf entry: a present leaf maps a live page of its size
 * (a 4 KiB page, a page of a transparent huge page, a hugetlb page) inside a VMA of that size with
 * the VMA's protection; a special entry maps the zero page; a migration entry points at a live
 * page where the page's rmap looks. Each counts the address space's RSS as it goes.
 */
final class EntryRules {
    private final PhysicalMemory memory;
    private final FrameDescriptors d;
    private final MappingRegistry registry;
    private final HugetlbPools pools;
    private final RmapWalk rmap;

    EntryRules(PhysicalMemory memory, MappingRegistry registry, HugetlbPools pools, RmapWalk rmap) {
        this.memory = memory;
        this.d = memory.descriptors();
        this.registry = registry;
        this.pools = pools;
        this.rmap = rmap;
    }

    /** Counts of one address space's tree. */
    static final class MmCount {
        long swap;
        long anonHuge;
        long anon;
        long shmem;
        long tables;
        long pmdTables;
    }

    /** Counts a 4 KiB leaf (present or migration entry) of VMA {@code v} in RSS. */
    private static void countRss(VmArea v, MmCount c) {
        if (v.kind() == VmaKind.ANONYMOUS_SHARED) {
            c.shmem++;
        } else {
            c.anon++;
        }
    }

    private static String where(SimAddressSpace mm, long va, long pfn) {
        return mm + " 0x" + Long.toHexString(va) + " -> pfn 0x" + Long.toHexString(pfn);
    }

    void checkLeaf(SimAddressSpace mm, long va, long e, PageSize size, long pfn, List<String> out, MmCount c) {
        long head = d.folio(pfn);
        int flags = d.flags(head);
        boolean thp = (flags & FrameFlags.LARGE_RMAPPABLE) != 0; // a whole transparent huge page, or one of its pages
        if (!((flags & FrameFlags.ALLOCATED) != 0 && d.order(head) == (thp ? PageSize.SIZE_2M : size).order())) {
            out.add("leaf target" + ": " + where(mm, va, pfn) + " maps a " + size.label() + " page but the frame is " + d.describe(head));
        }
        if (!(size == PageSize.SIZE_4K || (flags & FrameFlags.HUGETLB) != 0 || thp)) {
            out.add("leaf target" + ": " + where(mm, va, pfn) + " is a huge leaf to a" + " frame outside the hugetlb pools");
        }
        VmArea v = mm.vma(va);
        boolean vmaSize = v != null && (v.pageSize() == size || thp && v.kind() == VmaKind.ANONYMOUS_PRIVATE);
        if (v == null || !v.containsRange(va, va + size.bytes()) || !vmaSize) {
            out.add("VMA coverage: " + where(mm, va, pfn) + " (" + size.label() + ") lies in no " + size.label() + " VMA of " + mm);
            return;
        }
        boolean protNone = (e & Pte.PRESENT) == 0;
        if (!(protNone == !v.protection().accessible())) {
            out.add("VMA protection" + ": " + where(mm, va, pfn) + " is " + (protNone ? "PROT_NONE" : "accessible") + " in a " + v.protection() + " VMA");
        }
        if (!((e & Pte.RW) == 0 || v.protection().write())) {
            out.add("VMA protection" + ": " + where(mm, va, pfn) + " is writable in a " + v.protection() + " VMA");
        }
        if (!(protNone || ((e & Pte.NX) == 0) == v.protection().execute())) {
            out.add("VMA protection" + ": " + where(mm, va, pfn) + " has NX " + ((e & Pte.NX) != 0) + " in a " + v.protection() + " VMA");
        }
        if (size == PageSize.SIZE_4K) {
            countRss(v, c);
        } else if (thp) {
            c.anon += 512;
            c.anonHuge += 512;
        }
    }

    /**
     * A special entry maps the shared zero page: a reserved 4 KiB frame of no file or anon_vma,
     * read-only, in a private anonymous VMA (do_anonymous_page makes no other).
     */
    void checkZeroPageEntry(SimAddressSpace mm, long va, long e, PageSize size, long pfn, List<String> out) {
        int flags = d.flags(pfn);
        int zero = FrameFlags.ALLOCATED | FrameFlags.RESERVED;
        if (size == PageSize.SIZE_1G || (flags & zero) != zero || d.order(pfn) != size.order() || d.mapping(pfn) != 0) {
            out.add("zero page: " + where(mm, va, pfn) + " is a special " + size.label() + " entry to a frame that is not"
                    + " the zero page: " + d.describe(pfn));
        }
        if ((e & Pte.RW) != 0) {
            out.add("zero page: " + where(mm, va, pfn) + " is writable");
        }
        VmArea v = mm.vma(va);
        if (v == null || v.kind() != VmaKind.ANONYMOUS_PRIVATE) {
            out.add("zero page: " + where(mm, va, pfn) + " lies in " + (v == null ? "no VMA" : "a " + v.kind() + " VMA"));
        }
    }

    /**
     * A migration entry points at a live page of its size that is not free, lies in a VMA of that
     * size, and sits where the page's rmap looks (its anon_vma or file reaches the VMA, its index
     * gives this address), so remove_migration_ptes and zap find it. Returns whether it may be
     * counted against the page.
     */
    boolean checkMigrationEntry(SimAddressSpace mm, long va, PageSize size, long pfn, List<String> out, MmCount c) {
        String where = "migration entry: " + where(mm, va, pfn);
        if (!memory.isValidPfn(pfn)) {
            out.add(where + " points outside memory");
            return false;
        }
        long head = d.folio(pfn); // a page of a transparent huge page (its PMD migration entry was split)
        int flags = d.flags(head);
        boolean thp = (flags & FrameFlags.LARGE_RMAPPABLE) != 0;
        PageSize folioSize = thp ? PageSize.SIZE_2M : size;
        HugePagePool pool = pools.poolOf(pfn);
        if ((flags & FrameFlags.ALLOCATED) == 0 || d.order(head) != folioSize.order() || (pool != null && pool.isFree(pfn))) {
            out.add(where + " (" + size.label() + ") points at a frame that is not a live " + folioSize.label() + " page: " + d.describe(head));
            return false;
        }
        VmArea v = mm.vma(va);
        boolean vmaSize = v != null && (v.pageSize() == size || thp && v.kind() == VmaKind.ANONYMOUS_PRIVATE);
        if (v == null || !v.containsRange(va, va + size.bytes()) || !vmaSize) {
            out.add("VMA coverage: " + where(mm, va, pfn) + " (a " + size.label() + " migration entry) lies in no " + size.label() + " VMA of " + mm);
            return false;
        }
        long mapping = d.mapping(head);
        long index = d.index(head) + (pfn - head);
        boolean reached = mapping != 0 && registry.owner(mapping) != null
                && v.address(index) == va && rmap.candidates(head).contains(v);
        if (!reached) {
            out.add(where + " is not where the page's rmap looks (" + d.describe(head) + ", mapping " + mapping + ", index 0x"
                    + Long.toHexString(index) + ")");
        }
        if (size == PageSize.SIZE_4K) {
            countRss(v, c);
        } else if (thp) {
            c.anon += 512;
            c.anonHuge += 512;
        }
        return true;
    }
}
