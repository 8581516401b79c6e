package org.vmcore.api;

/**
 * The khugepaged thread, driven by the caller: each {@link #scan} is one of its wake-ups. It
 * visits, address space by address space, the 2 MiB-aligned ranges of every private anonymous VMA
 * that may have transparent huge pages ({@link ThpMode#ALWAYS}, or {@link ThpMode#MADVISE} and
 * {@link Advice#HUGEPAGE}) and collapses those whose 4 KiB pages qualify into huge pages (counted
 * in thp_collapse_alloc), going on from where the previous scan stopped.
 *
 * <p>A range qualifies when its page table maps at least one private anonymous 4 KiB page, at
 * most half of them shared with another process, nothing else but the zero page or empty
 * entries, no page under migration or held by anything but its mappings, and a 2 MiB block is
 * free. {@link Advice#COLLAPSE} collapses a range of one address space now, whatever the mode.
 */
public interface Khugepaged {
    /**
     * Scans up to {@code ranges} 2 MiB ranges (khugepaged's pages_to_scan / 512) and collapses
     * those that qualify. A full pass over every address space ends the scan early; the next call
     * starts a new pass.
     *
     * @param ranges how many ranges to visit, 1 or more
     * @return how many ranges were collapsed into huge pages
     * @throws InvalidArgumentException if {@code ranges} is below 1
     * @throws ClosedException if the machine is closed
     */
    int scan(int ranges);
}
