package org.vmcore.impl.check;

import java.util.ArrayList;
import java.util.List;
import org.eclipse.collections.impl.map.mutable.primitive.LongIntHashMap;
import org.eclipse.collections.impl.set.mutable.primitive.LongHashSet;
import org.vmcore.api.PageSize;
import org.vmcore.api.TlbEntry;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.SimMachine;
import org.vmcore.impl.hugetlb.HugePagePool;
import org.vmcore.impl.hugetlb.HugetlbFileImpl;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.rmap.FileMapping;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.mem.BuddyAllocator;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.PageTable;
import org.vmcore.x86.pgtable.Pte;

/**
 * Recounts the machine from its page tables and compares with what the engine keeps: mapcounts
 * (a shared PMD table counts once), refcounts (mappings plus page cache), PMD-table share
 * counts, the targets of leaves, VMA coverage and permissions, free lists, per-mm counters, pool
 * reservations, and the TLBs (no translation to a frame its address space no longer maps there,
 * outside an open invalidation). Each violation names the rule and the objects involved.
 *
 * <p>Runs under the machine lock; it reads every table of every address space, so it costs time
 * in proportion to what is mapped.
 */
public final class InvariantChecker {
    private final SimMachine machine;
    private final FrameDescriptors d;

    public InvariantChecker(SimMachine machine) {
        this.machine = machine;
        this.d = machine.memory().descriptors();
    }

    /** Every violation found, empty when the machine is consistent. */
    public List<String> check() {
        List<String> out = new ArrayList<>();
        LongIntHashMap leaves = new LongIntHashMap(); // head pfn -> entries mapping it, shared tables once
        LongIntHashMap pudRefs = new LongIntHashMap(); // PMD table pfn -> PUD entries pointing at it
        LongHashSet counted = new LongHashSet(); // tables whose leaves were counted already
        for (var a : machine.addressSpaces()) {
            SimAddressSpace mm = (SimAddressSpace) a;
            MmCount c = new MmCount();
            PageTable t = mm.pageTable();
            walk(mm, t, t.cr3() >>> 12, t.rootLevel(), 0, leaves, pudRefs, counted, c, out);
            var k = mm.counters();
            expect(out, k.anonPages() == c.anon, "RSS counter", mm + " RssAnon " + k.anonPages() + " but " + c.anon + " anonymous entries");
            expect(out, k.shmemPages() == c.shmem, "RSS counter", mm + " RssShmem " + k.shmemPages() + " but " + c.shmem + " shmem entries");
            expect(out, k.pageTablePages() == c.tables, "page-table counter", mm + " counts " + k.pageTablePages()
                    + " page-table pages but its tree has " + c.tables);
            expect(out, k.pmdTables() == c.pmdTables, "nr_pmds", mm + " counts " + k.pmdTables() + " PMD tables but its tree has "
                    + c.pmdTables);
        }
        pudRefs.forEachKeyValue((table, refs) -> expect(out, d.ptShareCount(table) == refs - 1, "share count",
                "PMD table pfn 0x" + Long.toHexString(table) + " has share count " + d.ptShareCount(table) + " but " + refs
                        + " PUD entries point at it"));
        LongHashSet cached = new LongHashSet();
        List<FileMapping> mappings = machine.fileMappings();
        for (FileMapping m : mappings) {
            m.pageCache().forEachValue(cached::add);
        }
        leaves.forEachKeyValue((pfn, count) -> {
            expect(out, d.mapcount(pfn) == count, "mapcount", "pfn 0x" + Long.toHexString(pfn) + " has mapcount " + d.mapcount(pfn)
                    + " but " + count + " entries map it");
            int expected = count + (cached.contains(pfn) ? 1 : 0);
            expect(out, d.refcount(pfn) == expected, "refcount", "pfn 0x" + Long.toHexString(pfn) + " has refcount "
                    + d.refcount(pfn) + " but " + count + " mappings" + (cached.contains(pfn) ? " and the page cache" : ""));
        });
        cached.forEach(pfn -> {
            if (!leaves.containsKey(pfn)) {
                expect(out, d.mapcount(pfn) == 0 && d.refcount(pfn) == 1, "page cache", "unmapped cached pfn 0x"
                        + Long.toHexString(pfn) + " has mapcount " + d.mapcount(pfn) + " and refcount " + d.refcount(pfn));
            }
        });
        checkPools(out);
        checkFreeLists(out);
        checkTlbs(out);
        return out;
    }

    /** Counts of one address space's tree. */
    private static final class MmCount {
        long anon;
        long shmem;
        long tables;
        long pmdTables;
    }

    private void walk(SimAddressSpace mm, PageTable t, long tablePfn, Level level, long base, LongIntHashMap leaves,
                      LongIntHashMap pudRefs, LongHashSet counted, MmCount c, List<String> out) {
        c.tables++;
        if (level == Level.PMD) {
            c.pmdTables++;
        }
        expect(out, (d.flags(tablePfn) & (FrameFlags.PGTABLE | FrameFlags.ALLOCATED)) == (FrameFlags.PGTABLE | FrameFlags.ALLOCATED),
                "table frame", mm + " uses pfn 0x" + Long.toHexString(tablePfn) + " as a " + level + " table but it is "
                        + d.describe(tablePfn));
        boolean countLeaves = counted.add(tablePfn);
        long limit = t.mode().userAddressLimit();
        for (int i = 0; i < Level.ENTRIES; i++) {
            long va = base + ((long) i << level.shift());
            if (va >= limit) {
                break;
            }
            long e = t.readSlot((tablePfn << 12) + ((long) i << 3));
            if (Pte.isNone(e)) {
                continue;
            }
            boolean leaf = level == Level.PTE || (Pte.isPresent(e) && Pte.isLeaf(e, level)) || !Pte.isPresent(e);
            if (!leaf) {
                long child = Pte.pfn(e);
                if (level == Level.PUD) {
                    pudRefs.addToValue(child, 1);
                }
                walk(mm, t, child, level.below(), va, leaves, pudRefs, counted, c, out);
                continue;
            }
            PageSize size = level.leafSize();
            if (size == null || !Pte.isPresent(e)) {
                out.add("stray entry: " + mm + " has " + Pte.describe(e) + " at 0x" + Long.toHexString(va) + " (" + level + ")"
                        + " outside any migration");
                continue;
            }
            long pfn = Pte.pfn(e, size);
            checkLeaf(mm, va, e, size, pfn, out, c);
            if (countLeaves) {
                leaves.addToValue(pfn, 1);
            }
        }
    }

    private void checkLeaf(SimAddressSpace mm, long va, long e, PageSize size, long pfn, List<String> out, MmCount c) {
        int flags = d.flags(pfn);
        String where = mm + " 0x" + Long.toHexString(va) + " -> pfn 0x" + Long.toHexString(pfn);
        expect(out, (flags & FrameFlags.ALLOCATED) != 0 && d.order(pfn) == size.order(), "leaf target", where + " maps a "
                + size.label() + " page but the frame is " + d.describe(pfn));
        expect(out, size == PageSize.SIZE_4K || (flags & FrameFlags.HUGETLB) != 0, "leaf target", where + " is a huge leaf to a"
                + " frame outside the hugetlb pools");
        VmArea v = mm.vma(va);
        if (v == null || !v.containsRange(va, va + size.bytes()) || v.pageSize() != size) {
            out.add("VMA coverage: " + where + " (" + size.label() + ") lies in no " + size.label() + " VMA of " + mm);
            return;
        }
        boolean protNone = (e & Pte.PRESENT) == 0;
        expect(out, protNone == !v.protection().accessible(), "VMA protection", where + " is "
                + (protNone ? "PROT_NONE" : "accessible") + " in a " + v.protection() + " VMA");
        expect(out, (e & Pte.RW) == 0 || v.protection().write(), "VMA protection", where + " is writable in a " + v.protection()
                + " VMA");
        expect(out, protNone || ((e & Pte.NX) == 0) == v.protection().execute(), "VMA protection", where
                + " has NX " + ((e & Pte.NX) != 0) + " in a " + v.protection() + " VMA");
        if (size == PageSize.SIZE_4K) {
            if (v.kind() == VmaKind.ANONYMOUS_SHARED) {
                c.shmem++;
            } else {
                c.anon++;
            }
        }
    }

    private void checkPools(List<String> out) {
        for (PageSize size : new PageSize[] {PageSize.SIZE_2M, PageSize.SIZE_1G}) {
            HugePagePool pool = machine.hugetlbfsImpl().pool(size);
            long reserved = 0;
            for (var f : machine.hugetlbfs().files()) {
                HugetlbFileImpl file = (HugetlbFileImpl) f;
                if (file.pageSize() == size) {
                    reserved += file.reservedIndexes().size();
                }
            }
            for (var a : machine.addressSpaces()) {
                SimAddressSpace mm = (SimAddressSpace) a;
                for (VmArea v : mm.vmaAreas()) {
                    if (v.kind() == VmaKind.HUGETLB_PRIVATE && v.reservationOwner() && v.pageSize() == size) {
                        long[] anon = {0};
                        mm.forEachMappedPage(v, (va, pfn) -> anon[0] += (d.flags(pfn) & FrameFlags.ANON) != 0 ? 1 : 0);
                        reserved += (v.end() - v.start()) / size.bytes() - anon[0];
                    }
                }
            }
            expect(out, pool.reserved() == reserved, "pool reservations", size.label() + " pool reserves " + pool.reserved()
                    + " pages but files and private mappings hold " + reserved);
            for (long pfn : pool.freeList()) {
                expect(out, d.refcount(pfn) == 0 && d.mapcount(pfn) == 0, "free list", "free " + size.label() + " pool page 0x"
                        + Long.toHexString(pfn) + " is in use: " + d.describe(pfn));
            }
        }
    }

    private void checkFreeLists(List<String> out) {
        for (int n = 0; n < machine.memory().nodes().size(); n++) {
            BuddyAllocator a = machine.memory().allocator(n);
            for (int order = 0; order <= BuddyAllocator.MAX_ORDER; order++) {
                for (long head : a.freeBlockHeads(order)) {
                    expect(out, (d.flags(head) & FrameFlags.ALLOCATED) == 0, "free list", "node " + n + " lists pfn 0x"
                            + Long.toHexString(head) + " (order " + order + ") as free but it is " + d.describe(head));
                }
            }
        }
    }

    private void checkTlbs(List<String> out) {
        for (int i = 0; i < machine.cpuCount(); i++) {
            for (TlbEntry e : machine.cpu(i).tlbEntries()) {
                SimAddressSpace mm = (SimAddressSpace) e.addressSpace();
                if (mm == null) {
                    out.add("TLB: cpu" + i + " caches 0x" + Long.toHexString(e.address()) + " under PCID " + e.pcid()
                            + ", which no live address space has");
                    continue;
                }
                long now = mm.pageAt(e.address());
                expect(out, now == e.pfn() || mm.notifiers().isInvalidating(e.address()), "TLB", "cpu" + i + " translates "
                        + mm + " 0x" + Long.toHexString(e.address()) + " to pfn 0x" + Long.toHexString(e.pfn())
                        + " but the tables map " + (now < 0 ? "nothing" : "pfn 0x" + Long.toHexString(now)));
            }
        }
    }

    private static void expect(List<String> out, boolean ok, String rule, String what) {
        if (!ok) {
            out.add(rule + ": " + what);
        }
    }
}
