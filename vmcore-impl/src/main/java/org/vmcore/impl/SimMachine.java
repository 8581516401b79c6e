package org.vmcore.impl;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.AllocationKind;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFs;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.InvariantViolationException;
import org.vmcore.api.Khugepaged;
import org.vmcore.api.Machine;
import org.vmcore.api.MachineConfig;
import org.vmcore.api.MachineStats;
import org.vmcore.api.MigrationService;
import org.vmcore.api.Page;
import org.vmcore.api.PageReference;
import org.vmcore.api.RaceHook;
import org.vmcore.api.RacePoint;
import org.vmcore.api.Regression;
import org.vmcore.api.RmapWalker;
import org.vmcore.api.StaleAccess;
import org.vmcore.api.VmstatSnapshot;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.MigratingThread;
import org.vmcore.impl.base.Nodes;
import org.vmcore.impl.base.PmdShareCount;
import org.vmcore.impl.check.InvariantChecker;
import org.vmcore.impl.cpu.SimCpu;
import org.vmcore.impl.cpu.StaleDetector;
import org.vmcore.impl.hugetlb.HugetlbFsImpl;
import org.vmcore.impl.hugetlb.HugetlbPools;
import org.vmcore.impl.migrate.MigrationServiceImpl;
import org.vmcore.impl.migrate.RemoveMigrationPtes;
import org.vmcore.impl.mm.MmContext;
import org.vmcore.impl.mm.KhugepagedImpl;
import org.vmcore.impl.mm.ReclaimCounts;
import org.vmcore.impl.mm.Thp;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.mm.ZeroPage;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.picture.PageTableGraph;
import org.vmcore.impl.rmap.MigrationEntryRefs;
import org.vmcore.impl.rmap.RmapWalk;
import org.vmcore.impl.rmap.TryToUnmap;
import org.vmcore.impl.swap.Reclaim;
import org.vmcore.impl.swap.SwapCache;
import org.vmcore.impl.swap.SwapDevice;
import org.vmcore.impl.tlb.TlbShootdown;
import org.vmcore.impl.vma.MappingRegistry;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * The machine: builds the mechanisms bottom up and hands each what it may touch (physical
 * memory, the lock, the mapping registry, the pools, the TLB shootdown); nothing below this
 * package refers back to it. It keeps the public {@link Machine} calls: locking, validation and
 * delegation.
 *
 * <p>Locking: every operation holds the machine lock ({@link #lock()}) shared, the machine-wide
 * inspections exclusive; the kernel's locks below it are drawn in the package header.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
public final class SimMachine implements Machine {
    private final MachineConfig config;
    private final int nodeCount;
    private final PhysicalMemory memory;
    private final MachineLock lock = new MachineLock();
    private final CallbackFailures callbackFailures = new CallbackFailures();
    private final MappingRegistry registry = new MappingRegistry(lock);
    private final MigratingThread migrating = lock.migrating();
    private final long zeroPfn;
    private final ReclaimCounts reclaimCounts = new ReclaimCounts();
    private final StaleDetector detector = new StaleDetector();
    private final AddressSpaceTable spaces;
    private final OperationEnd ops;
    private final HugetlbPools pools;
    private final HugetlbFsImpl hugetlbfs;
    private final SimCpu[] cpus;
    private final List<SimCpu> cpuList;
    private final TlbShootdown shootdown;
    private final RmapWalk rmapWalk;
    private final RmapWalkerImpl rmap;
    private final MigrationServiceImpl migration;
    private final PhysicalAccess physical;
    private final SpeculativeRefs speculativeRefs;
    private final PmdShareCount pmdShareCount;
    private final ProcStats procStats;
    private final KhugepagedImpl khugepaged;
    private final SwapCache swapCache;
    private final Reclaim reclaim;

    SimMachine(MachineConfig config) {
        this.config = config;
        long[] nodes = config.nodeBytes().stream().mapToLong(Long::longValue).toArray();
        this.nodeCount = nodes.length;
        this.memory = new PhysicalMemory(nodes);
        this.ops = new OperationEnd(lock, callbackFailures, migrating, config.checkInvariants() ? this::checkAfter : null, this::close);
        this.spaces = new AddressSpaceTable(lock, ops::deferClose);
        try {
            this.zeroPfn = ZeroPage.allocate(memory); // first, as the kernel's is set aside at boot
            this.pools = HugetlbPools.create(memory, nodeCount, config::hugePages);
            this.hugetlbfs = new HugetlbFsImpl(lock, nodeCount, pools, SharedSecrets.memMap(memory), registry, SimAddressSpace.VMDELETE,
                    ops);
            this.cpus = new SimCpu[config.cpus()];
            for (int i = 0; i < cpus.length; i++) {
                cpus[i] = new SimCpu(lock, i, config, memory, detector, spaces::ofPcid, callbackFailures);
            }
            this.cpuList = List.of(cpus);
            this.shootdown = new TlbShootdown(cpus);
            this.rmapWalk = new RmapWalk(lock, memory, registry);
            MigrationEntryRefs migrationRefs = new MigrationEntryRefs(lock, memory, rmapWalk, pools);
            TryToUnmap unmap = new TryToUnmap(memory, rmapWalk, shootdown, config);
            RemoveMigrationPtes removeMigrationPtes = new RemoveMigrationPtes(lock, SharedSecrets.memMap(memory), rmapWalk, unmap,
                    migrationRefs);
            this.rmap = new RmapWalkerImpl(lock, callbackFailures, ops, memory.descriptors(), rmapWalk, unmap, removeMigrationPtes);
            this.speculativeRefs = new SpeculativeRefs(lock, memory, SharedSecrets.memMap(memory), pools);
            this.swapCache = new SwapCache(new SwapDevice(config.swapBytes()), memory);
            this.reclaim = new Reclaim(lock, memory, rmapWalk, shootdown, swapCache, migrationRefs,
                    () -> reclaimCounts.addLazyfreed(1), ops);
            this.migration = new MigrationServiceImpl(lock, nodeCount, memory, pools, registry, unmap, removeMigrationPtes,
                    migrationRefs, callbackFailures, ops, migrating, speculativeRefs::tryGet, swapCache);
            spaces.setContext(new MmContext(lock, config, memory, registry, pools, hugetlbfs, shootdown, callbackFailures,
                    ops, migrating, migrationRefs, spaces, speculativeRefs::tryGet, zeroPfn, reclaimCounts,
                    new Thp(config.thp(), memory), swapCache, reclaim));
            reclaim.useSplits(migration.splitsFor(spaces.context().thp()));
            this.physical = new PhysicalAccess(lock, memory, registry);
            lock.raceHooks().setScope(callbackFailures);
            lock.locklessWalkers().setSyncOnUnshare(!config.regressions().contains(Regression.PRE_1013AF4F));
            this.pmdShareCount = PmdShareCount.of(config, SharedSecrets.memMap(memory));
            this.khugepaged = new KhugepagedImpl(spaces.context(), spaces::live);
            this.procStats = new ProcStats(memory, nodeCount, pools, spaces, cpus, detector, migration, reclaimCounts, swapCache);
        } catch (RuntimeException e) {
            memory.close();
            throw e;
        }
    }

    @Override
    public MachineConfig config() {
        ensureOpen();
        return config;
    }

    @Override
    public AddressSpace createAddressSpace() {
        return createAddressSpace(0);
    }

    @Override
    public AddressSpace createAddressSpace(int homeNode) {
        try (MachineLock.Held locked = lock.shared()) {
            ensureOpen();
            Nodes.check(nodeCount, homeNode);
            return spaces.newChild(homeNode);
        }
    }

    @Override
    public int cpuCount() {
        ensureOpen();
        return cpus.length;
    }

    @Override
    public Cpu cpu(int id) {
        ensureOpen();
        if (id < 0 || id >= cpus.length) {
            throw new InvalidArgumentException("cpu", id, "must be a CPU of this machine (0.." + (cpus.length - 1) + ")");
        }
        return cpus[id];
    }

    public SimCpu simCpu(int id) {
        return cpus[id];
    }

    @Override
    public void setRaceHook(RacePoint point, RaceHook hook) {
        ensureOpen();
        if (point == null) {
            throw new InvalidArgumentException("point", null, "must not be null");
        }
        lock.raceHooks().set(point, hook);
    }

    @Override
    public long reclaim(int node, long pages) {
        return reclaim.reclaim(node, pages);
    }

    @Override
    public void flushTlbAll() {
        try (MachineLock.Held locked = lock.shared()) {
            ensureOpen();
            shootdown.flushTlbAll();
        }
    }

    @Override
    public List<StaleAccess> staleAccesses() {
        ensureOpen();
        return detector.snapshot();
    }

    @Override
    public long staleAccessCount() {
        ensureOpen();
        return detector.count();
    }

    @Override
    public MigrationService migration() {
        ensureOpen();
        return migration;
    }

    @Override
    public Khugepaged khugepaged() {
        ensureOpen();
        return khugepaged;
    }

    @Override
    public Map<String, Long> vmstat() {
        return vmstatSnapshot().asMap();
    }

    @Override
    public VmstatSnapshot vmstatSnapshot() {
        return procStats.vmstatSnapshot(lock);
    }

    @Override
    public void resetVmstat() {
        procStats.resetVmstat(lock);
    }

    @Override
    public void failNthAllocation(AllocationKind kind, long nth, int times) {
        ensureOpen();
        memory.faults().failNth(kind, nth, times);
    }

    @Override
    public long allocationCount(AllocationKind kind) {
        ensureOpen();
        if (kind == null) {
            throw new InvalidArgumentException("kind", null, "must not be null");
        }
        return memory.faults().count(kind);
    }

    @Override
    public List<String> checkInvariants() {
        try (MachineLock.Held locked = lock.exclusive()) {
            ensureOpen();
            return checker().check();
        }
    }

    /** With the option on, runs the checker after {@code operation} and throws on a violation. */
    private void checkAfter(String operation) {
        if (config.checkInvariants() && !lock.isClosed()) {
            List<String> violations = checker().check();
            if (!violations.isEmpty()) {
                throw callbackFailures.suppressInto(new InvariantViolationException(operation, violations));
            }
        }
    }

    private InvariantChecker checker() {
        return new InvariantChecker(lock, memory, registry, pools, hugetlbfs, rmapWalk, spaces.live(), cpuList,
                callbackFailures.inCallback(), pmdShareCount, speculativeRefs::held, swapCache);
    }

    @Override
    public String pageTableDot(List<AddressSpace> addressSpaces, long start, long end, boolean withTlbs) {
        // Shared: a picture is drawn from a migration observer or a race hook, mid-operation, while
        // the other threads run on; it is a snapshot of entries that may be changing.
        try (MachineLock.Held locked = lock.shared()) {
            ensureOpen();
            return new PageTableGraph(lock, memory, cpuList).drawRequested(addressSpaces, start, end, withTlbs);
        }
    }

    @Override
    public MachineStats stats() {
        return new MachineStats(vmstat(), procStats.meminfo(lock));
    }

    @Override
    public void clearStaleAccesses() {
        ensureOpen();
        detector.clear();
    }

    @Override
    public boolean checkTranslation(String who, AddressSpace addressSpace, long va, long pfn, boolean write) {
        ensureOpen();
        if (!(addressSpace instanceof SimAddressSpace mm) || !mm.belongsTo(lock)) {
            throw new InvalidArgumentException("addressSpace", addressSpace, "must belong to this machine");
        }
        try (MachineLock.Held locked = lock.shared()) {
            ensureOpen();
            return detector.check(who, mm, va, pfn, write, config.detectStaleTranslations());
        }
    }

    @Override
    public List<AddressSpace> addressSpaces() {
        try (MachineLock.Held locked = lock.shared()) {
            ensureOpen();
            return new ArrayList<>(spaces.live());
        }
    }

    @Override
    public HugetlbFs hugetlbfs() {
        ensureOpen();
        return hugetlbfs;
    }

    @Override
    public RmapWalker rmap() {
        ensureOpen();
        return rmap;
    }

    @Override
    public Page page(long pfn) {
        try (MachineLock.Held locked = lock.shared()) {
            ensureOpen();
            return physical.page(pfn);
        }
    }

    @Override
    public PageReference tryGetPage(long pfn) {
        try (MachineLock.Held locked = lock.shared()) {
            ensureOpen();
            return speculativeRefs.tryGet(pfn);
        }
    }

    @Override
    public long readPhysical(long pa, int width) {
        try (MachineLock.Held locked = lock.shared()) { // close frees the arena under the lock: never touch it after
            ensureOpen();
            return physical.read(pa, width);
        }
    }

    @Override
    public void readPhysical(long pa, byte[] dst, int offset, int length) {
        try (MachineLock.Held locked = lock.shared()) {
            ensureOpen();
            physical.readBytes(pa, dst, offset, length);
        }
    }

    @Override
    public void readPhysical(long pa, ByteBuffer dst) {
        try (MachineLock.Held locked = lock.shared()) {
            ensureOpen();
            physical.readBytes(pa, dst);
        }
    }

    @Override
    public void writePhysical(long pa, int width, long value) {
        try (MachineLock.Held locked = lock.shared()) {
            ensureOpen();
            physical.write(pa, width, value);
        }
    }

    @Override
    public long freeFrames() {
        try (MachineLock.Held locked = lock.shared()) {
            ensureOpen();
            return memory.freeFrames();
        }
    }

    @Override
    public long offHeapBytes() {
        return memory.offHeapBytes() + swapCache.device().offHeapBytes();
    }

    @Override
    public void close() {
        if (lock.isSharedOnlyByCurrentThread()) { // from inside an address-space operation (a callback of it)
            ops.closeMachineLater();
            return;
        }
        lock.raceHooks().machineClosing(); // a hook holding a thread lets it go: the close waits for it
        try (MachineLock.Held locked = lock.exclusive()) {
            if (lock.isClosed() || ops.deferMachineClose()) {
                return; // from inside a callback: closed when the operation that called back ends
            }
            ops.machineClosing();
            Throwable failure = null;
            try {
                for (SimAddressSpace mm : spaces.live()) {
                    try {
                        mm.close();
                    } catch (Throwable e) { // a notifier's release threw: the address space is freed all the same
                        failure = OperationEnd.addFailure(failure, e);
                    }
                }
            } finally {
                lock.markClosed();
                // Kick every CPU out before the memory goes: an access in progress ends first, later ones see ClosedException.
                for (SimCpu cpu : cpus) {
                    cpu.machineClosed();
                }
                memory.close();
                swapCache.device().close();
            }
            if (failure != null) {
                throw CallbackFailures.<RuntimeException>sneaky(failure);
            }
        }
    }

    /** The configuration and, while open, the live address spaces ({@link MachineSummary}); {@code Machine[closed, ...]} after close. */
    @Override
    public String toString() {
        try (MachineLock.Held locked = lock.shared()) {
            return MachineSummary.of(config, lock.isClosed(), lock.isClosed() ? 0 : spaces.live().size());
        }
    }

    /** The lock every mm operation holds. */
    public MachineLock lock() {
        return lock;
    }

    /** Physical memory, for tests that look at frames directly. */
    public PhysicalMemory memory() {
        return memory;
    }

    private void ensureOpen() {
        lock.ensureOpen();
    }
}
