package org.vmcore.impl.vma;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.vmcore.impl.base.MachineLock;

/**
 * One address space's VMAs in address order, with the operations of mm/vma.c: find, the
 * overlapping range, insert and remove (which link and unlink the VMA in its file's i_mmap
 * tree and its anon_vmas), split ({@link #split}) and merge ({@link #mergeAround}). Every change
 * of a VMA's range goes through here, so the i_mmap interval tree is updated in one place.
 *
 * <p>It may touch the VMAs, their anon_vmas and address_spaces, and the {@link MappingRegistry}
 * (an anon_vma left without VMAs is unregistered); nothing of the page tables. Callers hold the
 * machine lock.
 */
public final class VmaTree {
    private final TreeMap<Long, VmArea> vmas = new TreeMap<>();
    private final MachineLock lock;
    private final MappingRegistry registry;

    public VmaTree(MachineLock lock, MappingRegistry registry) {
        this.lock = lock;
        this.registry = registry;
    }

    /** The VMA containing va, or null (find_vma_intersection of one address). */
    public VmArea find(long va) {
        Map.Entry<Long, VmArea> e = vmas.floorEntry(va);
        return e != null && e.getValue().contains(va) ? e.getValue() : null;
    }

    /** VMAs meeting [start, end), in address order. */
    public List<VmArea> overlapping(long start, long end) {
        List<VmArea> out = new ArrayList<>();
        Long from = vmas.floorKey(start);
        for (VmArea v : vmas.tailMap(from == null ? start : from, true).values()) {
            if (v.start() >= end) {
                break;
            }
            if (v.end() > start) {
                out.add(v);
            }
        }
        return out;
    }

    /** The last VMA starting below {@code addr} (vma_prev), or null. */
    public VmArea below(long addr) {
        Map.Entry<Long, VmArea> e = vmas.lowerEntry(addr);
        return e == null ? null : e.getValue();
    }

    /** The first VMA starting at or above {@code addr} (vma_next), or null. */
    public VmArea atOrAbove(long addr) {
        Map.Entry<Long, VmArea> e = vmas.ceilingEntry(addr);
        return e == null ? null : e.getValue();
    }

    /** The VMAs in address order (a live view: do not change the tree while iterating). */
    public Collection<VmArea> all() {
        return vmas.values();
    }

    /** The VMAs from the highest address down (a live view). */
    public Collection<VmArea> descending() {
        return vmas.descendingMap().values();
    }

    public int size() {
        return vmas.size();
    }

    /** Adds v and links it into its file's i_mmap and its anon_vmas (vma_link). */
    public void insert(VmArea v) {
        assert lock.isHeldByCurrentThread();
        vmas.put(v.start(), v);
        if (v.mapping() != null) {
            v.mapping().iMmapRwsem().downWrite();
            try {
                v.mapping().iMmap().insert(v);
            } finally {
                v.mapping().iMmapRwsem().upWrite();
            }
        }
        for (AnonVma a : v.anonChain()) {
            a.link(v);
        }
    }

    /**
     * Removes v and unlinks it from its file's i_mmap and its anon_vmas; an anon_vma left with no
     * VMA is unregistered, since no mapped page can name it any more.
     */
    public void remove(VmArea v) {
        assert lock.isHeldByCurrentThread();
        vmas.remove(v.start());
        v.markDetached(); // before the unlinks, so a walker holding an rmap lock sees it gone or linked
        if (v.mapping() != null) {
            v.mapping().iMmapRwsem().downWrite();
            try {
                v.mapping().iMmap().remove(v);
            } finally {
                v.mapping().iMmapRwsem().upWrite();
            }
        }
        for (AnonVma a : v.anonChain()) {
            a.unlink(v);
            if (a.vmas().isEmpty()) {
                registry.unregister(a.id());
            }
        }
    }

    /**
     * __split_vma: cuts the VMA containing addr so that a VMA starts at addr; nothing happens
     * when one already does. The caller has done what the page tables need first (hugetlb_split).
     */
    public void split(long addr) {
        assert lock.isHeldByCurrentThread();
        VmArea v = find(addr);
        if (v == null || v.start() == addr) {
            return;
        }
        AnonVma locked = lockRmap(v); // rmap walkers see the VMA whole or both halves, never a gap
        try {
            VmArea upper = v.slice(addr, v.end());
            setEnd(v, addr);
            insert(upper);
        } finally {
            unlockRmap(v, locked);
        }
    }

    /**
     * vma_prepare's locks: the file's i_mmap_rwsem, then the anon_vma family's, both for write,
     * so that an rmap walker never sees a VMA's range half moved. Returns the anon_vma whose lock
     * was taken (a merge may give {@code v} one meanwhile), for {@link #unlockRmap}.
     */
    public static AnonVma lockRmap(VmArea v) {
        if (v.mapping() != null) {
            v.mapping().iMmapRwsem().downWrite();
        }
        AnonVma a = v.anonVma();
        if (a != null) {
            a.rwsem().downWrite();
        }
        return a;
    }

    /** Releases what {@link #lockRmap} took. */
    public static void unlockRmap(VmArea v, AnonVma locked) {
        if (locked != null) {
            locked.rwsem().upWrite();
        }
        if (v.mapping() != null) {
            v.mapping().iMmapRwsem().upWrite();
        }
    }

    /** Grows v to end at {@code newEnd} (vma_expand for mremap), the space there free; then merges it as vma_merge would. */
    public VmArea expand(VmArea v, long newEnd) {
        assert lock.isHeldByCurrentThread();
        AnonVma locked = lockRmap(v);
        try {
            setEnd(v, newEnd);
        } finally {
            unlockRmap(v, locked);
        }
        return mergeAround(v);
    }

    /** Merges v with its neighbours where vma_merge would; returns the VMA that now holds v's range. */
    public VmArea mergeAround(VmArea v) {
        assert lock.isHeldByCurrentThread();
        AnonVma locked = lockRmap(v); // merged neighbours map the same file and anon_vma family: one lock of each covers it
        try {
            return mergeLocked(v);
        } finally {
            unlockRmap(v, locked);
        }
    }

    private VmArea mergeLocked(VmArea v) {
        VmArea prev = below(v.start());
        VmArea result = v;
        if (prev != null && prev.canMergeWith(v)) {
            prev.adoptAnonVma(v); // before v goes, so its anon_vma never has no VMA
            remove(v);
            setEnd(prev, v.end());
            result = prev;
        }
        Map.Entry<Long, VmArea> nextEntry = vmas.higherEntry(result.start());
        if (nextEntry != null && result.canMergeWith(nextEntry.getValue())) {
            VmArea next = nextEntry.getValue();
            result.adoptAnonVma(next);
            remove(next);
            setEnd(result, next.end());
        }
        return result;
    }

    /**
     * find_mergeable_anon_vma: the anon_vma of a neighbour (the next, then the previous VMA) that
     * v could merge with but for its protection, if that neighbour's chain is singular (a forked
     * VMA's is not); else null.
     */
    public AnonVma mergeableAnonVma(VmArea v) {
        VmArea next = find(v.end());
        if (next != null && v.anonVmaCompatible(next) && next.anonVma() != null && next.anonChain().size() == 1) {
            return next.anonVma();
        }
        VmArea prev = v.start() == 0 ? null : find(v.start() - 1);
        if (prev != null && prev.anonVmaCompatible(v) && prev.anonVma() != null && prev.anonChain().size() == 1) {
            return prev.anonVma();
        }
        return null;
    }

    /** Moves v's end and keeps its file's i_mmap tree in order (vma_set_range + the interval-tree update). */
    private void setEnd(VmArea v, long end) {
        if (v.mapping() == null) {
            v.setEnd(end);
            return;
        }
        v.mapping().iMmapRwsem().downWrite(); // i_mmap walkers read the VMA's range
        try {
            v.setEnd(end);
            v.mapping().iMmap().update();
        } finally {
            v.mapping().iMmapRwsem().upWrite();
        }
    }
}
