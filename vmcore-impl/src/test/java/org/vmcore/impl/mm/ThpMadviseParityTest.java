package org.vmcore.impl.mm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Advice;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;
import org.vmcore.api.ThpMode;
import org.vmcore.impl.Fixtures;

/**
 * MADV_COLD, MADV_PAGEOUT and MADV_FREE on transparent huge pages against the real kernel: the
 * layouts of docs/kernel-parity/thp_madvise.c, run through the public API on a machine with no
 * swap device, print the lines Linux 6.18 printed on the development machine (test resource
 * kernel-parity/thp_madvise.out): madvise_free_huge_pmd keeps a whole exclusive THP whole and lazy
 * free, a partial range splits it (split_folio), a shared one is left alone, and MADV_PAGEOUT drops
 * a clean lazy-free THP, keeps a written one, and splits any other (thp_swpout_fallback when it
 * covers it whole: folio_alloc_swap refuses a huge page); MADV_COLLAPSE copies a PTE-mapped THP
 * into a new one.
 */
class ThpMadviseParityTest {
    private static final long K4 = 4096;
    private static final long H = 2 * MIB;
    private static final int FIXED = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    private static final String[] EVENTS = {"thp_split_pmd", "thp_split_page", "thp_swpout_fallback", "pglazyfree",
        "pglazyfreed", "thp_deferred_split_page", "thp_collapse_alloc"};

    private final List<String> lines = new ArrayList<>();
    private Machine machine;
    private AddressSpace mm;
    private Cpu cpu;
    private long next = 0x6000_0000_0000L;
    private long last = -1;
    private long anonHuge;
    private long anon;
    private Map<String, Long> events;

    /** thp.c's thp(): the previous region goes, a fresh one gets a written THP. */
    private long thp() {
        if (last >= 0) {
            mm.munmap(last, H);
        }
        long p = last = next;
        next += GIB;
        mm.mmap(p, H, Protection.READ_WRITE, FIXED);
        assertThat(mm.madvise(p, H, Advice.HUGEPAGE)).isZero();
        for (long va = p; va < p + H; va += K4) {
            cpu.store(va, 8, 0x0707_0707_0707_0707L);
        }
        return p;
    }

    /** A written THP whose PMD an mprotect of its first page, and back, split: mapped by 512 PTEs. */
    private long ptesMappedThp() {
        long p = thp();
        mm.mprotect(p, K4, Protection.READ);
        mm.mprotect(p, K4, Protection.READ_WRITE); // the VMAs merge again
        return p;
    }

    private void snap() {
        anonHuge = mm.counters().anonHugePages();
        anon = mm.counters().anonPages();
        events = machine.vmstat();
    }

    private void show(String name, int rc, long p) {
        Map<String, Long> now = machine.vmstat();
        StringBuilder line = new StringBuilder(String.format("%-22s rc=%d AnonHuge=%d RssAnon=%d", name, rc,
                (mm.counters().anonHugePages() - anonHuge) * 4, (mm.counters().anonPages() - anon) * 4));
        for (String e : EVENTS) {
            line.append(' ').append(e).append('=').append(now.get(e) - events.get(e));
        }
        line.append(" p0=").append(cpu.load(p, 1)).append(" pmid=").append(cpu.load(p + H / 2 + 5, 1));
        lines.add(line.toString());
    }

    @Test
    @DisplayName("the layouts of docs/kernel-parity/thp_madvise.c give what the kernel on this machine reported")
    void layoutsMatchTheKernel() {
        machine = Machine.builder().node(GIB).cpus(2).thp(ThpMode.MADVISE).checkInvariantsAfterEveryOperation(true).build();
        try {
            mm = machine.createAddressSpace();
            cpu = machine.cpu(0);
            cpu.switchTo(mm);
            runLayouts();
        } finally {
            Fixtures.closeChecked(machine);
        }
        assertThat(String.join("\n", lines)).isEqualTo(String.join("\n", Fixtures.kernelOutput("thp_madvise.out")));
    }

    private void runLayouts() {
        long p = thp();
        snap();
        show("cold_whole", mm.madvise(p, H, Advice.COLD), p);
        p = thp();
        snap();
        show("cold_partial", mm.madvise(p, H / 2, Advice.COLD), p);
        p = thp();
        snap();
        show("pageout_whole", mm.madvise(p, H, Advice.PAGEOUT), p);
        p = thp();
        snap();
        show("pageout_partial", mm.madvise(p, H / 2, Advice.PAGEOUT), p);
        p = thp();
        snap();
        show("free_whole", mm.madvise(p, H, Advice.FREE), p);
        snap();
        show("free_whole.pageout", mm.madvise(p, H, Advice.PAGEOUT), p);
        p = thp();
        snap();
        int r = mm.madvise(p, H, Advice.FREE);
        cpu.store(p + 100, 1, 1);
        show("free_write_pageout", r | mm.madvise(p, H, Advice.PAGEOUT), p);
        p = thp();
        snap();
        show("free_partial", mm.madvise(p, H / 2, Advice.FREE), p);
        snap();
        show("free_partial.pageout", mm.madvise(p, H, Advice.PAGEOUT), p);
        p = thp();
        snap();
        show("free_tail_half", mm.madvise(p + H / 2, H / 2, Advice.FREE), p);
        p = thp();
        AddressSpace child = mm.fork();
        snap();
        show("free_whole_shared", mm.madvise(p, H, Advice.FREE), p);
        snap();
        show("pageout_whole_shared", mm.madvise(p, H, Advice.PAGEOUT), p);
        snap();
        show("free_partial_shared", mm.madvise(p, H / 2, Advice.FREE), p);
        child.close();
        p = ptesMappedThp();
        snap();
        show("collapse_pte_mapped", mm.madvise(p, H, Advice.COLLAPSE), p);
        p = ptesMappedThp();
        snap();
        show("free_pte_mapped", mm.madvise(p, H, Advice.FREE), p);
        snap();
        show("free_pte_mapped.pageout", mm.madvise(p, H, Advice.PAGEOUT), p);
        p = ptesMappedThp();
        snap();
        show("cold_pte_mapped", mm.madvise(p, H, Advice.COLD), p);
        snap();
        show("cold_pte_mapped.pageout", mm.madvise(p, H, Advice.PAGEOUT), p);
    }
}
