package org.vmcore.x86.internal;

import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * The page-table operations of transparent huge pages on one {@link RawPageTable}, each under the
 * tree's monitor: the PTE tables deposited with huge PMD entries (pgtable_trans_huge_deposit and
 * withdraw), the PMD slot of a huge fault allocated with its deposit, a huge entry split into its
 * deposited table (__split_huge_pmd_locked), and a PTE table swapped for a huge entry by a
 * collapse (pmdp_collapse_flush, then the new entry with the old table as its deposit).
 */
public final class HugePmdTables {
    private final RawPageTable table;
    private final TablePages tables;

    HugePmdTables(RawPageTable table, TablePages tables) {
        this.table = table;
        this.tables = tables;
    }

    /**
     * The PMD slot for {@code va}, allocating the tables above it that are missing, with a PTE
     * table deposited with its PMD table (pte_alloc_one before pmd_alloc, as
     * do_huge_pmd_anonymous_page takes it): all or nothing.
     *
     * @param va the virtual address, canonical and 2 MiB aligned
     * @return the PMD slot's physical address
     * @throws OutOfMemoryException if a table cannot be allocated (nothing is changed)
     */
    public long allocPmdSlotWithDeposit(long va) {
        synchronized (table) {
            table.ensureAlive();
            table.checkLeafAddress(va, PageSize.SIZE_2M);
            long deposit = tables.allocateUnlinked();
            long slot;
            try {
                slot = table.slotForWrite(va, Level.PMD);
            } catch (RuntimeException e) {
                tables.freeUnlinked(deposit);
                throw e;
            }
            tables.push(slot >>> 12, deposit);
            return slot;
        }
    }

    /**
     * pmdp_collapse_flush's first half: the PMD slot, pointing at a PTE table, is cleared, so that
     * no walk reaches the table any more; the table stays the tree's.
     *
     * @param pmdSlot the PMD slot
     * @return the table it pointed at
     * @throws InvalidArgumentException if the slot does not point to a table
     */
    public long detachTable(long pmdSlot) {
        synchronized (table) {
            table.ensureAlive();
            long e = table.readSlot(pmdSlot);
            if (!RawPageTable.isTablePointer(e, Level.PMD) || !table.compareAndSetSlot(pmdSlot, e, 0)) {
                throw new InvalidArgumentException("pmdSlot", pmdSlot, "must point to a PTE table (entry " + Pte.describe(e, Level.PMD) + ")");
            }
            return Pte.pfn(e);
        }
    }

    /**
     * Puts back a table {@link #detachTable} took (a collapse that gave up).
     *
     * @param pmdSlot the empty PMD slot
     * @param tablePfn the detached table
     */
    public void reattachTable(long pmdSlot, long tablePfn) {
        synchronized (table) {
            table.ensureAlive();
            if (!table.compareAndSetSlot(pmdSlot, 0, Pte.table(tablePfn))) {
                throw new IllegalStateException("PMD slot 0x" + Long.toHexString(pmdSlot) + " was filled while its table was detached");
            }
        }
    }

    /**
     * pgtable_trans_huge_withdraw: takes one table deposited with the PMD table mapping {@code va};
     * it stays counted until {@link #splitLeaf} links it or {@link #freeWithdrawn} frees it.
     *
     * @param va an address whose PMD table exists
     * @return the table's frame, or -1 when none is deposited
     */
    public long withdrawTable(long va) {
        synchronized (table) {
            table.ensureAlive();
            return tables.withdraw(pmdTable(va));
        }
    }

    /**
     * Deposits a table withdrawn before (from this tree) with the PMD table mapping {@code va}:
     * move_huge_pmd carries the deposit along with the entry.
     *
     * @param va an address whose PMD table exists
     * @param tablePfn a table from {@link #withdrawTable}
     */
    public void redepositTable(long va, long tablePfn) {
        synchronized (table) {
            table.ensureAlive();
            tables.push(pmdTable(va), tablePfn);
        }
    }

    /**
     * Frees a table from {@link #withdrawTable} (zap_deposited_table).
     *
     * @param tablePfn the withdrawn table
     */
    public void freeWithdrawn(long tablePfn) {
        synchronized (table) {
            tables.freeUnlinked(tablePfn);
        }
    }

    /**
     * __split_huge_pmd_locked's last step: writes {@code ptes} into the withdrawn table and points
     * the PMD slot at it in place of {@code expected}. The accessed and dirty bits a CPU set on the
     * huge entry meanwhile go to every PTE, as pmdp_invalidate hands them on.
     *
     * @param pmdSlot the PMD slot holding the huge entry
     * @param expected the huge entry the caller read under the PMD lock
     * @param tablePfn a table from {@link #withdrawTable}
     * @param ptes the 512 entries, in address order (the A/D bits gained are added to them in place)
     * @return false, changing nothing, when the slot no longer holds {@code expected} (A and D aside)
     */
    public boolean splitLeaf(long pmdSlot, long expected, long tablePfn, long[] ptes) {
        synchronized (table) {
            table.ensureAlive();
            long ad = Pte.ACCESSED | Pte.DIRTY;
            while (true) {
                long cur = table.readSlot(pmdSlot);
                if ((cur & ~ad) != (expected & ~ad)) {
                    return false;
                }
                long gained = cur & ad & ~expected;
                for (int i = 0; gained != 0 && i < Level.ENTRIES; i++) {
                    ptes[i] |= gained;
                }
                TableMemory.writeUnlinked(table.contents, tablePfn, ptes);
                if (table.compareAndSetSlot(pmdSlot, cur, Pte.table(tablePfn))) {
                    return true;
                }
            }
        }
    }

    /**
     * collapse_huge_page's end: the empty PMD slot (its table {@link #detachTable detached}) gets
     * the huge {@code leaf}, and the old table becomes its deposit (its contents are left as they
     * were: nothing reads a deposit until a split rewrites it).
     *
     * @param pmdSlot the empty PMD slot
     * @param leaf the huge entry
     * @param tablePfn the detached table
     */
    public void installCollapsed(long pmdSlot, long leaf, long tablePfn) {
        synchronized (table) {
            table.ensureAlive();
            if (!table.compareAndSetSlot(pmdSlot, 0, leaf)) {
                throw new IllegalStateException("PMD slot 0x" + Long.toHexString(pmdSlot) + " was filled while its table was detached");
            }
            tables.push(pmdSlot >>> 12, tablePfn);
        }
    }

    private long pmdTable(long va) {
        long slot = table.slot(va, Level.PMD);
        if (slot < 0) {
            throw new InvalidArgumentException("va", va, "must have a PMD table");
        }
        return slot >>> 12;
    }
}
