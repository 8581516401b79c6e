package org.vmcore.x86.internal;

import org.vmcore.api.PagingMode;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * Renders page tables in the format of the kernel's page-table dump
 * ({@code /sys/kernel/debug/page_tables}): one line per run of adjacent entries at the same
 * level with the same attributes, for example
 *
 * <pre>
 * 0x0000000040000000-0x0000000040200000           2M USR RW         PSE         NX pmd
 * 0x0000000040200000-0x0000000080000000        1022M                               pmd
 * </pre>
 *
 * Columns: address range, size, then USR, RW/ro, PWT, PCD, PSE, PAT, GLB, NX/x for a present
 * entry (blank for an empty or non-present one), then the level. A and D bits do not split
 * runs, as they are not shown.
 */
public final class PtDump {
    private static final String UNITS = "KMGTPE";

    private final StringBuilder out = new StringBuilder();
    private final PagingMode mode;
    private final DirectMap contents;
    private long runStart;
    private Level runLevel;
    private long runKey;
    private boolean inRun;

    private PtDump(PagingMode mode, DirectMap contents) {
        this.mode = mode;
        this.contents = contents;
    }

    /**
     * The dump of the tree under {@code rootPfn} over {@code [start, end)}, which the caller has
     * checked (canonical, 4 KiB aligned, inside one half).
     *
     * @param contents the host pages the tables are read from
     * @param mode the paging mode
     * @param rootPfn the root table's frame
     * @param start the first virtual address
     * @param end one past the last virtual address
     * @return a header line, then one line per run
     */
    public static String dump(DirectMap contents, PagingMode mode, long rootPfn, long start, long end) {
        PtDump dump = new PtDump(mode, contents);
        dump.out.append(start >= 0 ? "---[ User Space ]---\n" : "---[ Kernel Space ]---\n");
        dump.walk(rootPfn, Level.root(mode), 0, start, end);
        dump.flush(end);
        return dump.out.toString();
    }

    private void walk(long tablePfn, Level level, long base, long start, long end) {
        int unused = 64 - mode.virtualAddressBits();
        for (int i = level.index(start); i <= level.index(end - 1); i++) {
            long entryStart = ((base + ((long) i << level.shift())) << unused) >> unused;
            long from = Math.max(start, entryStart);
            long e = TableMemory.read(contents, tablePfn, i);
            if (RawPageTable.isTablePointer(e, level)) {
                walk(Pte.pfn(e), level.below(), entryStart, from, Math.min(end, entryStart + level.entrySpan()));
            } else {
                note(from, level, e);
            }
        }
    }

    private void note(long address, Level level, long entry) {
        long key = (entry & Pte.PRESENT) == 0 ? 0 : entry & shownBits(level);
        if (inRun && level == runLevel && key == runKey) {
            return;
        }
        flush(address);
        inRun = true;
        runStart = address;
        runLevel = level;
        runKey = key;
    }

    private void flush(long end) {
        if (!inRun) {
            return;
        }
        long delta = (end - runStart) >>> 10;
        int unit = 0;
        while ((delta & 1023) == 0 && unit < UNITS.length() - 1) {
            delta >>>= 10;
            unit++;
        }
        out.append(String.format("0x%016x-0x%016x   %9d%c ", runStart, end, delta, UNITS.charAt(unit)));
        out.append(attributes(runKey, runLevel)).append(runLevel.dumpName(mode)).append('\n');
        inRun = false;
    }

    private static long shownBits(Level level) {
        long large = level == Level.PUD || level == Level.PMD ? Pte.PSE | Pte.PAT_LARGE : 0;
        long pat = level == Level.PTE ? Pte.PAT : 0;
        return Pte.PRESENT | Pte.USER | Pte.RW | Pte.PWT | Pte.PCD | Pte.GLOBAL | Pte.NX | large | pat;
    }

    private static String attributes(long key, Level level) {
        if ((key & Pte.PRESENT) == 0) {
            return " ".repeat(30);
        }
        boolean huge = level == Level.PUD || level == Level.PMD;
        return ((key & Pte.USER) != 0 ? "USR " : "    ")
                + ((key & Pte.RW) != 0 ? "RW " : "ro ")
                + ((key & Pte.PWT) != 0 ? "PWT " : "    ")
                + ((key & Pte.PCD) != 0 ? "PCD " : "    ")
                + (huge && (key & Pte.PSE) != 0 ? "PSE " : "    ")
                + ((huge ? (key & Pte.PAT_LARGE) != 0 : level == Level.PTE && (key & Pte.PAT) != 0) ? "PAT " : "    ")
                + ((key & Pte.GLOBAL) != 0 ? "GLB " : "    ")
                + ((key & Pte.NX) != 0 ? "NX " : "x  ");
    }
}
