package org.vmcore.impl.hugetlb;

import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.vmcore.api.OutOfMemoryException;

/**
 * hugetlb_reserve_pages (mm/hugetlb.c) for one mmap of a hugetlbfs file: the pages the mapping
 * will need are reserved from the pool before anything changes, so a failure leaves no trace. A
 * private mapping reserves every page; a shared one only the file indexes that have neither a page
 * nor a reservation yet (the file's region map, here its reserved indexes). If the mmap fails
 * later the reservation is given back (hugetlb_unreserve_pages).
 *
 * <p>It touches the file's reserved indexes and its pool only; callers hold the machine lock.
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
        assert Thread.holdsLock(file.machineLock());
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

    /** Gives back everything this reservation took: the mmap failed before a VMA held any of it. */
    public void cancel() {
        assert Thread.holdsLock(file.machineLock());
        for (int i = 0; i < added.size(); i++) {
            file.reservedIndexes().remove(added.get(i));
        }
        pool.unreserve(need);
    }

    /**
     * The mapping is gone again after its populate failed (its unmap already returned what the VMA
     * held): gives back the file reservations this mmap made that are still there.
     */
    public void releaseFileReservations() {
        assert Thread.holdsLock(file.machineLock());
        long back = 0;
        for (int i = 0; i < added.size(); i++) {
            if (file.reservedIndexes().remove(added.get(i))) {
                back++;
            }
        }
        pool.unreserve(back);
    }
}
