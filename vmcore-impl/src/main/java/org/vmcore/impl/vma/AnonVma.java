package org.vmcore.impl.vma;

import java.util.ArrayList;
import java.util.List;

/**
 * The kernel's anon_vma: the set of VMAs that may map the anonymous pages created under it.
 * A forked child's VMA is linked into every anon_vma its parent's VMA was linked into
 * (anon_vma_clone) and gets a new anon_vma of its own whose root is the family's root.
 */
public final class AnonVma implements MappingOwner {
    private final long id;
    private final AnonVma root;
    private final List<VmArea> vmas = new ArrayList<>();

    AnonVma(long id, AnonVma parent) {
        this.id = id;
        this.root = parent == null ? this : parent.root;
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

    public void link(VmArea vma) {
        vmas.add(vma);
    }

    public void unlink(VmArea vma) {
        vmas.remove(vma);
    }
}
