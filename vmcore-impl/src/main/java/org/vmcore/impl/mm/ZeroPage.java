package org.vmcore.impl.mm;

import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.Pte;

/**
 * The shared zero page (ZERO_PAGE, my_zero_pfn): one reserved frame of zeros that every read
 * fault of private anonymous memory maps read-only (do_anonymous_page), so that memory which is
 * only read costs no page. Its entries carry the special bit (pte_mkspecial): vm_normal_page
 * finds no page behind them, so they hold no mapcount and no reference, count in no RSS, are
 * copied by fork as they are, dropped by zap without a put, and never migrated. A write breaks
 * it with a copy-on-write that allocates a zeroed page (wp_page_copy).
 */
public final class ZeroPage {
    private ZeroPage() {
    }

    /**
     * Sets the zero page aside: the last frame of node 0, taken out of the buddy allocator for
     * good and marked reserved (PG_reserved), as the kernel's lies in its image. Not the first
     * frame: physical address 0 reads as "none" in access outcomes, and the first gigabyte of
     * node 0 stays offlinable as before.
     */
    public static long allocate(PhysicalMemory memory) {
        long pfn = memory.nodes().getFirst().endPfn() - 1;
        if (memory.allocator(0).isolateRange(pfn, pfn + 1) != 1) {
            throw new IllegalStateException("the last frame of node 0 (pfn 0x" + Long.toHexString(pfn) + ") is not free for the zero page");
        }
        MemMap d = SharedSecrets.memMap(memory);
        d.setFlags(pfn, FrameFlags.UPTODATE); // isolateRange made it allocated and reserved
        return pfn;
    }

    /** Whether the present leaf {@code e} maps the zero page (a special entry: vmcore makes no other). */
    public static boolean maps(long e) {
        return (e & Pte.SPECIAL) != 0;
    }
}
