package org.vmcore.impl;

import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.Map;
import org.vmcore.api.PageSize;
import org.vmcore.api.TlbStats;
import org.vmcore.api.VmstatCounter;
import org.vmcore.api.VmstatSnapshot;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.cpu.SimCpu;
import org.vmcore.impl.cpu.StaleDetector;
import org.vmcore.impl.hugetlb.HugePagePool;
import org.vmcore.impl.hugetlb.HugetlbPools;
import org.vmcore.impl.migrate.MigrationServiceImpl;
import org.vmcore.impl.mm.ReclaimCounts;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.swap.SwapCache;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * /proc/vmstat and /proc/meminfo: reads the counters the mechanisms keep and names them as the
 * kernel does. It changes nothing. The public reads take the machine lock themselves; the CPU,
 * migration and swap counters are atomic.
 */
final class ProcStats {
    private final PhysicalMemory memory;
    private final int nodeCount;
    private final HugetlbPools pools;
    private final AddressSpaceTable spaces;
    private final SimCpu[] cpus;
    private final StaleDetector detector;
    private final MigrationServiceImpl migration;
    private final ReclaimCounts reclaim;
    private final SwapCache swap;
    private long[] vmstatBaseline = new long[VmstatCounter.values().length];

    ProcStats(PhysicalMemory memory, int nodeCount, HugetlbPools pools, AddressSpaceTable spaces, SimCpu[] cpus,
              StaleDetector detector, MigrationServiceImpl migration, ReclaimCounts reclaim, SwapCache swap) {
        this.memory = memory;
        this.nodeCount = nodeCount;
        this.pools = pools;
        this.spaces = spaces;
        this.cpus = cpus;
        this.detector = detector;
        this.migration = migration;
        this.reclaim = reclaim;
        this.swap = swap;
    }

    /**
     * The vmstat counters since the machine started or the last {@link #resetVmstat}. The caller
     * holds the lock, which serialises this with the reset; the counters only grow, so no value
     * goes below the baseline.
     */
    @SuppressWarnings("try") // a lock hold is used only for its scope
    VmstatSnapshot vmstatSnapshot(MachineLock lock) {
        try (MachineLock.Held locked = lock.shared()) {
            lock.ensureOpen();
            return vmstatSnapshot();
        }
    }

    private VmstatSnapshot vmstatSnapshot() {
        long[] now = vmstat(faults());
        Map<VmstatCounter, Long> values = new EnumMap<>(VmstatCounter.class);
        for (VmstatCounter c : VmstatCounter.values()) {
            values.put(c, now[c.ordinal()] - vmstatBaseline[c.ordinal()]);
        }
        return VmstatSnapshot.of(values);
    }

    /** Makes the counters as they are now the baseline of later snapshots, under the machine lock held exclusive. */
    @SuppressWarnings("try") // a lock hold is used only for its scope
    void resetVmstat(MachineLock lock) {
        try (MachineLock.Held locked = lock.exclusive()) {
            lock.ensureOpen();
            vmstatBaseline = vmstat(faults());
        }
    }

    /**
     * Every {@link VmstatCounter} as counted since the machine started, by ordinal, given pgfault
     * (counted under the lock by the caller).
     */
    long[] vmstat(long faults) {
        long[] out = new long[VmstatCounter.values().length];
        out[VmstatCounter.PGFAULT.ordinal()] = faults;
        migration.stats().forEach((name, value) -> out[VmstatCounter.ofProcName(name).ordinal()] = value);
        long remoteSent = 0;
        long remoteReceived = 0;
        long localAll = 0;
        long localOne = 0;
        for (SimCpu cpu : cpus) {
            TlbStats s = cpu.stats();
            remoteSent += s.shootdownsSent();
            remoteReceived += s.shootdownsReceived();
            localAll += cpu.localFlushes(true); // the kernel counts local flushes on the initiator only
            localOne += cpu.localFlushes(false);
        }
        out[VmstatCounter.NR_TLB_REMOTE_FLUSH.ordinal()] = remoteSent;
        out[VmstatCounter.NR_TLB_REMOTE_FLUSH_RECEIVED.ordinal()] = remoteReceived;
        out[VmstatCounter.NR_TLB_LOCAL_FLUSH_ALL.ordinal()] = localAll;
        out[VmstatCounter.NR_TLB_LOCAL_FLUSH_ONE.ordinal()] = localOne;
        out[VmstatCounter.STALE_TRANSLATION_USES.ordinal()] = detector.count();
        out[VmstatCounter.PGLAZYFREE.ordinal()] = reclaim.lazyfree();
        out[VmstatCounter.PGLAZYFREED.ordinal()] = reclaim.lazyfreed();
        spaces.context().thp().report(out);
        out[VmstatCounter.PSWPIN.ordinal()] = swap.device().pswpin();
        out[VmstatCounter.PSWPOUT.ordinal()] = swap.device().pswpout();
        return out;
    }

    /** pgfault of every address space, live or exited. */
    long faults() {
        return spaces.faults();
    }

    /** /proc/meminfo under the machine lock held shared. */
    @SuppressWarnings("try") // a lock hold is used only for its scope
    Map<String, Long> meminfo(MachineLock lock) {
        try (MachineLock.Held locked = lock.shared()) {
            lock.ensureOpen();
            return meminfo();
        }
    }

    /** /proc/meminfo, in kB and pages as the kernel prints them. */
    private Map<String, Long> meminfo() {
        Map<String, Long> meminfo = new LinkedHashMap<>();
        long anon = 0;
        long shmem = 0;
        long anonHuge = 0;
        for (SimAddressSpace mm : spaces.live()) {
            var c = mm.counters();
            anon += c.anonPages();
            shmem += c.shmemPages();
            anonHuge += c.anonHugePages();
        }
        meminfo.put("MemTotal", memory.frameCount() * 4);
        meminfo.put("MemFree", memory.freeFrames() * 4);
        meminfo.put("AnonPages", anon * 4);
        meminfo.put("Shmem", shmem * 4);
        meminfo.put("AnonHugePages", anonHuge * 4);
        meminfo.put("PageTables", memory.pageTableFrames() * 4);
        meminfo.put("SwapTotal", swap.device().totalPages() * 4);
        meminfo.put("SwapFree", swap.device().freePages() * 4);
        meminfo.put("SwapCached", swap.cachedPages() * 4);
        long total = 0;
        long free = 0;
        HugePagePool pool2m = pools.pool(PageSize.SIZE_2M);
        for (int n = 0; n < nodeCount; n++) {
            var state = pool2m.state(n);
            total += state.total();
            free += state.free();
        }
        meminfo.put("HugePages_Total", total);
        meminfo.put("HugePages_Free", free);
        meminfo.put("HugePages_Rsvd", pool2m.reserved());
        meminfo.put("HugePages_Surp", 0L);
        meminfo.put("Hugepagesize", 2048L);
        return meminfo;
    }
}
