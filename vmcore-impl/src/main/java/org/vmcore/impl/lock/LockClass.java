package org.vmcore.impl.lock;

import java.util.Objects;

/**
 * A lock class as lockdep keys it: every mmap_lock is one class, every i_mmap_rwsem another, so
 * an order learned on one pair of instances holds for all of them. {@code subclass} is the
 * nesting level: 0 normally, 1 for SINGLE_DEPTH_NESTING ({@code down_write_nested}); each
 * subclass is a class of its own in the dependency graph, as in the kernel.
 *
 * @param name the class name, as the kernel spells the lock ("mmap_lock", "i_mmap_rwsem")
 * @param subclass the nesting level, 0 or more
 */
public record LockClass(String name, int subclass) {
    /** Checks the components: a non-empty name and a subclass of 0 or more. */
    public LockClass {
        Objects.requireNonNull(name, "name");
        if (name.isEmpty()) {
            throw new IllegalArgumentException("empty lock class name");
        }
        if (subclass < 0) {
            throw new IllegalArgumentException("negative subclass " + subclass + " of " + name);
        }
    }

    /** The class {@code name} at subclass 0. */
    public static LockClass of(String name) {
        return new LockClass(name, 0);
    }

    /** The same class at nesting level {@code subclass} (this one if it is already at it). */
    public LockClass nested(int subclass) {
        return subclass == this.subclass ? this : new LockClass(name, subclass);
    }

    /** The kernel's spelling: "mmap_lock" at subclass 0, "mmap_lock/1" nested. */
    @Override
    public String toString() {
        return subclass == 0 ? name : name + "/" + subclass;
    }
}
