package org.vmcore.x86.internal;

import java.util.function.Supplier;
import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * The table pages of one {@link RawPageTable}: allocation of the missing tables on the way to an
 * entry, all or nothing ({@code __pte_alloc} and kin), freeing of tables left empty
 * ({@code free_pgtables}), freeing of the whole tree at exit, and the count of the tree's table
 * pages (the mm's {@code pgtables_bytes} / 4096). A table whose share count is above zero is
 * never freed by one owner.
 *
 * <p>Every method runs under the owner's monitor (the page-table lock).
 */
final class TablePages {
    private final RawPageTable owner;
    private final PageTableFrames frames;
    private final DirectMap contents;
    private final MemMap descriptors;
    private final PagingMode mode;
    private final int node;
    private long count = 1; // the root, allocated by the owner
    private boolean deferring; // inside deferFrees
    private final LongArrayList deferred = new LongArrayList(); // frames freed while deferring

    TablePages(RawPageTable owner, PageTableFrames frames, DirectMap contents, MemMap descriptors, PagingMode mode, int node) {
        this.owner = owner;
        this.frames = frames;
        this.contents = contents;
        this.descriptors = descriptors;
        this.mode = mode;
        this.node = node;
    }

    /** Table pages the tree references, shared ones included. */
    long count() {
        assert Thread.holdsLock(owner);
        return count;
    }

    /** A shared table now counts for this tree too (mm_inc_nr_pmds), or no longer does. */
    void countShared(int delta) {
        assert Thread.holdsLock(owner);
        count += delta;
    }

    /**
     * The slot for va at {@code level}, below the table at {@code tablePfn} of level {@code at},
     * where the entry for va is empty: allocates the {@code level - at} missing tables, all or
     * nothing, and links them in.
     */
    long allocateBelow(long va, long tablePfn, Level at, Level level) {
        assert Thread.holdsLock(owner);
        int missing = level.ordinal() - at.ordinal();
        long[] fresh = new long[missing];
        for (int i = 0; i < missing; i++) {
            long pfn = frames.tryAllocate(node);
            if (pfn < 0) {
                for (int j = 0; j < i; j++) {
                    free(fresh[j]);
                }
                throw new OutOfMemoryException("no free frame on node " + node + " for a page table (needed " + missing + ")");
            }
            init(pfn);
            fresh[i] = pfn;
        }
        for (int i = 0; i < missing; i++, at = at.below()) {
            TableMemory.write(contents, tablePfn, at.index(va), Pte.table(fresh[i]));
            tablePfn = fresh[i];
        }
        return (tablePfn << 12) | ((long) level.index(va) << 3);
    }

    /**
     * pgtable_trans_huge_deposit's list: a PMD table keeps the PTE tables deposited for its huge
     * entries in a list threaded through their descriptors' mapping field (PFN + 1, 0 ending it),
     * as the kernel threads them through the PMD table's page. The tables count as the tree's.
     * This one: a new table, counted, linked nowhere yet.
     */
    long allocateUnlinked() {
        assert Thread.holdsLock(owner);
        long pfn = frames.tryAllocate(node);
        if (pfn < 0) {
            throw new OutOfMemoryException("no free frame on node " + node + " for the page table a huge page deposits");
        }
        init(pfn);
        return pfn;
    }

    /** pgtable_trans_huge_deposit: links a counted table into the deposit list of the PMD table at {@code pmdTablePfn}. */
    void push(long pmdTablePfn, long tablePfn) {
        descriptors.setMapping(tablePfn, descriptors.mapping(pmdTablePfn), 0);
        descriptors.setMapping(pmdTablePfn, tablePfn + 1, 0);
    }

    /** pgtable_trans_huge_withdraw: unlinks one deposited table, still counted; -1 when there is none. */
    long withdraw(long pmdTablePfn) {
        assert Thread.holdsLock(owner);
        long first = descriptors.mapping(pmdTablePfn) - 1;
        if (first < 0) {
            return -1;
        }
        descriptors.setMapping(pmdTablePfn, descriptors.mapping(first), 0);
        descriptors.setMapping(first, 0, 0);
        return first;
    }

    /** Frees a table that is linked nowhere (a withdrawn deposit): no walker can be reading it. */
    void freeUnlinked(long tablePfn) {
        assert Thread.holdsLock(owner);
        frames.account(tablePfn, false);
        count--;
        put(tablePfn);
    }

    /** Tables of level {@code wanted} reachable from the table at tablePfn of level {@code at}. */
    long countTables(long tablePfn, Level at, Level wanted) {
        assert Thread.holdsLock(owner);
        long n = 0;
        Level below = at.below();
        for (int i = 0; i < Level.ENTRIES; i++) {
            long e = TableMemory.read(contents, tablePfn, i);
            if (RawPageTable.isTablePointer(e, at)) {
                n += below == wanted ? 1 : countTables(Pte.pfn(e), below, wanted);
            }
        }
        return n;
    }

    /** free_pgtables over [start, end) below the table at tablePfn, bottom up; shared tables stay. */
    int freeEmpty(long tablePfn, Level level, long base, long start, long end) {
        assert Thread.holdsLock(owner);
        int freed = 0;
        Level below = level.below();
        int first = level.index(start);
        int last = level.index(end - 1);
        for (int i = first; i <= last; i++) {
            long e = TableMemory.read(contents, tablePfn, i);
            if (!RawPageTable.isTablePointer(e, level)) {
                continue;
            }
            long child = Pte.pfn(e);
            if (descriptors.ptShareCount(child) > 0) {
                continue;
            }
            long childBase = signExtend(base + ((long) i << level.shift()));
            if (below != Level.PTE) {
                freed += freeEmpty(child, below, childBase, Math.max(start, childBase),
                        Math.min(end, childBase + level.entrySpan()));
            }
            if (isEmpty(child)) {
                TableMemory.write(contents, tablePfn, i, 0);
                free(child);
                freed++;
            }
        }
        return freed;
    }

    /** Frees the table at tablePfn and everything below it, except shared tables, whose share count drops. */
    void release(long tablePfn, Level level) {
        assert Thread.holdsLock(owner);
        Level below = level.below();
        for (int i = 0; i < Level.ENTRIES && below != null; i++) {
            long e = TableMemory.read(contents, tablePfn, i);
            if (!RawPageTable.isTablePointer(e, level)) {
                continue;
            }
            long child = Pte.pfn(e);
            TableMemory.write(contents, tablePfn, i, 0);
            if (descriptors.ptShareCount(child) > 0) {
                descriptors.addPtShareCount(child, -1); // another address space still uses it
                count--;
            } else {
                release(child, below);
            }
        }
        if (level == Level.PMD) {
            for (long d = withdraw(tablePfn); d >= 0; d = withdraw(tablePfn)) {
                free(d); // tables deposited for huge entries the owner did not zap
            }
        }
        free(tablePfn);
    }

    private void init(long pfn) {
        frames.account(pfn, true);
        count++;
    }

    /**
     * pagetable_free: the table stops being one; its frame goes back (contents stay, like a real
     * freed frame, until the next zeroing allocation) unless another reference holds it, a PFN
     * walker's speculative one, whose last put_page frees it.
     */
    private void free(long pfn) {
        frames.account(pfn, false);
        count--;
        if (deferring) {
            deferred.add(pfn); // given back after the barrier: a lockless walker may still read it
        } else {
            put(pfn);
        }
    }

    private void put(long pfn) {
        if (descriptors.addRefcount(pfn, -1) == 0) {
            frames.memory().free(pfn);
        }
    }

    /**
     * Runs {@code unhook} (which unhooks and frees tables) so that the frames it frees go back only
     * after {@code barrier} has run: tlb_remove_table, which lets a lockless walk that read the old
     * pointer finish before the frame can serve anything else.
     */
    <T> T deferFrees(Supplier<T> unhook, Runnable barrier) {
        assert Thread.holdsLock(owner);
        deferring = true;
        T result;
        try {
            result = unhook.get();
        } finally {
            deferring = false;
        }
        if (!deferred.isEmpty()) {
            barrier.run();
            deferred.forEach(this::put);
            deferred.clear();
        }
        return result;
    }

    private boolean isEmpty(long tablePfn) {
        for (int i = 0; i < Level.ENTRIES; i++) {
            if (!Pte.isNone(TableMemory.read(contents, tablePfn, i))) {
                return false;
            }
        }
        return true;
    }

    private long signExtend(long va) {
        int unused = 64 - mode.virtualAddressBits();
        return (va << unused) >> unused;
    }
}
