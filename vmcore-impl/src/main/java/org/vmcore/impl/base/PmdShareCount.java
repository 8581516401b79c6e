package org.vmcore.impl.base;

import org.vmcore.api.MachineConfig;
import org.vmcore.api.Regression;
import org.vmcore.x86.internal.MemMap;

/**
 * Where the sharers of a PMD table are counted: today in the table page's own
 * {@code pt_share_count} ({@link MemMap#ptShareCount}), apart from its refcount; with
 * {@link Regression#PRE_59D9094D}, as before 59d9094df3d7, in the refcount, so that any other
 * reference on the table page counts as a sharer. One of the two is chosen per machine in
 * {@link #of}; both count the sharers beyond the table's owner.
 */
public abstract sealed class PmdShareCount {
    final MemMap descriptors;

    PmdShareCount(MemMap descriptors) {
        this.descriptors = descriptors;
    }

    /** The count {@code config} asks for, over the descriptors {@code descriptors}. */
    public static PmdShareCount of(MachineConfig config, MemMap descriptors) {
        return config.regressions().contains(Regression.PRE_59D9094D) ? new InRefcount(descriptors) : new Independent(descriptors);
    }

    /** PUD entries pointing at the PMD table at {@code tablePfn} beyond the first, as this count believes. */
    public abstract int sharers(long tablePfn);

    /** One more sharer (ptdesc_pmd_pts_inc, or get_page before the fix); returns the new count. */
    public abstract int get(long tablePfn);

    /** One sharer less (ptdesc_pmd_pts_dec, or put_page before the fix); returns the new count. */
    public abstract int put(long tablePfn);

    /** pt_share_count, apart from the refcount (today). */
    static final class Independent extends PmdShareCount {
        Independent(MemMap descriptors) {
            super(descriptors);
        }

        @Override
        public int sharers(long tablePfn) {
            return descriptors.ptShareCount(tablePfn);
        }

        @Override
        public int get(long tablePfn) {
            return descriptors.addPtShareCount(tablePfn, 1);
        }

        @Override
        public int put(long tablePfn) {
            return descriptors.addPtShareCount(tablePfn, -1);
        }
    }

    /** The table page's refcount minus the owner's reference (before 59d9094df3d7). */
    static final class InRefcount extends PmdShareCount {
        InRefcount(MemMap descriptors) {
            super(descriptors);
        }

        @Override
        public int sharers(long tablePfn) {
            return descriptors.refcount(tablePfn) - 1;
        }

        @Override
        public int get(long tablePfn) {
            return descriptors.addRefcount(tablePfn, 1) - 1;
        }

        @Override
        public int put(long tablePfn) {
            return descriptors.addRefcount(tablePfn, -1) - 1;
        }
    }
}
