package org.vmcore.impl.vma;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * The i_mmap interval tree of a file: its VMAs keyed by the page-offset range
 * {@code [vm_pgoff, vm_pgoff + pages - 1]}. It is kept as an array sorted by first offset
 * (ties in insertion order) with a max-of-last-offset segment tree over it, so a stabbing query
 * costs O(log n + k). Changes rebuild the arrays: VMAs change far less often than they are
 * queried.
 */
public final class VmaIntervalTree {
    private final List<VmArea> sorted = new ArrayList<>();
    private long[] first = new long[0];
    private long[] last = new long[0];
    private long[] maxLast = new long[0];

    public void insert(VmArea vma) {
        int i = 0;
        while (i < sorted.size() && sorted.get(i).pgoff() <= vma.pgoff()) {
            i++;
        }
        sorted.add(i, vma);
        rebuild();
    }

    public void remove(VmArea vma) {
        if (sorted.remove(vma)) {
            rebuild();
        }
    }

    /** Re-sorts after a VMA's range changed in place (split, merge). */
    public void update() {
        sorted.sort((a, b) -> Long.compare(a.pgoff(), b.pgoff()));
        rebuild();
    }

    public int size() {
        return sorted.size();
    }

    public boolean isEmpty() {
        return sorted.isEmpty();
    }

    /** Calls {@code action} for every VMA whose offset range meets {@code [from, to]}, in tree order. */
    public void forEachOverlapping(long from, long to, Consumer<VmArea> action) {
        int n = sorted.size();
        if (n == 0) {
            return;
        }
        // Only VMAs starting at or before `to` can overlap: a prefix of the sorted array.
        int lo = 0;
        int hi = n;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (first[mid] <= to) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        visit(1, 0, n, lo, from, action);
    }

    /** Every VMA overlapping {@code [from, to]}, in tree order. */
    public List<VmArea> overlapping(long from, long to) {
        List<VmArea> out = new ArrayList<>();
        forEachOverlapping(from, to, out::add);
        return out;
    }

    private void visit(int node, int lo, int hi, int prefix, long from, Consumer<VmArea> action) {
        if (lo >= prefix || maxLast[node] < from) {
            return;
        }
        if (hi - lo == 1) {
            action.accept(sorted.get(lo));
            return;
        }
        int mid = (lo + hi) >>> 1;
        visit(2 * node, lo, mid, prefix, from, action);
        visit(2 * node + 1, mid, hi, prefix, from, action);
    }

    private void rebuild() {
        int n = sorted.size();
        first = new long[n];
        last = new long[n];
        for (int i = 0; i < n; i++) {
            VmArea v = sorted.get(i);
            first[i] = v.pgoff();
            last[i] = v.pgoff() + v.pages() - 1;
        }
        maxLast = new long[Math.max(1, 4 * n)];
        if (n > 0) {
            build(1, 0, n);
        }
    }

    private long build(int node, int lo, int hi) {
        if (hi - lo == 1) {
            return maxLast[node] = last[lo];
        }
        int mid = (lo + hi) >>> 1;
        return maxLast[node] = Math.max(build(2 * node, lo, mid), build(2 * node + 1, mid, hi));
    }
}
