package org.vmcore.impl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.vmcore.api.Access;
import org.vmcore.api.Advice;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.AllocationKind;
import org.vmcore.api.Errno;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;

/**
 * For every allocation an operation reaches (frames, tables, huge pages), the allocation is made
 * to fail: the operation must fail cleanly (OutOfMemoryException, or -ENOMEM for migration),
 * leak no frame and no huge page, and leave the invariants intact.
 */
class FaultInjectionTest {
    private static final long VA = 0x10_0000_0000L;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;

    /** The world an operation runs in. */
    record World(Machine machine, AddressSpace a, AddressSpace b, HugetlbFile file) {
    }

    /** An operation; returns normally on success, throws OutOfMemoryException, or returns a migration status. */
    interface Op {
        int run(World w);
    }

    /** Untimed, uninjected preparation of the world before the operation. */
    interface Prepare {
        void run(World w);
    }

    private static final Prepare NOTHING = w -> { };

    private static World world() {
        Machine machine = Machine.builder().node(GIB).node(GIB).hugePages(0, PageSize.SIZE_2M, 16).hugePages(1, PageSize.SIZE_2M, 16)
                .swap(64 * 4096).build();
        HugetlbFile file = machine.hugetlbfs().create("f", 16 * MIB, PageSize.SIZE_2M);
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        a.mmap(VA, 16 * 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
        a.mmap(file, 0, 4 * GIB, 8 * MIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
        a.mmap(file, 0, 5 * GIB, 4 * MIB, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_FIXED);
        a.fault(5 * GIB, Access.READ);
        return new World(machine, a, b, file);
    }

    static Stream<Arguments> operations() {
        List<Arguments> ops = new ArrayList<>();
        ops.add(Arguments.of("mmap anonymous with populate", NOTHING, (Op) w -> {
            w.b().mmap(VA, 64 * 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
            return 0;
        }));
        ops.add(Arguments.of("mmap hugetlb with populate", NOTHING, (Op) w -> {
            w.b().mmap(w.file(), 0, 4 * GIB, 16 * MIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED
                    | MapFlags.MAP_POPULATE);
            return 0;
        }));
        ops.add(Arguments.of("anonymous fault", (Prepare) w -> w.b().mmap(VA + GIB, 4096, Protection.READ_WRITE, ANON), (Op) w -> {
            w.b().fault(VA + GIB, Access.WRITE);
            return 0;
        }));
        ops.add(Arguments.of("shmem fault", (Prepare) w -> w.b().mmap(VA + 2 * GIB, 4096, Protection.READ_WRITE,
                MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED), (Op) w -> {
                    w.b().fault(VA + 2 * GIB, Access.WRITE);
                    return 0;
                }));
        ops.add(Arguments.of("fork", NOTHING, (Op) w -> {
            w.a().fork();
            return 0;
        }));
        ops.add(Arguments.of("copy-on-write fault", (Prepare) w -> w.a().fork(), (Op) w -> {
            w.a().fault(VA, Access.WRITE);
            return 0;
        }));
        ops.add(Arguments.of("hugetlb private copy-on-write", NOTHING, (Op) w -> {
            w.a().fault(5 * GIB, Access.WRITE);
            return 0;
        }));
        ops.add(Arguments.of("hugetlb shared fault", (Prepare) w -> w.b().mmap(w.file(), 8 * MIB, 6 * GIB, 8 * MIB,
                Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED), (Op) w -> {
                    w.b().fault(6 * GIB, Access.WRITE);
                    return 0;
                }));
        ops.add(Arguments.of("a sharer's first fault (huge_pmd_share)", (Prepare) w -> w.b().mmap(w.file(), 0, 6 * GIB, 8 * MIB,
                Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED), (Op) w -> {
                    w.b().fault(6 * GIB, Access.READ);
                    return 0;
                }));
        ops.add(Arguments.of("move_pages of a 4 KiB page", NOTHING, (Op) w -> w.machine().migration()
                .movePages(w.a(), new long[] {VA}, new int[] {1}, MigrationService.MPOL_MF_MOVE_ALL).status(0) == 1 ? 0 : -Errno.ENOMEM));
        ops.add(Arguments.of("move_pages of a 2 MiB page", NOTHING, (Op) w -> {
            int status = w.machine().migration().movePages(w.a(), new long[] {4 * GIB}, new int[] {1},
                    MigrationService.MPOL_MF_MOVE_ALL).status(0);
            return status == 1 ? 0 : status;
        }));
        ops.add(Arguments.of("mremap move, entry by entry", (Prepare) w -> w.b().mmap(VA + 3 * GIB, 16 * 4096, Protection.READ_WRITE,
                ANON | MapFlags.MAP_POPULATE), (Op) w -> {
                    w.b().mremap(VA + 3 * GIB, 16 * 4096, 16 * 4096, MapFlags.MREMAP_MAYMOVE | MapFlags.MREMAP_FIXED,
                            VA + 7 * GIB + 4096);
                    return 0;
                }));
        ops.add(Arguments.of("mremap move of a private hugetlb mapping", NOTHING, (Op) w -> {
            w.a().mremap(5 * GIB, 4 * MIB, 4 * MIB, MapFlags.MREMAP_MAYMOVE | MapFlags.MREMAP_FIXED, 9 * GIB);
            return 0;
        }));
        // do_swap_page: the page the slot is read into (swapin_readahead's allocation); a failure leaves the swap entry
        ops.add(Arguments.of("swap-in fault", (Prepare) w -> w.machine().reclaim(0, 16), (Op) w -> {
            w.a().fault(VA, Access.WRITE);
            return 0;
        }));
        ops.add(Arguments.of("fork of swapped-out pages", (Prepare) w -> w.machine().reclaim(0, 8), (Op) w -> {
            w.a().fork();
            return 0;
        }));
        // transparent huge pages: the 2 MiB folio (a failure falls back to 4 KiB pages), the PTE table
        // deposited with it (allocated before the tables above it), a collapse's folio, a migration's target
        ops.add(Arguments.of("THP fault", (Prepare) w -> thpRange(w, 4 * GIB, false), (Op) w -> {
            w.b().fault(VA + 4 * GIB, Access.WRITE);
            return 0;
        }));
        ops.add(Arguments.of("MADV_COLLAPSE", (Prepare) w -> thpRange(w, 5 * GIB, true), (Op) w ->
                w.b().madvise(VA + 5 * GIB, 2 * MIB, Advice.COLLAPSE)));
        ops.add(Arguments.of("move_pages of a transparent huge page", (Prepare) w -> {
            thpRange(w, 6 * GIB, false);
            w.b().fault(VA + 6 * GIB, Access.WRITE);
        }, (Op) w -> {
            int status = w.machine().migration().movePages(w.b(), new long[] {VA + 6 * GIB}, new int[] {1},
                    MigrationService.MPOL_MF_MOVE_ALL).status(0);
            return status == 1 ? 0 : status;
        }));
        ops.add(Arguments.of("fork of a transparent huge page", (Prepare) w -> {
            thpRange(w, 7 * GIB, false);
            w.b().fault(VA + 7 * GIB, Access.WRITE);
        }, (Op) w -> {
            w.b().fork();
            return 0;
        }));
        return ops.stream();
    }

    /** 2 MiB of private anonymous memory in b at VA + off: advised MADV_HUGEPAGE, or written as 4 KiB pages. */
    private static void thpRange(World w, long off, boolean smallPages) {
        w.b().mmap(VA + off, 2 * MIB, Protection.READ_WRITE, ANON);
        if (smallPages) {
            for (long p = 0; p < 2 * MIB; p += 4096) {
                w.b().fault(VA + off + p, Access.WRITE);
            }
        } else {
            w.b().madvise(VA + off, 2 * MIB, Advice.HUGEPAGE);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("operations")
    void everyAllocationPointFailsCleanly(String name, Prepare prepare, Op op) {
        long[] reached = new long[AllocationKind.values().length];
        World dry = world();
        try {
            prepare.run(dry);
            long[] before = counts(dry.machine());
            assertThat(op.run(dry)).as(name + " succeeds without injection").isZero();
            long[] after = counts(dry.machine());
            for (int k = 0; k < reached.length; k++) {
                reached[k] = after[k] - before[k];
            }
        } finally {
            dry.machine().close();
        }
        int failed = 0;
        for (AllocationKind kind : AllocationKind.values()) {
            for (long n = 1; n <= reached[kind.ordinal()]; n++) {
                World w = world();
                try {
                    prepare.run(w);
                    String before = Fixtures.state(w.machine());
                    long hugeBaseline = hugeFree(w) + w.file().cachedPages();
                    w.machine().failNthAllocation(kind, n, 2); // two: the fallback to the other node fails too
                    String what = name + ": " + kind + " allocation #" + n;
                    int status;
                    try {
                        status = op.run(w);
                    } catch (OutOfMemoryException e) {
                        status = -Errno.ENOMEM;
                        assertThat(e.getMessage()).as(what).isNotBlank();
                    }
                    assertThat(w.machine().checkInvariants()).as(what + " leaves the invariants intact").isEmpty();
                    if (status == 0) {
                        continue; // recovered: a frame came from another node
                    }
                    failed++;
                    assertThat(status).as(what + " fails with -ENOMEM").isEqualTo(-Errno.ENOMEM);
                    if (name.startsWith("mmap hugetlb")) {
                        // pages the populate faulted in stay in the file's page cache, as file data does
                        assertThat(hugeFree(w) + w.file().cachedPages()).as(what + " loses no huge page").isEqualTo(hugeBaseline);
                        assertThat(w.b().vmas()).as(what + " leaves no VMA").isEmpty();
                    } else if (!name.startsWith("fork")) { // a failed fork keeps the parent write-protected, as the kernel does
                        assertThat(Fixtures.state(w.machine())).as(what + " leaves no trace: frames, pools, tables, VMAs")
                                .isEqualTo(before);
                    }
                } finally {
                    w.machine().close();
                }
            }
        }
        assertThat(failed).as(name + ": some injected failure made it fail").isPositive();
    }

    private static long hugeFree(World w) {
        return w.machine().hugetlbfs().pool(0, PageSize.SIZE_2M).free() + w.machine().hugetlbfs().pool(1, PageSize.SIZE_2M).free();
    }

    private static long[] counts(Machine machine) {
        long[] c = new long[AllocationKind.values().length];
        for (AllocationKind kind : AllocationKind.values()) {
            c[kind.ordinal()] = machine.allocationCount(kind);
        }
        return c;
    }

    @org.junit.jupiter.api.Test
    void armingIsValidated() {
        try (Machine machine = Machine.builder().build()) {
            assertThatThrownBy(() -> machine.failNthAllocation(AllocationKind.FRAME, 0)).hasMessageContaining("nth=0");
            assertThatThrownBy(() -> machine.failNthAllocation(null, 1)).hasMessageContaining("kind");
        }
    }
}
