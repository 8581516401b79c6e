package org.vmcore.impl.cpu;

import java.lang.foreign.MemorySegment;
import org.vmcore.api.Access;
import org.vmcore.x86.internal.DirectMap;
import org.vmcore.x86.mem.FrameContents;

/**
 * The accesses of one instruction: a load or store of up to 8 bytes (split into bytes when it
 * crosses a page), a precise page-crossing write, and a string copy a page at a time. Each runs
 * TLB, walk, fault, retry through the {@link Mmu} inside the {@link CpuHandshake}, and steps out
 * of the handshake for a fault, which may block on the machine lock.
 */
final class DataAccess {
    private final CpuHandshake handshake;
    private final Mmu mmu;
    private final FrameContents contents;

    DataAccess(CpuHandshake handshake, Mmu mmu) {
        this.handshake = handshake;
        this.mmu = mmu;
        this.contents = mmu.contents();
    }

    /** A load ({@code READ}) or an instruction fetch ({@code EXECUTE}, checked against NX) of up to 8 bytes. */
    long load(long va, int width, Access access) {
        if ((va & 0xFFF) + width > 4096) {
            byte[] bytes = new byte[width]; // a page-crossing load is rare: the in-page path stays allocation-free
            copy(va, bytes, 0, width, access); // one translation per page, as the hardware makes
            long v = 0;
            for (int i = 0; i < width; i++) {
                v |= (bytes[i] & 0xFFL) << (8 * i);
            }
            return v;
        }
        for (int tries = 0; ; tries++) {
            handshake.enter();
            try {
                MemorySegment page = access == Access.READ && mmu.running() ? mmu.l1HitPageCounted(va, false) : null;
                if (page != null) {
                    return DirectMap.readPage(page, va & 0xFFF, width);
                }
                long pa = mmu.translate(va, access);
                if (pa >= 0) {
                    return mmu.readPhys(pa, width);
                }
            } finally {
                handshake.leave();
            }
            mmu.handleFault(va, access, tries);
        }
    }

    void store(long va, int width, long value) {
        if ((va & 0xFFF) + width > 4096) {
            byte[] bytes = new byte[width]; // a page-crossing store is rare: the in-page path stays allocation-free
            for (int i = 0; i < width; i++) {
                bytes[i] = (byte) (value >>> (8 * i));
            }
            writePrecise(va, bytes, 0, width);
            return;
        }
        for (int tries = 0; ; tries++) {
            handshake.enter();
            try {
                MemorySegment page = mmu.running() ? mmu.l1HitPageCounted(va, true) : null;
                if (page != null) {
                    DirectMap.writePage(page, va & 0xFFF, width, value);
                    return;
                }
                long pa = mmu.translate(va, Access.WRITE);
                if (pa >= 0) {
                    mmu.writePhys(pa, width, value);
                    return;
                }
            } finally {
                handshake.leave();
            }
            mmu.handleFault(va, Access.WRITE, tries);
        }
    }

    /** A write that stays in one page copies; one that crosses pages is made precise. */
    void write(long va, byte[] src, int offset, int length) {
        if ((va & 0xFFF) + length > 4096) {
            writePrecise(va, src, offset, length);
        } else {
            copy(va, src, offset, length, Access.WRITE);
        }
    }

    /**
     * Between two steps of a window: steps out and back in when a flusher waits (an acquire
     * load, no fence, when none does). Returns whether it stepped out.
     */
    boolean letFlushesIn() {
        if (!handshake.flushWaiting()) {
            return false;
        }
        handshake.leave();
        handshake.enter();
        return true;
    }

    /** Handles a fault met inside a window outside it: the fault path may block on the machine lock. */
    void faultOutsideWindow(long va, Access access, int tries) {
        handshake.leave();
        mmu.handleFault(va, access, tries);
        handshake.enter();
    }

    /**
     * Copies bytes a page at a time inside one handshake window, as a string instruction moves
     * them: into {@code buffer} for a READ or EXECUTE, out of it for a WRITE.
     */
    void copy(long va, byte[] buffer, int offset, int length, Access access) {
        boolean write = access == Access.WRITE;
        int done = 0;
        int tries = 0;
        handshake.enter();
        try {
            while (done < length) {
                letFlushesIn();
                long at = va + done;
                int chunk = (int) Math.min(length - done, 4096 - (at & 0xFFF));
                long pa = mmu.translate(at, access);
                if (pa < 0) {
                    faultOutsideWindow(at, access, tries++);
                    continue;
                }
                if (write) {
                    contents.writeBytes(pa, buffer, offset + done, chunk);
                } else {
                    contents.readBytes(pa, buffer, offset + done, chunk);
                }
                done += chunk;
                tries = 0;
            }
        } finally {
            handshake.leave();
        }
    }

    /**
     * A write that crosses pages, made precise as an x86 store is: every page of the range is
     * translated for write (faulting it in where the kernel can) before the first byte lands, so
     * a fault that cannot be resolved writes nothing. The translations are used only if one pass
     * over all pages ran without leaving the handshake window: while the CPU was out (for a fault
     * or a flusher) another CPU may have unmapped a page translated before.
     */
    void writePrecise(long va, byte[] src, int offset, int length) {
        long first = va & ~0xFFFL;
        int pages = (int) (((va & 0xFFF) + length + 0xFFF) >>> 12);
        long[] pas = new long[pages];
        long faultVa = -1;
        int tries = 0;
        handshake.enter();
        try {
            boolean interrupted = true;
            while (interrupted) {
                interrupted = letFlushesIn();
                for (int p = 0; p < pages; ) {
                    long at = p == 0 ? va : first + ((long) p << 12);
                    long pa = mmu.translate(at, Access.WRITE);
                    if (pa >= 0) {
                        pas[p++] = pa;
                        continue;
                    }
                    tries = at == faultVa ? tries + 1 : 0;
                    faultVa = at;
                    faultOutsideWindow(at, Access.WRITE, tries);
                    interrupted = true;
                }
            }
            int done = 0;
            for (int p = 0; p < pages; p++) {
                int chunk = (int) Math.min(length - done, 4096 - (pas[p] & 0xFFF));
                contents.writeBytes(pas[p], src, offset + done, chunk);
                done += chunk;
            }
        } finally {
            handshake.leave();
        }
    }
}
