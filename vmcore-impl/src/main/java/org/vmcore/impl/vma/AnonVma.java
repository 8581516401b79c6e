package org.vmcore.impl.vma;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.impl.lock.LockClass;
import org.vmcore.impl.lock.RwSem;

/**
 * The kernel's anon_vma: the set of VMAs that may map the anonymous pages created under it.
 * A forked child's VMA is linked into every anon_vma its parent's VMA was linked into
 * (anon_vma_clone) and gets a new anon_vma of its own whose root is the family's root.
 */
public final class AnonVma implements MappingOwner {
    private final long id;
    private final AnonVma root;
    /** Lock class of every anon_vma's rwsem (the root's guards the family). */
    public static final LockClass ANON_VMA = LockClass.of("anon_vma");

    private final List<VmArea> vmas = new ArrayList<>();
    private final RwSem rwsem; // the root's own; the others share it, as anon_vma_lock_write takes root->rwsem

    AnonVma(long id, AnonVma parent) {
        this.id = id;
        this.root = parent == null ? this : parent.root;
        this.rwsem = parent == null ? new RwSem(ANON_VMA) : root.rwsem;
    }

    /** The family's lock (root->rwsem): write to change a chain, read to walk it. */
    public RwSem rwsem() {
        return rwsem;
    }

    /** The identifier stored in a page's mapping field (with the anon bit). */
    @Override
    public long id() {
        return id;
    }

    public AnonVma root() {
        return root;
    }

    /** The VMAs linked to this anon_vma, in link order (the anon_vma_chain). */
    public List<VmArea> vmas() {
        return vmas;
    }

    /** Links vma into this anon_vma (anon_vma_chain_link), under the family's lock. */
    public void link(VmArea vma) {
        rwsem.downWrite();
        try {
            vmas.add(vma);
        } finally {
            rwsem.upWrite();
        }
    }

    /** Unlinks vma (unlink_anon_vmas), under the family's lock. */
    public void unlink(VmArea vma) {
        rwsem.downWrite();
        try {
            vmas.remove(vma);
        } finally {
            rwsem.upWrite();
        }
    }
}
