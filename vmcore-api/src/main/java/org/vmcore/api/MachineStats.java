package org.vmcore.api;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A snapshot of a machine's counters, named as the kernel names them where it has a name:
 * {@code vmstat} like /proc/vmstat (event counts) and {@code meminfo} like /proc/meminfo (kB
 * values and page counts).
 *
 * @param vmstat  every {@link VmstatCounter} by its /proc/vmstat name, as {@link Machine#vmstat()}
 *                gives them: pgfault, pgmigrate_success, pgmigrate_fail, hugetlb_migrate_success,
 *                hugetlb_migrate_fail, nr_tlb_remote_flush, nr_tlb_remote_flush_received,
 *                nr_tlb_local_flush_all, nr_tlb_local_flush_one, stale_translation_uses, pglazyfree,
 *                pglazyfreed, pswpin, pswpout
 * @param meminfo MemTotal, MemFree, AnonPages, Shmem, PageTables, SwapTotal, SwapFree, SwapCached
 *                (kB), HugePages_Total,
 *                HugePages_Free, HugePages_Rsvd, HugePages_Surp (pages of the default 2 MiB size),
 *                Hugepagesize (kB)
 */
public record MachineStats(Map<String, Long> vmstat, Map<String, Long> meminfo) {
    /** Copies both maps, keeping their order. */
    public MachineStats {
        vmstat = Collections.unmodifiableMap(new LinkedHashMap<>(vmstat));
        meminfo = Collections.unmodifiableMap(new LinkedHashMap<>(meminfo));
    }

    /**
     * Both, as the kernel prints them: "name value" lines, then "Name:  value kB" lines.
     *
     * @return both, as the kernel prints them
     */
    public String report() {
        StringBuilder sb = new StringBuilder("/proc/vmstat\n");
        vmstat.forEach((k, v) -> sb.append(k).append(' ').append(v).append('\n'));
        sb.append("/proc/meminfo\n");
        meminfo.forEach((k, v) -> sb.append(String.format("%-16s%10d%s%n", k + ":", v, k.startsWith("HugePages_") ? "" : " kB")));
        return sb.toString();
    }
}
