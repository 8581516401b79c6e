package org.vmcore.impl.check;

import java.util.ArrayList;
import java.util.List;
import java.util.function.LongToIntFunction;
import org.eclipse.collections.impl.map.mutable.primitive.LongIntHashMap;
import org.eclipse.collections.impl.set.mutable.primitive.LongHashSet;
import org.vmcore.api.Cpu;
import org.vmcore.api.PageSize;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.PmdShareCount;
import org.vmcore.impl.hugetlb.HugePagePool;
import org.vmcore.impl.hugetlb.HugetlbFileImpl;
import org.vmcore.impl.hugetlb.HugetlbFsImpl;
import org.vmcore.impl.hugetlb.HugetlbPools;
import org.vmcore.impl.hugetlb.HugetlbReservation;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.mm.ZeroPage;
import org.vmcore.impl.rmap.RmapWalk;
import org.vmcore.impl.swap.SwapCache;
import org.vmcore.impl.vma.FileMapping;
import org.vmcore.impl.vma.MappingRegistry;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.mem.BuddyAllocator;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.MigrationEntry;
import org.vmcore.x86.pgtable.Pte;

/**
 * Recounts the machine from its page tables and compares with what the engine keeps: mapcounts
 * (a shared PMD table counts once), refcounts (mappings, page cache and the speculative
 * references PFN walkers hold), PMD-table share counts as the engine keeps them (the refcount
 * with {@code Regression.PRE_59D9094D}) against the PUD entries, page-table frames no address
 * space reaches (leaked tables), the targets of leaves, VMA coverage and permissions, free lists, per-mm counters, pool
 * reservations, the TLBs (no translation to a frame its address space no longer maps there, nor
 * a writable one where the tables refuse a store) and the paging-structure caches (no cached
 * PML4E, PDPTE or PDE the tables no longer hold), each outside an open invalidation and a flush
 * the address space is owed. Each violation names the rule and the objects involved.
 *
 * <p>Migration entries are first-class: each must point at a live page of its size, sit where
 * that page's rmap finds it, and count in its mm's RSS; it holds no mapcount and no reference
 * (a running migration's isolation reference is allowed on a locked page). No allocated frame
 * may be left with neither a reference nor a migration entry pointing at it, and no counter may
 * be negative.
 *
 * <p>Runs under the machine lock; it reads every table of every address space, so it costs time
 * in proportion to what is mapped.
 */
public final class InvariantChecker {

    private final MachineLock lock;
    private final PhysicalMemory memory;
    private final FrameDescriptors d;
    private final LongIntHashMap entire = new LongIntHashMap(); // transparent huge page -> PMD entries mapping it
    private final MappingRegistry registry;
    private final HugetlbPools pools;
    private final HugetlbFsImpl hugetlbfs;
    private final RmapWalk rmap;
    private final List<SimAddressSpace> spaces;
    private final List<? extends Cpu> cpus;
    private final boolean insideCallback;
    private final PmdShareCount shareCount;
    private final LongToIntFunction speculativeRefs;
    private final EntryRules leafRules;
    private final SwapRules swap;

    /**
     * A checker of the given state; the caller holds the machine lock while it runs. Called from
     * inside a user callback ({@code insideCallback}), notifier ranges may legitimately be open.
     */
    public InvariantChecker(MachineLock lock, PhysicalMemory memory, MappingRegistry registry, HugetlbPools pools, HugetlbFsImpl hugetlbfs,
                            RmapWalk rmap, List<SimAddressSpace> spaces, List<? extends Cpu> cpus, boolean insideCallback,
                            PmdShareCount shareCount, LongToIntFunction speculativeRefs, SwapCache swapCache) {
        this.lock = lock;
        this.memory = memory;
        this.d = memory.descriptors();
        this.registry = registry;
        this.pools = pools;
        this.hugetlbfs = hugetlbfs;
        this.rmap = rmap;
        this.spaces = spaces;
        this.cpus = cpus;
        this.insideCallback = insideCallback;
        this.shareCount = shareCount;
        this.speculativeRefs = speculativeRefs;
        this.leafRules = new EntryRules(memory, registry, pools, rmap);
        this.swap = new SwapRules(swapCache, d, speculativeRefs);
    }

    /** Every violation found, empty when the machine is consistent. */
    public List<String> check() {
        assert lock.isHeldByCurrentThread();
        List<String> out = new ArrayList<>();
        LongIntHashMap leaves = new LongIntHashMap(); // head pfn -> entries mapping it, shared tables once
        LongIntHashMap migrating = new LongIntHashMap(); // head pfn -> migration entries to it, shared tables once
        LongIntHashMap pudRefs = new LongIntHashMap(); // PMD table pfn -> PUD entries pointing at it
        LongHashSet counted = new LongHashSet(); // tables whose leaves were counted already
        for (SimAddressSpace mm : spaces) {
            EntryRules.MmCount c = new EntryRules.MmCount();
            RawPageTable t = mm.pageTable();
            walk(mm, t, t.cr3() >>> 12, t.rootLevel(), 0, leaves, migrating, pudRefs, counted, c, out);
            var k = mm.counters();
            swap.counter(mm, c.swap, out);
            if (!insideCallback && mm.notifiers().anyOpen()) {
                out.add("open invalidation: " + mm + " has an MMU-notifier range still open outside any operation"
                        + " (the stale-translation detector is blind there)");
            }
            if (k.anonPages() < 0 || k.shmemPages() < 0 || k.hugetlbBytes() < 0) {
                out.add("negative counter: " + mm + " has " + k);
            }
            if (!(k.anonPages() == c.anon)) {
            out.add("RSS counter" + ": " + mm + " RssAnon " + k.anonPages() + " but " + c.anon + " anonymous entries");
        }
            if (!(k.anonHugePages() == c.anonHuge)) {
                out.add("RSS counter: " + mm + " AnonHugePages " + k.anonHugePages() + " but " + c.anonHuge
                        + " pages under huge PMD entries");
            }
            if (!(k.shmemPages() == c.shmem)) {
            out.add("RSS counter" + ": " + mm + " RssShmem " + k.shmemPages() + " but " + c.shmem + " shmem entries");
        }
            if (!(k.pageTablePages() == c.tables)) {
            out.add("page-table counter" + ": " + mm + " counts " + k.pageTablePages() + " page-table pages but its tree has " + c.tables);
        }
            if (!(k.pmdTables() == c.pmdTables)) {
            out.add("nr_pmds" + ": " + mm + " counts " + k.pmdTables() + " PMD tables but its tree has " + c.pmdTables);
        }
        }
        pudRefs.forEachKeyValue((table, refs) -> {
            if (!(shareCount.sharers(table) == refs - 1)) {
            out.add("share count" + ": " + "PMD table pfn 0x" + Long.toHexString(table) + " has share count " + shareCount.sharers(table) + " but " + refs + " PUD entries point at it");
        }
        });
        if (memory.pageTableFrames() != counted.size()) {
            out.add("leaked page table: " + memory.pageTableFrames() + " frames are page tables but the address spaces reach "
                    + counted.size());
        }
        LongHashSet cached = new LongHashSet();
        List<FileMapping> mappings = registry.fileMappings();
        for (FileMapping m : mappings) {
            m.pageCache().forEachValue(cached::add);
        }
        LongHashSet pages = new LongHashSet(leaves.keySet());
        pages.addAll(migrating.keySet());
        LongIntHashMap folioMaps = new LongIntHashMap(); // transparent huge page -> PTEs mapping its pages
        pages.forEach(pfn -> {
            int count = leaves.get(pfn);
            int entries = migrating.get(pfn);
            if (!(d.mapcount(pfn) == count)) {
            out.add("mapcount" + ": " + "pfn 0x" + Long.toHexString(pfn) + " has mapcount " + d.mapcount(pfn) + " but " + count + " entries map it"
                    + (entries > 0 ? " (and " + entries + " migration entries, which hold none)" : ""));
        }
            long head = d.folio(pfn);
            if ((d.flags(head) & FrameFlags.LARGE_RMAPPABLE) != 0) {
                folioMaps.addToValue(head, count); // its references are the folio's: checked below, once
                return;
            }
            // a migration in progress holds its isolation reference on the locked page
            boolean isolated = entries > 0 && (d.flags(pfn) & FrameFlags.LOCKED) != 0;
            int expected = count + (cached.contains(pfn) ? 1 : 0) + (isolated ? 1 : 0) + speculativeRefs.applyAsInt(pfn)
                    + swap.cacheRefs(pfn);
            if (!(d.refcount(pfn) == expected)) {
            out.add("refcount" + ": " + "pfn 0x" + Long.toHexString(pfn) + " has refcount " + d.refcount(pfn) + " but " + count + " mappings" + (cached.contains(pfn) ? " and the page cache" : "")
                    + (entries > 0 ? " (" + entries + " migration entries hold none" + (isolated ? "; the migration's isolation holds one" : "") + ")" : ""));
        }
        });
        checkHugePages(folioMaps, migrating, out);
        cached.forEach(pfn -> {
            if (!leaves.containsKey(pfn)) {
                if (!(d.mapcount(pfn) == 0 && d.refcount(pfn) == 1 + speculativeRefs.applyAsInt(pfn))) {
            out.add("page cache" + ": " + "unmapped cached pfn 0x" + Long.toHexString(pfn) + " has mapcount " + d.mapcount(pfn) + " and refcount " + d.refcount(pfn));
        }
            }
        });
        swap.checkSlots(leaves, out);
        checkPools(out);
        checkFreeLists(out);
        checkUnreferenced(migrating, out);
        TlbRules tlbs = new TlbRules(memory, spaces, cpus);
        tlbs.checkTlbs(out);
        tlbs.checkPagingStructureCaches(out);
        return out;
    }

    /**
     * A transparent huge page holds one reference per PMD and per PTE entry mapping it (and per
     * speculative reference on its head); its entire mapcount counts the PMD entries.
     */
    private void checkHugePages(LongIntHashMap folioMaps, LongIntHashMap migrating, List<String> out) {
        LongHashSet heads = new LongHashSet(entire.keySet());
        heads.addAll(folioMaps.keySet());
        heads.forEach(head -> {
            int pmds = entire.get(head);
            if (d.entireMapcount(head) != pmds) {
                out.add("mapcount: huge page pfn 0x" + Long.toHexString(head) + " has entire mapcount "
                        + d.entireMapcount(head) + " but " + pmds + " PMD entries map it");
            }
            // a migration in progress holds its isolation reference on the locked page
            boolean isolated = migrating.get(head) > 0 && (d.flags(head) & FrameFlags.LOCKED) != 0;
            int expected = pmds + folioMaps.get(head) + (isolated ? 1 : 0) + speculativeRefs.applyAsInt(head);
            if (d.refcount(head) != expected) {
                out.add("refcount: huge page pfn 0x" + Long.toHexString(head) + " has refcount " + d.refcount(head) + " but "
                        + pmds + " PMD and " + folioMaps.get(head) + " PTE mappings");
            }
        });
    }

    /**
     * The tables deposited with a PMD table for its huge entries: each is a page table of the
     * address space; returns how many.
     */
    private int countDeposits(SimAddressSpace mm, long pmdTable, LongHashSet counted, EntryRules.MmCount c, List<String> out) {
        int n = 0;
        for (long dep = d.mapping(pmdTable) - 1; dep >= 0 && n <= Level.ENTRIES; dep = d.mapping(dep) - 1) {
            n++;
            c.tables++;
            counted.add(dep);
            if ((d.flags(dep) & (FrameFlags.PGTABLE | FrameFlags.ALLOCATED)) != (FrameFlags.PGTABLE | FrameFlags.ALLOCATED)) {
                out.add("deposit: " + mm + " deposited pfn 0x" + Long.toHexString(dep) + " with PMD table pfn 0x"
                        + Long.toHexString(pmdTable) + " but it is " + d.describe(dep));
            }
        }
        return n;
    }

    private void walk(SimAddressSpace mm, RawPageTable t, long tablePfn, Level level, long base, LongIntHashMap leaves,
                      LongIntHashMap migrating, LongIntHashMap pudRefs, LongHashSet counted, EntryRules.MmCount c, List<String> out) {
        c.tables++;
        if (level == Level.PMD) {
            c.pmdTables++;
        }
        if (!((d.flags(tablePfn) & (FrameFlags.PGTABLE | FrameFlags.ALLOCATED)) == (FrameFlags.PGTABLE | FrameFlags.ALLOCATED))) {
            out.add("table frame" + ": " + mm + " uses pfn 0x" + Long.toHexString(tablePfn) + " as a " + level + " table but it is " + d.describe(tablePfn));
        }
        boolean countLeaves = counted.add(tablePfn);
        int deposits = level == Level.PMD ? countDeposits(mm, tablePfn, counted, c, out) : 0;
        int hugeEntries = 0;
        long limit = t.mode().userAddressLimit();
        long[] entries = t.readTable(tablePfn);
        for (int i = 0; i < Level.ENTRIES; i++) {
            long va = base + ((long) i << level.shift());
            if (va >= limit) {
                break;
            }
            long e = entries[i];
            if (Pte.isNone(e)) {
                continue;
            }
            boolean leaf = level == Level.PTE || (Pte.isPresent(e) && Pte.isLeaf(e, level)) || !Pte.isPresent(e);
            if (!leaf) {
                long child = Pte.pfn(e);
                if (level == Level.PUD) {
                    pudRefs.addToValue(child, 1);
                }
                walk(mm, t, child, level.below(), va, leaves, migrating, pudRefs, counted, c, out);
                continue;
            }
            PageSize size = level.leafSize();
            if (size != null && MigrationEntry.isMigration(e)) {
                long target = MigrationEntry.pfn(e);
                VmArea mv = level == Level.PMD ? mm.vma(va) : null;
                if (mv != null && !mv.kind().isHugetlb()) {
                    hugeEntries++; // a huge page's PMD migration entry keeps its deposit
                }
                if (leafRules.checkMigrationEntry(mm, va, size, target, out, c) && countLeaves) {
                    migrating.addToValue(d.folio(target), 1); // entries to pages of a huge page count for its head
                }
                continue;
            }
            if (size == PageSize.SIZE_4K && SwapCache.isSwapEntry(e)) {
                swap.entry(mm, va, e, countLeaves, out);
                c.swap++;
                continue;
            }
            if (size == null || !Pte.isPresent(e)) {
                out.add("stray entry: " + mm + " has " + Pte.describe(e, level) + " at 0x" + Long.toHexString(va) + " (" + level + ")"
                        + " that is no migration or swap entry");
                continue;
            }
            long pfn = Pte.pfn(e, size);
            VmArea v = level == Level.PMD ? mm.vma(va) : null;
            if (v != null && !v.kind().isHugetlb()) {
                hugeEntries++; // a transparent huge page or the huge zero page: a table is deposited for it
            }
            if (ZeroPage.maps(e)) {
                leafRules.checkZeroPageEntry(mm, va, e, size, pfn, out);
                continue; // no page behind it: no mapcount, no RSS
            }
            leafRules.checkLeaf(mm, va, e, size, pfn, out, c);
            if (countLeaves) {
                (v != null && !v.kind().isHugetlb() ? entire : leaves).addToValue(pfn, 1);
            }
        }
        if (deposits != hugeEntries) {
            out.add("deposit: " + mm + " PMD table pfn 0x" + Long.toHexString(tablePfn) + " has " + deposits
                    + " deposited tables for " + hugeEntries + " huge entries of anonymous memory");
        }
    }

    /**
     * Every allocated frame other than page tables, offlined or poisoned frames and free pool pages
     * holds a reference, or is held by the migration entries that point at it; anything else has
     * leaked. Scans only the materialised descriptor sections, where every used frame lies.
     */
    private void checkUnreferenced(LongIntHashMap migrating, List<String> out) {
        FrameDescriptors fd = d;
        int skip = FrameFlags.PGTABLE | FrameFlags.RESERVED | FrameFlags.HWPOISON;
        long count = fd.frameCount();
        // Block by block: an allocated head is skipped with its whole order, so a pool of huge
        // pages costs one look per page, and sections never written cost nothing.
        for (long pfn = 0; pfn < count; ) {
            if ((pfn & (FrameDescriptors.SECTION_FRAMES - 1)) == 0 && !fd.isMaterialised(pfn)) {
                pfn += FrameDescriptors.SECTION_FRAMES;
                continue;
            }
            int flags = fd.flags(pfn);
            if ((flags & FrameFlags.ALLOCATED) == 0) {
                pfn++;
                continue;
            }
            if ((flags & skip) == 0 && fd.refcount(pfn) == 0 && !migrating.containsKey(pfn)) {
                HugePagePool pool = pools.poolOf(pfn);
                if (pool == null || !pool.isFree(pfn)) {
                    out.add("unreferenced frame: " + fd.describe(pfn) + " is allocated, but no reference and no migration entry"
                            + " holds it");
                }
            }
            pfn += 1L << fd.order(pfn);
        }
    }

    private void checkPools(List<String> out) {
        for (PageSize size : new PageSize[] {PageSize.SIZE_2M, PageSize.SIZE_1G}) {
            HugePagePool pool = pools.pool(size);
            long reserved = 0;
            for (HugetlbFileImpl file : hugetlbfs.inodes()) {
                if (file.pageSize() == size) {
                    reserved += file.reservedIndexes().size();
                }
            }
            for (SimAddressSpace mm : spaces) {
                for (VmArea v : mm.vmaAreas()) {
                    if (v.kind() == VmaKind.HUGETLB_PRIVATE && v.reservationOwner() && v.pageSize() == size) {
                        reserved += HugetlbReservation.privateReserved(v, v.start(), v.end());
                    }
                }
            }
            if (!(pool.reserved() == reserved)) {
            out.add("pool reservations" + ": " + size.label() + " pool reserves " + pool.reserved() + " pages but files and private mappings hold " + reserved);
        }
            for (long pfn : pool.freeList()) {
                if (!(d.refcount(pfn) == 0 && d.mapcount(pfn) == 0)) {
            out.add("free list" + ": " + "free " + size.label() + " pool page 0x" + Long.toHexString(pfn) + " is in use: " + d.describe(pfn));
        }
            }
        }
    }

    private void checkFreeLists(List<String> out) {
        for (int n = 0; n < memory.nodes().size(); n++) {
            BuddyAllocator a = memory.allocator(n);
            for (int order = 0; order <= BuddyAllocator.MAX_ORDER; order++) {
                for (long head : a.freeBlockHeads(order)) {
                    if (!((d.flags(head) & FrameFlags.ALLOCATED) == 0)) {
            out.add("free list" + ": " + "node " + n + " lists pfn 0x" + Long.toHexString(head) + " (order " + order + ") as free but it is " + d.describe(head));
        }
                }
            }
        }
    }
}
