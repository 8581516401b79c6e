package org.vmcore.bench.x86;

import java.util.Random;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.PageTable;
import org.vmcore.x86.pgtable.Pte;

/** Page tables with many pages mapped, and the addresses to walk them in, for the benchmarks. */
final class MappedTables {
    static final long BASE = 0x0000_1000_0000_0000L;
    static final long USER_RW = Pte.PRESENT | Pte.RW | Pte.USER;

    final PhysicalMemory memory;
    final PageTable table;

    MappedTables(long memoryBytes, PagingMode mode) {
        memory = new PhysicalMemory(memoryBytes);
        table = new PageTable(memory, mode, 0);
    }

    /**
     * Maps {@code pages} pages of {@code size} from {@link #BASE} on, all to distinct frames where
     * memory allows, with A already set, as after a first touch: walks of them are read-only,
     * and a setup needs no walks to get there (a million failing first walks would teach the
     * JIT that the walker's fast path fails).
     */
    void map(int pages, PageSize size) {
        long framesPerPage = size.frames();
        long dataFrames = Math.min((long) pages * framesPerPage, memory.frameCount() / 2) & -(1L << 18);
        long first = -1;
        for (long allocated = 0; allocated < dataFrames; allocated += 1L << 18) {
            long pfn = memory.allocate(0, 18, false);
            first = first < 0 ? pfn : first;
        }
        long span = Math.max(dataFrames, framesPerPage);
        for (long i = 0; i < pages; i++) {
            long pfn = first + ((i * framesPerPage) % span);
            table.map(BASE + i * size.bytes(), pfn, size, USER_RW | Pte.ACCESSED);
        }
    }

    /** Addresses of the pages in order, or in a seeded random order; each with an in-page offset. */
    static long[] addresses(int pages, PageSize size, boolean random, long seed) {
        long[] addresses = new long[pages];
        for (int i = 0; i < pages; i++) {
            addresses[i] = BASE + i * size.bytes() + 0x18;
        }
        if (random) {
            Random rng = new Random(seed);
            for (int i = pages - 1; i > 0; i--) {
                int j = rng.nextInt(i + 1);
                long t = addresses[i];
                addresses[i] = addresses[j];
                addresses[j] = t;
            }
        }
        return addresses;
    }
}
