package org.vmcore.x86.internal;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The one arena a simulated machine takes its off-heap memory from. Callers allocate big
 * slabs, never one segment per page; everything is released at once by {@link #close()}.
 */
public final class OffHeap implements AutoCloseable {
    /** Bytes held by every open arena of this process: what closing machines must give back. */
    public static final AtomicLong LIVE = new AtomicLong();
    private final Arena arena = Arena.ofShared();
    private final AtomicLong reserved = new AtomicLong();

    /** An open arena with nothing allocated yet. */
    public OffHeap() {
    }

    /**
     * A zeroed, 4096-byte aligned segment.
     *
     * @param bytes the segment size
     * @return the segment, alive until {@link #close()}
     */
    public MemorySegment allocate(long bytes) {
        MemorySegment segment = arena.allocate(bytes, 4096);
        reserved.addAndGet(bytes);
        LIVE.addAndGet(bytes);
        return segment;
    }

    /**
     * Off-heap bytes reserved so far.
     *
     * @return the byte count
     */
    public long reservedBytes() {
        return reserved.get();
    }

    @Override
    public synchronized void close() {
        if (!arena.scope().isAlive()) {
            return;
        }
        arena.close();
        LIVE.addAndGet(-reserved.getAndSet(0));
    }
}
