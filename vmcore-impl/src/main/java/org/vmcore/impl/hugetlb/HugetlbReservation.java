package org.vmcore.impl.hugetlb;

import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.MigrationEntry;
import org.vmcore.x86.pgtable.Pte;

/**
 * hugetlb_reserve_pages (mm/hugetlb.c) for one mmap of a hugetlbfs file: the pages the mapping
 * will need are reserved from the pool before anything changes, so a failure leaves no trace. A
 * private mapping reserves every page; a shared one only the file indexes that have neither a page
 * nor a reservation yet (the file's region map, here its reserved indexes). If the mmap fails
 * later the reservation is given back (hugetlb_unreserve_pages).
 *
 * <p>A private mapping's reservations are not kept per index: the VMA that made them is their
 * owner (HPAGE_RESV_OWNER, {@link #markOwner}) and holds one for every huge page inside the file's
 * end that has no anonymous page yet ({@link #privateReserved}); zapping gives them back
 * ({@link #releasePrivate}).
 *
 * <p>It touches the file's reserved indexes, its pool and (to count a private owner's pages) the
 * owner's page table and the frame descriptors; callers hold the machine lock.
 */
public final class HugetlbReservation {
    private final HugetlbFileImpl file;
    private final HugePagePool pool;
    // The file indexes this mmap reserved (shared mappings only).
    private final LongArrayList added = new LongArrayList();
    private final long need;

    private HugetlbReservation(HugetlbFileImpl file, long need) {
        this.file = file;
        this.pool = file.pool();
        this.need = need;
    }

    /**
     * hugetlb_reserve_pages for {@code count} pages of {@code file} from index {@code firstIndex}.
     *
     * @throws OutOfMemoryException if the pool cannot reserve them; nothing changed then
     */
    public static HugetlbReservation reserve(HugetlbFileImpl file, long firstIndex, long count, boolean shared) {
        assert file.machineLock().isHeldByCurrentThread();
        synchronized (file.reservedIndexes()) { // resv_map->lock
            return reserveLocked(file, firstIndex, count, shared);
        }
    }

    private static HugetlbReservation reserveLocked(HugetlbFileImpl file, long firstIndex, long count, boolean shared) {
        long need = count;
        if (shared) {
            need = 0;
            for (long i = firstIndex; i < firstIndex + count; i++) {
                if (file.mapping().find(i) < 0 && !file.reservedIndexes().contains(i)) {
                    need++;
                }
            }
        }
        HugePagePool pool = file.pool();
        if (!pool.reserve(need)) {
            throw new OutOfMemoryException("hugetlb pool of " + file.pageSize().label() + " pages cannot reserve " + need
                    + " pages (" + pool.available() + " free and unreserved)");
        }
        HugetlbReservation r = new HugetlbReservation(file, need);
        if (shared) {
            for (long i = firstIndex; i < firstIndex + count; i++) {
                if (file.mapping().find(i) < 0 && file.reservedIndexes().add(i)) {
                    r.added.add(i);
                }
            }
        }
        return r;
    }

    /** set_vma_resv_flags(HPAGE_RESV_OWNER): the private {@code vma} holds the reservations its mmap made. */
    public static void markOwner(VmArea vma) {
        assert vma.owner().lock().isHeldByCurrentThread();
        vma.setReservationOwner(true);
    }

    /**
     * The reservations the private owner {@code vma} holds over {@code [from, to)}: its huge pages
     * inside the file's end without an anonymous page (a private page under migration is still
     * the owner's, so its slot holds none).
     */
    public static long privateReserved(VmArea vma, long from, long to) {
        return privateReservedBetween(vma, from, to, 0, Math.min(HugetlbFileImpl.of(vma).pageCount(), vma.reservationsEnd()));
    }

    /**
     * As {@link #privateReserved}, counting only the file pages {@code [firstIndex, endIndex)}:
     * what a truncation from {@code firstIndex} takes from a private owner whose file ended at
     * {@code endIndex} (hugetlb_unreserve_pages for the part of the owner's map past the new end).
     */
    public static long privateReservedBetween(VmArea vma, long from, long to, long firstIndex, long endIndex) {
        assert vma.owner().lock().isHeldByCurrentThread();
        HugetlbFileImpl file = HugetlbFileImpl.of(vma);
        MemMap descriptors = file.descriptors();
        RawPageTable table = vma.owner().pageTable();
        PageSize size = vma.pageSize();
        Level leaf = Level.ofLeaf(size);
        long reserved = 0;
        for (long va = from; va < to; va += size.bytes()) {
            long index = vma.hugePageIndex(va);
            if (index < firstIndex || index >= endIndex) {
                continue;
            }
            long slot = table.slot(va, leaf);
            long e = slot < 0 ? 0 : table.readSlot(slot);
            long pfn = Pte.isPresent(e) ? Pte.pfn(e, size) : MigrationEntry.isMigration(e) ? MigrationEntry.pfn(e) : -1;
            if (pfn < 0 || (descriptors.flags(pfn) & FrameFlags.ANON) == 0) {
                reserved++;
            }
        }
        return reserved;
    }

    /** Zapping {@code [from, to)} of the private owner {@code vma} gives its reservations there back to the pool. */
    public static void releasePrivate(VmArea vma, long from, long to) {
        // Bounded by the file's size before a truncation in progress: it may have cut the size
        // already and not yet come to this VMA, and then leaves the VMA's slots to this zap.
        HugetlbFileImpl file = HugetlbFileImpl.of(vma);
        long end = Math.min(vma.reservationsEnd(), Math.max(file.pageCount(), file.truncatingFrom()));
        long back = privateReservedBetween(vma, from, to, 0, end);
        if (from <= vma.start() && to >= vma.end()) {
            vma.setReservationsEnd(0); // the whole VMA gave its reservations back: a truncation gives none
        }
        HugetlbFileImpl.of(vma).pool().unreserve(back);
    }

    /** Gives back everything this reservation took: the mmap failed before a VMA held any of it. */
    public void cancel() {
        assert file.machineLock().isHeldByCurrentThread();
        synchronized (file.reservedIndexes()) {
            for (int i = 0; i < added.size(); i++) {
                file.reservedIndexes().remove(added.get(i));
            }
        }
        pool.unreserve(need);
    }

    /**
     * The mapping is gone again after its populate failed (its unmap already returned what the VMA
     * held): gives back the file reservations this mmap made that are still there.
     */
    public void releaseFileReservations() {
        assert file.machineLock().isHeldByCurrentThread();
        long back = 0;
        synchronized (file.reservedIndexes()) {
            for (int i = 0; i < added.size(); i++) {
                if (file.reservedIndexes().remove(added.get(i))) {
                    back++;
                }
            }
        }
        pool.unreserve(back);
    }
}
