package org.vmcore.x86.mem;

/**
 * One NUMA node: a contiguous range of 4 KiB frames.
 *
 * @param id       node number, from 0
 * @param startPfn first frame number of the node
 * @param frames   number of 4 KiB frames
 */
public record NumaNode(int id, long startPfn, long frames) {
    /**
     * One past the node's last frame number.
     *
     * @return {@code startPfn + frames}
     */
    public long endPfn() {
        return startPfn + frames;
    }

    /**
     * Whether {@code pfn} belongs to this node.
     *
     * @param pfn a frame number
     * @return true when {@code startPfn <= pfn < endPfn()}
     */
    public boolean contains(long pfn) {
        return pfn >= startPfn && pfn < endPfn();
    }

    /**
     * Size of the node in bytes.
     *
     * @return the node's frames times 4096
     */
    public long bytes() {
        return frames << 12;
    }
}
