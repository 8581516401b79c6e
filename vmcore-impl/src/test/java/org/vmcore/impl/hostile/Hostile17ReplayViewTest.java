package org.vmcore.impl.hostile;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.catchThrowable;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.vmcore.api.Access;
import org.vmcore.api.AccessOutcome;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.ClosedException;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.HugetlbPoolState;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableEntry;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.PageTableView;
import org.vmcore.api.Protection;
import org.vmcore.api.PteFlag;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.TlbStats;
import org.vmcore.api.TraceOp;
import org.vmcore.api.VmstatCounter;
import org.vmcore.api.VmstatSnapshot;

/** Replay with bad input and under races; outcomes against the page-table view; TLB stats; vmstat; unlink. */
@Timeout(120)
class Hostile17ReplayViewTest {
    static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    static final long DATA = 0x10_0000_0000L;
    static final long CODE = 0x20_0000_0000L;
    static final long RO = 0x28_0000_0000L;
    static final long GIB = 1L << 30;

    static void assertClosesClean(Machine m) {
        assertThat(m.checkInvariants()).isEmpty();
        m.close();
        assertThat(m.offHeapBytes()).isZero();
    }

    static Machine basic(AddressSpace[] out) {
        Machine m = Machine.builder().node(GIB).cpus(2).checkInvariantsAfterEveryOperation(true).build();
        AddressSpace mm = m.createAddressSpace();
        mm.mmap(DATA, 16 * 4096, Protection.READ_WRITE, ANON);
        mm.mmap(CODE, 2 * 4096, Protection.READ_EXEC, ANON);
        mm.mmap(RO, 2 * 4096, Protection.READ, ANON);
        m.cpu(0).switchTo(mm);
        out[0] = mm;
        return m;
    }

    // ---------------------------------------------------------------- replay bad input

    @Test
    void replayRejectsEveryBadArrayBeforeRunningAnything() {
        AddressSpace[] h = new AddressSpace[1];
        Machine m = basic(h);
        Cpu cpu = m.cpu(0);
        int n = 4;
        byte[] ops = {TraceOp.STORE, TraceOp.STORE, TraceOp.STORE, TraceOp.STORE};
        long[] vas = {DATA, DATA + 8, DATA + 16, DATA + 24};
        byte[] w = {8, 8, 8, 8};
        long[] v = {1, 2, 3, 4};
        List<Runnable> bad = new ArrayList<>();
        bad.add(() -> cpu.replay(null, vas, w, v.clone()));
        bad.add(() -> cpu.replay(ops, null, w, v.clone()));
        bad.add(() -> cpu.replay(ops, vas, null, v.clone()));
        bad.add(() -> cpu.replay(ops, vas, w, null));
        bad.add(() -> cpu.replay(Arrays.copyOf(ops, 3), vas, w, v.clone()));
        bad.add(() -> cpu.replay(ops, Arrays.copyOf(vas, 3), w, v.clone()));
        bad.add(() -> cpu.replay(ops, vas, Arrays.copyOf(w, 5), v.clone()));
        bad.add(() -> cpu.replay(ops, vas, w, Arrays.copyOf(v, 3)));
        for (byte badOp : new byte[] {3, -1, 127, (byte) 0x80}) {
            byte[] o = ops.clone();
            o[n - 1] = badOp;
            bad.add(() -> cpu.replay(o, vas, w, v.clone()));
        }
        for (byte badW : new byte[] {0, 3, 5, 6, 7, 16, -8, -1}) {
            byte[] ww = w.clone();
            ww[n - 1] = badW;
            bad.add(() -> cpu.replay(ops, vas, ww, v.clone()));
        }
        TlbStats before = cpu.stats();
        VmstatSnapshot vs = m.vmstatSnapshot();
        for (int i = 0; i < bad.size(); i++) {
            assertThat(catchThrowable(bad.get(i)::run)).as("case %d", i).isInstanceOf(InvalidArgumentException.class);
        }
        assertThat(cpu.stats()).isEqualTo(before);
        assertThat(m.vmstatSnapshot()).isEqualTo(vs);
        assertThat(h[0].translate(DATA)).as("nothing faulted in").isEqualTo(-1);
        // and the same for loadAll / storeAll
        assertThatThrownBy(() -> cpu.loadAll(vas, 3, new long[4])).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> cpu.storeAll(vas, 8, new long[3])).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> cpu.loadAll(null, 8, new long[3])).isInstanceOf(InvalidArgumentException.class);
        // empty arrays: fine, nothing happens
        cpu.replay(new byte[0], new long[0], new byte[0], new long[0]);
        assertThat(cpu.stats()).isEqualTo(before);
        // no current address space
        cpu.switchTo(null);
        assertThatThrownBy(() -> cpu.replay(ops, vas, w, v.clone())).isInstanceOf(IllegalStateException.class);
        assertClosesClean(m);
    }

    @Test
    void replayFaultsNameTheirIndexCauseAndAccessAndAreTheLast() {
        AddressSpace[] h = new AddressSpace[1];
        Machine m = basic(h);
        Cpu cpu = m.cpu(0);
        record Case(byte op, long va, int width, SegmentationFaultException.Cause cause, Access access) {
        }
        List<Case> cases = List.of(
                new Case(TraceOp.FETCH, DATA + 64, 4, SegmentationFaultException.Cause.PROTECTION, Access.EXECUTE),
                new Case(TraceOp.STORE, RO, 8, SegmentationFaultException.Cause.PROTECTION, Access.WRITE),
                new Case(TraceOp.STORE, CODE, 1, SegmentationFaultException.Cause.PROTECTION, Access.WRITE),
                new Case(TraceOp.LOAD, 0x0000_8000_0000_0000L, 8, SegmentationFaultException.Cause.NON_CANONICAL, Access.READ),
                new Case(TraceOp.LOAD, 0x1234_0000_0000_0000L, 8, SegmentationFaultException.Cause.NON_CANONICAL, Access.READ),
                new Case(TraceOp.LOAD, 0, 8, SegmentationFaultException.Cause.NO_VMA, Access.READ),
                new Case(TraceOp.FETCH, 0x50_0000_0000L, 1, SegmentationFaultException.Cause.NO_VMA, Access.EXECUTE));
        for (Case c : cases) {
            byte[] ops = {TraceOp.STORE, c.op(), TraceOp.STORE};
            long[] vas = {DATA + 128, c.va(), DATA + 136};
            byte[] w = {8, (byte) c.width(), 8};
            long[] v = {0x77, 0x55, 0x99};
            SegmentationFaultException e = (SegmentationFaultException) catchThrowable(() -> cpu.replay(ops, vas, w, v));
            assertThat(e).as("%s", c).isNotNull();
            assertThat(e.batchIndex()).as("%s", c).isEqualTo(1);
            assertThat(e.cause()).as("%s", c).isEqualTo(c.cause());
            assertThat(e.access()).as("%s", c).isEqualTo(c.access());
            assertThat(e.address()).as("%s", c).isEqualTo(c.va());
            assertThat(cpu.load(DATA + 128, 8)).isEqualTo(0x77);
            assertThat(cpu.load(DATA + 136, 8)).as("%s: access after the fault ran", c).isZero();
            cpu.store(DATA + 128, 8, 0);
        }
        // kernel half: canonical but not user. Whatever the cause, it must fault at index 1 and name the address.
        long kernel = 0xffff_8000_0000_0000L;
        SegmentationFaultException e = (SegmentationFaultException) catchThrowable(() -> cpu.replay(
                new byte[] {TraceOp.LOAD, TraceOp.LOAD}, new long[] {DATA, kernel}, new byte[] {8, 8}, new long[2]));
        assertThat(e).isNotNull();
        assertThat(e.batchIndex()).isEqualTo(1);
        assertThat(e.address()).isEqualTo(kernel);
        assertThat(e.cause()).isNotEqualTo(SegmentationFaultException.Cause.NON_CANONICAL);
        assertClosesClean(m);
    }

    @Test
    void pageCrossingReplayAccesses() {
        AddressSpace[] h = new AddressSpace[1];
        Machine m = basic(h);
        Cpu cpu = m.cpu(0);
        AddressSpace mm = h[0];
        // DATA..DATA+16 pages RW; page 16 unmapped. A store crossing into the hole is precise.
        long end = DATA + 16 * 4096;
        cpu.store(end - 8, 8, 0x0102030405060708L);
        SegmentationFaultException e = (SegmentationFaultException) catchThrowable(() -> cpu.replay(
                new byte[] {TraceOp.STORE}, new long[] {end - 4}, new byte[] {8}, new long[] {-1L}));
        assertThat(e).isNotNull();
        assertThat(e.batchIndex()).isZero();
        assertThat(e.address()).isEqualTo(end);
        assertThat(cpu.load(end - 8, 8)).as("precise store: no byte landed").isEqualTo(0x0102030405060708L);
        // a load crossing two mapped pages reads both
        cpu.store(DATA + 4096 - 4, 4, 0xaabbccddL);
        cpu.store(DATA + 4096, 4, 0x11223344L);
        long[] v = new long[1];
        cpu.replay(new byte[] {TraceOp.LOAD}, new long[] {DATA + 4096 - 4}, new byte[] {8}, v);
        assertThat(v[0]).isEqualTo(0x11223344_aabbccddL);
        // a fetch crossing from exec into non-exec: CODE+2 pages followed by RO? not adjacent; use mprotect
        mm.mmap(CODE + 2 * 4096, 4096, Protection.READ, ANON);
        e = (SegmentationFaultException) catchThrowable(() -> cpu.replay(new byte[] {TraceOp.FETCH},
                new long[] {CODE + 2 * 4096 - 2}, new byte[] {4}, new long[1]));
        assertThat(e).isNotNull();
        assertThat(e.access()).isEqualTo(Access.EXECUTE);
        assertThat(e.address()).isEqualTo(CODE + 2 * 4096);
        assertThat(e.cause()).isEqualTo(SegmentationFaultException.Cause.PROTECTION);
        // a crossing store through storeRecorded records its last part, consistently with translate
        cpu.storeRecorded(DATA + 2 * 4096 - 4, 8, 0x5555_6666_7777_8888L);
        AccessOutcome o = cpu.outcome();
        // Was a bug: va() of the first part with physicalAddress() of the last. Both now describe the last part translated.
        assertThat(o.physicalAddress()).isEqualTo(mm.translate(o.va()));
        assertThat(m.readPhysical(o.physicalAddress(), 4)).isEqualTo(o.va() == DATA + 2 * 4096 ? 0x5555_6666L : 0x7777_8888L);
        assertClosesClean(m);
    }

    // ---------------------------------------------------------------- races

    @Test
    void replayOnOneThreadRacingMunmapAndMmapOnAnother() throws Exception {
        Machine m = Machine.builder().node(GIB).cpus(2).build();
        AddressSpace mm = m.createAddressSpace();
        int pages = 32;
        mm.mmap(DATA, pages * 4096L, Protection.READ_WRITE, ANON);
        Cpu cpu = m.cpu(0);
        long seed = System.nanoTime();
        System.out.println("Hostile17 race seed " + seed);
        Random r = new Random(seed);
        int n = 4096;
        byte[] ops = new byte[n];
        long[] vas = new long[n];
        byte[] w = new byte[n];
        for (int i = 0; i < n; i++) {
            ops[i] = (byte) r.nextInt(2);
            w[i] = 8;
            vas[i] = DATA + 8L * r.nextInt(pages * 512);
        }
        AtomicBoolean stop = new AtomicBoolean();
        AtomicReference<Throwable> unexpected = new AtomicReference<>();
        CountDownLatch started = new CountDownLatch(1);
        Thread driver = new Thread(() -> {
            cpu.switchTo(mm);
            started.countDown();
            try {
                while (!stop.get()) {
                    long[] vals = new long[n];
                    for (int i = 0; i < n; i++) {
                        vals[i] = vas[i] ^ 0x5a5a;
                    }
                    try {
                        cpu.replay(ops, vas, w, vals);
                    } catch (SegmentationFaultException e) {
                        if (e.cause() != SegmentationFaultException.Cause.NO_VMA) {
                            throw e;
                        }
                    }
                }
            } catch (Throwable t) {
                unexpected.set(t);
            }
        });
        driver.start();
        started.await();
        Cpu mmCpu = m.cpu(1);
        for (int k = 0; k < 150; k++) {
            long off = 4096L * r.nextInt(pages - 4);
            mmCpu.run(() -> mm.munmap(DATA + off, 4 * 4096));
            mmCpu.run(() -> mm.mmap(DATA + off, 4 * 4096, Protection.READ_WRITE, ANON));
        }
        stop.set(true);
        driver.join(30_000);
        assertThat(driver.isAlive()).isFalse();
        assertThat(unexpected.get()).isNull();
        assertThat(m.checkInvariants()).isEmpty();
        // data written now is readable
        cpu.switchTo(mm);
        cpu.storeAll(new long[] {DATA, DATA + 4096 * 31}, 8, new long[] {7, 8});
        assertThat(cpu.load(DATA, 8)).isEqualTo(7);
        assertThat(cpu.load(DATA + 4096 * 31, 8)).isEqualTo(8);
        TlbStats s = cpu.stats();
        assertThat(s.misses()).isEqualTo(s.misses4k() + s.misses2m() + s.misses1g());
        assertClosesClean(m);
    }

    @Test
    void replayOnOneThreadRacingMachineClose() throws Exception {
        for (int round = 0; round < 5; round++) {
            Machine m = Machine.builder().node(GIB).cpus(2).build();
            AddressSpace mm = m.createAddressSpace();
            mm.mmap(DATA, 64 * 4096L, Protection.READ_WRITE, ANON);
            Cpu cpu = m.cpu(0);
            int n = 1024;
            byte[] ops = new byte[n];
            long[] vas = new long[n];
            byte[] w = new byte[n];
            for (int i = 0; i < n; i++) {
                ops[i] = (byte) (i & 1);
                w[i] = 8;
                vas[i] = DATA + 8L * ((i * 97) % (64 * 512));
            }
            AtomicReference<Throwable> ended = new AtomicReference<>();
            CountDownLatch started = new CountDownLatch(1);
            Thread driver = new Thread(() -> {
                cpu.switchTo(mm);
                cpu.accessListener(o -> { });
                started.countDown();
                try {
                    while (true) {
                        cpu.replay(ops, vas, w, new long[n]);
                    }
                } catch (Throwable t) {
                    ended.set(t);
                }
            });
            driver.start();
            started.await();
            Thread.sleep(20 + round * 10);
            m.close();
            driver.join(30_000);
            assertThat(driver.isAlive()).isFalse();
            assertThat(ended.get()).isInstanceOf(ClosedException.class);
            assertThat(m.offHeapBytes()).isZero();
        }
    }

    // ---------------------------------------------------------------- outcome vs page tables

    @Test
    void aColdRecordedWalkReadsExactlyTheEntriesThePageTableViewShows() {
        AddressSpace[] h = new AddressSpace[1];
        Machine m = basic(h);
        Cpu cpu = m.cpu(0);
        AddressSpace mm = h[0];
        cpu.store(DATA + 4096 * 3 + 16, 8, 0xfeed);
        m.flushTlbAll();
        long v = cpu.loadRecorded(DATA + 4096 * 3 + 16, 8);
        AccessOutcome o = cpu.outcome();
        assertThat(v).isEqualTo(0xfeed);
        assertThat(o.index()).isEqualTo(-1);
        assertThat(o.translation()).isEqualTo(AccessOutcome.Translation.WALK);
        assertThat(o.walks()).isEqualTo(1);
        assertThat(o.faults()).isZero();
        assertThat(o.faultResult()).isNull();
        assertThat(o.faultErrorCode()).isZero();
        assertThat(o.walkStart()).isEqualTo(PageTableLevel.PGD);
        assertThat(o.pageSize()).isEqualTo(PageSize.SIZE_4K);
        assertThat(o.physicalAddress()).isEqualTo(mm.translate(DATA + 4096 * 3 + 16));
        assertThat(m.readPhysical(o.physicalAddress(), 8)).isEqualTo(0xfeed);
        List<PageTableEntry> walk = mm.pageTableView().walk(DATA + 4096 * 3 + 16);
        assertThat(walk.get(0).tablePa()).isEqualTo(mm.cr3());
        assertThat(o.walkReferences()).isEqualTo(walk.size());
        for (int i = 0; i < walk.size(); i++) {
            assertThat(o.walkReferenceAddress(i)).isEqualTo(walk.get(i).entryPa());
            assertThat(o.walkReferenceLevel(i)).isEqualTo(walk.get(i).level());
            assertThat(m.readPhysical(walk.get(i).entryPa(), 8)).isEqualTo(walk.get(i).raw());
        }
        PageTableEntry leaf = walk.get(walk.size() - 1);
        assertThat(leaf.leaf()).isTrue();
        assertThat(leaf.flags()).contains(PteFlag.PRESENT, PteFlag.USER, PteFlag.RW, PteFlag.ACCESSED, PteFlag.DIRTY, PteFlag.NX);
        assertThat(leaf.pa() + 16).isEqualTo(o.physicalAddress());
        assertThatThrownBy(() -> o.walkReferenceAddress(walk.size())).isInstanceOf(IndexOutOfBoundsException.class);
        assertThatThrownBy(() -> o.walkReferenceLevel(-1)).isInstanceOf(IndexOutOfBoundsException.class);
        // a hit afterwards: no walk
        cpu.loadRecorded(DATA + 4096 * 3 + 16, 8);
        assertThat(cpu.outcome().translation()).isEqualTo(AccessOutcome.Translation.L1_HIT);
        assertThat(cpu.outcome().walks()).isZero();
        assertThat(cpu.outcome().walkReferences()).isZero();
        assertThat(cpu.outcome().walkStart()).isNull();
        // a first touch: fault then walk, A and D set in the new leaf by the walk
        cpu.storeRecorded(DATA + 4096 * 9, 8, 3);
        AccessOutcome f = cpu.outcome();
        assertThat(f.faults()).isEqualTo(1);
        assertThat(f.walks()).isEqualTo(2);
        assertThat(f.faultResult()).isEqualTo(org.vmcore.api.FaultResult.NEW_PAGE);
        assertThat(f.faultErrorCode() & 0x2).as("W bit").isEqualTo(2);
        assertThat(f.faultErrorCode() & 0x4).as("U bit").isEqualTo(4);
        assertThat(f.faultErrorCode() & 0x1).as("P bit: not present").isZero();
        assertThat(f.physicalAddress()).isEqualTo(mm.translate(DATA + 4096 * 9));
        int last = f.walkReferences() - 1;
        assertThat(f.walkReferenceLevel(last)).isEqualTo(PageTableLevel.PTE);
        PageTableEntry pte = mm.pageTableView().entry(DATA + 4096 * 9, PageTableLevel.PTE).orElseThrow();
        assertThat(f.walkReferenceAddress(last)).isEqualTo(pte.entryPa());
        assertThat(pte.flags()).contains(PteFlag.ACCESSED, PteFlag.DIRTY);
        // the kernel may pre-set A/D (as Linux's mk_pte does for a write fault); if it did not, the walk did
        if (!f.walkReferenceSetDirty(last)) {
            assertThat(f.faults()).isEqualTo(1);
        }
        assertClosesClean(m);
    }

    @Test
    void tlbStatsAgreeWithTheOutcomesARandomWorkloadReported() {
        long seed = System.nanoTime();
        System.out.println("Hostile17 stats seed " + seed);
        Random r = new Random(seed);
        Machine m = Machine.builder().node(GIB).cpus(1).build();
        AddressSpace mm = m.createAddressSpace();
        int pages = 600;
        mm.mmap(DATA, pages * 4096L, Protection.READ_WRITE_EXEC, ANON);
        Cpu cpu = m.cpu(0);
        cpu.switchTo(mm);
        long[] counts = new long[3];
        long[] walks = new long[1];
        long[] faults = new long[1];
        cpu.accessListener(o -> {
            counts[o.translation().ordinal()]++;
            walks[0] += o.walks();
            faults[0] += o.faults();
        });
        TlbStats before = cpu.stats();
        for (int round = 0; round < 30; round++) {
            int n = 1 + r.nextInt(500);
            byte[] ops = new byte[n];
            long[] vas = new long[n];
            byte[] w = new byte[n];
            for (int i = 0; i < n; i++) {
                ops[i] = (byte) r.nextInt(3);
                w[i] = (byte) (1 << r.nextInt(4));
                vas[i] = DATA + 4096L * r.nextInt(pages) + 8 * r.nextInt(512);
            }
            cpu.replay(ops, vas, w, new long[n]);
            if (r.nextInt(5) == 0) {
                long p = DATA + 4096L * r.nextInt(pages - 1);
                cpu.run(() -> mm.mprotect(p, 4096, Protection.READ_WRITE_EXEC));
            }
        }
        TlbStats d = cpu.stats().minus(before);
        System.out.println("Hostile17 stats " + d);
        assertThat(d.hits()).isEqualTo(d.l1Hits() + d.stlbHits());
        assertThat(d.misses()).isEqualTo(d.misses4k() + d.misses2m() + d.misses1g());
        assertThat(d.walks()).isGreaterThanOrEqualTo(d.misses() + d.faults());
        assertThat(d.l1Hits()).isEqualTo(counts[AccessOutcome.Translation.L1_HIT.ordinal()]);
        assertThat(d.stlbHits()).isEqualTo(counts[AccessOutcome.Translation.STLB_HIT.ordinal()]);
        assertThat(d.misses()).isEqualTo(counts[AccessOutcome.Translation.WALK.ordinal()]);
        assertThat(d.faults()).isEqualTo(faults[0]);
        assertThat(d.walks()).isEqualTo(walks[0]);
        // a load-only workload: no D-bit assists, so walks are exactly misses + faults
        cpu.accessListener(null);
        m.flushTlbAll();
        TlbStats b2 = cpu.stats();
        long[] vas = new long[2000];
        for (int i = 0; i < vas.length; i++) {
            vas[i] = DATA + 4096L * r.nextInt(pages);
        }
        cpu.loadAll(vas, 8, new long[vas.length]);
        TlbStats d2 = cpu.stats().minus(b2);
        assertThat(d2.walks()).isEqualTo(d2.misses() + d2.faults());
        assertThat(d2.hits() + d2.misses()).isEqualTo(vas.length);
        assertThat(m.checkInvariants()).isEmpty();
        assertClosesClean(m);
    }

    // ---------------------------------------------------------------- shared PMD view, unlink

    @Test
    void twoSharersOfAHugetlbFileSeeOnePmdTableUntilOneUnmaps() {
        Machine m = Machine.builder().node(4 * GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 600)
                .checkInvariantsAfterEveryOperation(true).build();
        HugetlbFile file = m.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
        AddressSpace a = m.createAddressSpace();
        AddressSpace b = m.createAddressSpace();
        long aBase = 4 * GIB;
        long bBase = 8 * GIB;
        int shared = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
        a.mmap(file, 0, aBase, GIB, Protection.READ_WRITE, shared);
        b.mmap(file, 0, bBase, GIB, Protection.READ_WRITE, shared);
        Cpu ca = m.cpu(0);
        Cpu cb = m.cpu(1);
        ca.switchTo(a);
        cb.switchTo(b);
        ca.store(aBase + 5 * (2L << 20) + 8, 8, 0xc0ffee);
        cb.loadRecorded(bBase + 5 * (2L << 20) + 8, 8);
        AccessOutcome ob = cb.outcome();
        assertThat(ob.pageSize()).isEqualTo(PageSize.SIZE_2M);
        assertThat(ob.physicalAddress()).isEqualTo(a.translate(aBase + 5 * (2L << 20) + 8));
        assertThat(m.readPhysical(ob.physicalAddress(), 8)).isEqualTo(0xc0ffee);
        PageTableEntry pa = a.pageTableView().entry(aBase + 5 * (2L << 20), PageTableLevel.PMD).orElseThrow();
        PageTableEntry pb = b.pageTableView().entry(bBase + 5 * (2L << 20), PageTableLevel.PMD).orElseThrow();
        assertThat(pb.tablePa()).isEqualTo(pa.tablePa());
        assertThat(pb.raw()).isEqualTo(pa.raw());
        assertThat(pa.leaf()).isTrue();
        assertThat(pa.flags()).contains(PteFlag.PSE, PteFlag.PRESENT, PteFlag.USER);
        assertThat(pa.va()).isEqualTo(aBase + 5 * (2L << 20));
        assertThat(pb.va()).isEqualTo(bBase + 5 * (2L << 20));
        List<PageTableEntry> wb = b.pageTableView().walk(bBase + 5 * (2L << 20) + 8);
        assertThat(wb.get(wb.size() - 1).tablePa()).isEqualTo(pa.tablePa());
        assertThat(wb.get(0).tablePa()).isEqualTo(b.cr3());
        assertThat(a.cr3()).isNotEqualTo(b.cr3());
        // forEachLeaf on both ranges visits the same leaf at the same table
        List<Long> leavesA = new ArrayList<>();
        a.pageTableView().forEachLeaf(aBase, aBase + GIB, (va, level, raw, p) -> {
            leavesA.add(p);
            return true;
        });
        List<Long> leavesB = new ArrayList<>();
        b.pageTableView().forEachLeaf(bBase, bBase + GIB, (va, level, raw, p) -> {
            leavesB.add(p);
            return true;
        });
        assertThat(leavesB).isEqualTo(leavesA).isNotEmpty();
        // unmapping in b unshares: b's view has no PMD table there, a keeps its table and data
        cb.run(() -> b.munmap(bBase, GIB));
        assertThat(b.pageTableView().entry(bBase + 5 * (2L << 20), PageTableLevel.PMD)).isEmpty();
        assertThat(b.translate(bBase + 5 * (2L << 20) + 8)).isEqualTo(-1);
        assertThat(a.pageTableView().entry(aBase + 5 * (2L << 20), PageTableLevel.PMD).orElseThrow()).isEqualTo(pa);
        assertThat(ca.load(aBase + 5 * (2L << 20) + 8, 8)).isEqualTo(0xc0ffee);
        // close a: its view throws, b's still works
        PageTableView va = a.pageTableView();
        a.close();
        assertThatThrownBy(() -> va.walk(aBase)).isInstanceOf(ClosedException.class);
        assertThatThrownBy(() -> va.entry(aBase, PageTableLevel.PMD)).isInstanceOf(ClosedException.class);
        assertThatThrownBy(() -> va.forEachLeaf(aBase, aBase + GIB, (x, l, r, p) -> true)).isInstanceOf(ClosedException.class);
        assertThat(b.pageTableView().walk(bBase)).isNotEmpty();
        assertThat(file.cachedPages()).isEqualTo(1);
        assertClosesClean(m);
    }

    @Test
    void pageTableViewRejectsBadRanges() {
        AddressSpace[] h = new AddressSpace[1];
        Machine m = basic(h);
        PageTableView v = h[0].pageTableView();
        long limit = m.config().pagingMode().userAddressLimit();
        PageTableView.Visitor any = (va, l, r, p) -> true;
        assertThatThrownBy(() -> v.forEachLeaf(DATA + 1, DATA + 4096, any)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> v.forEachLeaf(DATA, DATA, any)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> v.forEachLeaf(DATA + 4096, DATA, any)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> v.forEachLeaf(0, limit + 4096, any)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> v.forEachLeaf(0, DATA, null)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> v.forEachLeaf(-4096, 0, any)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> v.entry(limit, PageTableLevel.PTE)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> v.entry(DATA, null)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> v.entry(DATA, PageTableLevel.P4D)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> v.walk(-1L)).isInstanceOf(InvalidArgumentException.class);
        assertThat(v.forEachLeaf(0, limit, any)).isTrue();
        m.cpu(0).storeAll(new long[] {DATA, DATA + 4096, DATA + 8192}, 8, new long[] {1, 2, 3});
        int[] seen = new int[1];
        assertThat(v.forEachLeaf(0, limit, (va, l, r, p) -> ++seen[0] < 2)).isFalse();
        assertThat(seen[0]).isEqualTo(2);
        // an empty walk for a hole: just the root entry, not present
        List<PageTableEntry> hole = v.walk(0x7000_0000_0000L);
        assertThat(hole).isNotEmpty();
        assertThat(hole.get(hole.size() - 1).present()).isFalse();
        assertThat(hole.get(0).tablePa()).isEqualTo(h[0].cr3());
        assertClosesClean(m);
    }

    @Test
    void unlinkWhileMappedKeepsTheDataAndFreesThePoolAtTheLastUnmap() {
        Machine m = Machine.builder().node(2 * GIB).cpus(1).hugePages(0, PageSize.SIZE_2M, 8)
                .checkInvariantsAfterEveryOperation(true).build();
        HugetlbFile f = m.hugetlbfs().create("f", 4L << 21, PageSize.SIZE_2M);
        AddressSpace mm = m.createAddressSpace();
        long base = 4 * GIB;
        mm.mmap(f, 0, base, 4L << 21, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
        AddressSpace child = mm.fork();
        Cpu cpu = m.cpu(0);
        cpu.switchTo(mm);
        cpu.store(base + 8, 8, 0x1234);
        HugetlbPoolState p0 = m.hugetlbfs().pool(0, PageSize.SIZE_2M);
        assertThat(m.hugetlbfs().unlink("f")).isSameAs(f);
        assertThat(f.isUnlinked()).isTrue();
        assertThat(m.hugetlbfs().files()).doesNotContain(f);
        assertThatThrownBy(() -> m.hugetlbfs().unlink("f")).isInstanceOf(InvalidArgumentException.class);
        HugetlbFile g = m.hugetlbfs().create("f", 1L << 21, PageSize.SIZE_2M);
        assertThat(g).isNotSameAs(f);
        assertThat(m.hugetlbfs().pool(0, PageSize.SIZE_2M)).isEqualTo(new HugetlbPoolState(0, PageSize.SIZE_2M, p0.total(),
                p0.free(), p0.reserved(), p0.surplus()));
        assertThat(catchThrowable(() -> mm.mmap(f, 0, 8 * GIB, 1L << 21, Protection.READ, MapFlags.MAP_SHARED))).isNotNull();
        assertThat(catchThrowable(() -> f.truncate(0))).isNotNull();
        assertThat(cpu.load(base + 8, 8)).isEqualTo(0x1234);
        cpu.switchTo(child);
        assertThat(cpu.load(base + 8, 8)).as("child sees the shared page").isEqualTo(0x1234);
        cpu.store(base + (1L << 21), 8, 77);
        cpu.switchTo(mm);
        assertThat(cpu.load(base + (1L << 21), 8)).isEqualTo(77);
        mm.munmap(base, 4L << 21);
        assertThat(m.hugetlbfs().pool(0, PageSize.SIZE_2M).free()).as("child still maps it").isLessThan(p0.total() - 1);
        child.close();
        HugetlbPoolState after = m.hugetlbfs().pool(0, PageSize.SIZE_2M);
        // g is not mapped, so nothing is reserved or in use any more
        assertThat(after.free()).isEqualTo(after.total());
        assertThat(after.reserved()).isZero();
        assertThat(f.cachedPages()).isZero();
        assertClosesClean(m);
    }

    // ---------------------------------------------------------------- vmstat, minorFaults, readPhysical

    @Test
    void vmstatSnapshotsMinusAndResetRules() {
        AddressSpace[] h = new AddressSpace[1];
        Machine m = basic(h);
        Cpu cpu = m.cpu(0);
        AddressSpace mm = h[0];
        VmstatSnapshot s0 = m.vmstatSnapshot();
        long min0 = mm.counters().minorFaults();
        TlbStats t0 = cpu.stats();
        long[] vas = new long[10];
        for (int i = 0; i < 10; i++) {
            vas[i] = DATA + 4096L * i;
        }
        cpu.storeAll(vas, 8, new long[10]);
        VmstatSnapshot s1 = m.vmstatSnapshot();
        VmstatSnapshot d = s1.minus(s0);
        assertThat(d.get(VmstatCounter.PGFAULT)).isEqualTo(10);
        assertThat(mm.counters().minorFaults() - min0).isEqualTo(10);
        assertThat(cpu.stats().minus(t0).faults()).isEqualTo(10);
        assertThat(d.asMap().get("pgfault")).isEqualTo(10);
        assertThat(m.vmstat()).isEqualTo(s1.asMap());
        assertThatThrownBy(() -> s0.minus(s1)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> s1.minus(null)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> s1.get(null)).isInstanceOf(InvalidArgumentException.class);
        assertThat(s1.minus(s1).asMap().values()).containsOnly(0L);
        // a refused fault counts in neither
        long pg = m.vmstatSnapshot().get(VmstatCounter.PGFAULT);
        long min = mm.counters().minorFaults();
        assertThatThrownBy(() -> cpu.store(RO, 8, 1)).isInstanceOf(SegmentationFaultException.class);
        assertThat(mm.counters().minorFaults()).isEqualTo(min);
        // reset: vmstat from zero, minorFaults and TLB stats keep theirs
        long minBefore = mm.counters().minorFaults();
        TlbStats tBefore = cpu.stats();
        m.resetVmstat();
        VmstatSnapshot z = m.vmstatSnapshot();
        assertThat(z.asMap().values()).containsOnly(0L);
        assertThat(m.vmstat().values()).containsOnly(0L);
        assertThat(mm.counters().minorFaults()).isEqualTo(minBefore);
        assertThat(cpu.stats()).isEqualTo(tBefore);
        assertThatThrownBy(() -> z.minus(s1)).isInstanceOf(InvalidArgumentException.class);
        cpu.store(DATA + 4096 * 12, 8, 1);
        assertThat(m.vmstatSnapshot().minus(z).get(VmstatCounter.PGFAULT)).isEqualTo(1);
        assertThat(pg).isGreaterThanOrEqualTo(10);
        assertThatThrownBy(() -> VmstatSnapshot.of(java.util.Map.of(VmstatCounter.PGFAULT, -1L)))
                .isInstanceOf(InvalidArgumentException.class);
        assertThat(m.toString()).contains("1");
        assertClosesClean(m);
        assertThat(m.toString()).isNotEmpty();
        assertThatThrownBy(m::vmstatSnapshot).isInstanceOf(ClosedException.class);
        assertThatThrownBy(m::resetVmstat).isInstanceOf(ClosedException.class);
        assertThatThrownBy(() -> m.readPhysical(0, 8)).isInstanceOf(ClosedException.class);
    }

    @Test
    void readPhysicalRejectsBadInputAndLeavesTheBufferAlone() {
        AddressSpace[] h = new AddressSpace[1];
        Machine m = basic(h);
        long mem = GIB;
        for (int w : new int[] {0, 3, 5, 16, -1}) {
            assertThatThrownBy(() -> m.readPhysical(0, w)).isInstanceOf(InvalidArgumentException.class);
        }
        assertThatThrownBy(() -> m.readPhysical(-8, 8)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> m.readPhysical(mem, 1)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> m.readPhysical(mem - 4, 8)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> m.readPhysical(Long.MAX_VALUE - 2, 8)).isInstanceOf(InvalidArgumentException.class);
        assertThat(m.readPhysical(mem - 8, 8)).isZero();
        byte[] dst = new byte[16];
        Arrays.fill(dst, (byte) 7);
        assertThatThrownBy(() -> m.readPhysical(mem - 8, dst, 0, 16)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> m.readPhysical(0, dst, 10, 8)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> m.readPhysical(0, dst, -1, 4)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> m.readPhysical(0, dst, 0, -1)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> m.readPhysical(0, (byte[]) null, 0, 0)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> m.readPhysical(Long.MAX_VALUE, dst, 0, 16)).isInstanceOf(InvalidArgumentException.class);
        assertThat(dst).containsOnly((byte) 7);
        ByteBuffer ro = ByteBuffer.allocate(8).asReadOnlyBuffer();
        assertThatThrownBy(() -> m.readPhysical(0, ro)).isInstanceOf(InvalidArgumentException.class);
        ByteBuffer bb = ByteBuffer.allocateDirect(16);
        bb.position(4);
        assertThatThrownBy(() -> m.readPhysical(mem - 4, bb)).isInstanceOf(InvalidArgumentException.class);
        assertThat(bb.position()).isEqualTo(4);
        // a store crossing two frames reads back through readPhysical of each part
        Cpu cpu = m.cpu(0);
        cpu.store(DATA + 4096 - 4, 8, 0x0807060504030201L);
        long p1 = h[0].translate(DATA + 4096 - 4);
        long p2 = h[0].translate(DATA + 4096);
        assertThat(m.readPhysical(p1, 4)).isEqualTo(0x04030201L);
        assertThat(m.readPhysical(p2, 4)).isEqualTo(0x08070605L);
        ByteBuffer ok = ByteBuffer.allocate(4);
        m.readPhysical(p2, ok);
        assertThat(ok.position()).isEqualTo(4);
        assertThat(ok.get(0)).isEqualTo((byte) 5);
        assertClosesClean(m);
    }
}
