package org.vmcore.impl.mm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.Protection;
import org.vmcore.impl.Fixtures;

/**
 * mremap(2) of anonymous memory (mm/mremap.c), from outside. Each expectation is what the kernel
 * of the development machine did with the same calls (docs/kernel-parity/mremap.c and
 * mremap.out): shrink, grow in place, grow by moving, a 2 MiB-aligned move that carries its PTE
 * table, and the errors.
 */
class MremapTest {
    private static final long P = 4096;
    private static final long M = 2 * MIB;
    private static final long A = 0x2000_0000_0000L;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    private static final int MAYMOVE = MapFlags.MREMAP_MAYMOVE;
    private static final int FIXED = MapFlags.MREMAP_FIXED;

    private final Machine machine = Machine.builder().node(GIB).node(GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 4)
            .detectStaleTranslations(true).checkInvariantsAfterEveryOperation(true).build();
    private final Cpu cpu = machine.cpu(0);

    @AfterEach
    void close() {
        Fixtures.closeChecked(machine);
    }

    private AddressSpace written(long at, long pages) {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(at, pages * P, Protection.READ_WRITE, ANON);
        cpu.switchTo(mm);
        for (int i = 0; i < pages; i++) {
            cpu.store(at + i * P, 1, 10 + i);
        }
        return mm;
    }

    @Test
    @DisplayName("shrink, grow in place, refuse to grow without MREMAP_MAYMOVE, grow by moving (the kernel's mremap.out lines 1-5)")
    void shrinkGrowAndMove() {
        AddressSpace mm = written(A, 8);
        assertThat(mm.mremap(A, 8 * P, 4 * P, 0, 0)).isEqualTo(A);
        assertThat(mm.counters().anonPages()).as("RssAnon -16 KiB").isEqualTo(4);
        assertThat(cpu.load(A + 3 * P, 1)).isEqualTo(13);
        assertThat(mm.mremap(A, 4 * P, 6 * P, 0, 0)).as("grown in place").isEqualTo(A);
        assertThat(cpu.load(A + 5 * P, 1)).isZero();
        mm.mmap(A + 6 * P, P, Protection.READ, ANON); // a blocker right after
        String before = Fixtures.state(machine);
        assertThatThrownBy(() -> mm.mremap(A, 6 * P, 10 * P, 0, 0)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("-ENOMEM");
        assertThat(Fixtures.state(machine)).isEqualTo(before);
        long anon = mm.counters().anonPages();
        long r = mm.mremap(A, 6 * P, 10 * P, MAYMOVE, 0);
        assertThat(r).isNotEqualTo(A);
        assertThat(cpu.load(r, 1)).isEqualTo(10);
        assertThat(cpu.load(r + 3 * P, 1)).isEqualTo(13);
        assertThat(cpu.load(r + 8 * P, 1)).isZero();
        assertThat(mm.counters().anonPages()).as("moved, not copied: RssAnon +0, then the read maps the zero page").isEqualTo(anon);
        assertThatThrownBy(() -> mm.mremap(A, P, P, 0, 0)).as("the old range is unmapped (-EFAULT)")
                .isInstanceOf(InvalidArgumentException.class).hasMessageContaining("-EFAULT");
        assertThat(mm.findVma(r)).isPresent();
    }

    @Test
    @DisplayName("a 2 MiB-aligned move carries its PTE table whole (move_normal_pmd): no table is allocated (VmPTE +0)")
    void anAlignedMoveCarriesTheTable() {
        long b = 0x2100_0000_0000L;
        AddressSpace mm = written(b, 512);
        long table = mm.pageTableView().entry(b, PageTableLevel.PMD).orElseThrow().pa();
        long tables = mm.counters().pageTablePages();
        long c = mm.mremap(b, M, M, MAYMOVE | FIXED, b + M);
        assertThat(c).isEqualTo(b + M);
        assertThat(mm.counters().pageTablePages()).isEqualTo(tables);
        assertThat(mm.pageTableView().entry(c, PageTableLevel.PMD).orElseThrow().pa()).as("the same PTE table").isEqualTo(table);
        assertThat(cpu.load(c + 511 * P, 1)).isEqualTo((byte) (10 + 511));
        assertThat(mm.translate(b)).isEqualTo(-1);
    }

    @Test
    @DisplayName("an unaligned move goes entry by entry; the pages keep their frames, and their rmap and migration find them")
    void anUnalignedMoveKeepsFramesAndRmap() {
        AddressSpace mm = written(A, 4);
        long frame = mm.pageAt(A + P);
        AddressSpace child = mm.fork(); // the pages are shared with the child: the anon_vma chain must follow the move
        long r = mm.mremap(A, 4 * P, 4 * P, MAYMOVE | FIXED, A + 64 * P + P);
        assertThat(mm.pageAt(r + P)).isEqualTo(frame);
        assertThat(machine.rmap().mappings(frame)).extracting(m -> m.address()).containsExactlyInAnyOrder(A + P, r + P);
        var moved = machine.migration().movePages(mm, new long[] {r + P}, new int[] {1}, MigrationService.MPOL_MF_MOVE_ALL);
        assertThat(moved.status(0)).isEqualTo(1);
        assertThat(cpu.load(r + P, 1)).isEqualTo(11);
        assertThat(child.pageAt(A + P)).isEqualTo(mm.pageAt(r + P)).isNotEqualTo(frame);
        cpu.store(r + P, 1, 99); // copy-on-write after the move: the child keeps its value
        cpu.switchTo(child);
        assertThat(cpu.load(A + P, 1)).isEqualTo(11);
        child.close();
    }

    @Test
    @DisplayName("the errors of mremap.out: FIXED without MAYMOVE, overlap, unaligned, zero lengths (-EINVAL); unmapped or across the VMA's end (-EFAULT)")
    void badArgumentsChangeNothing() {
        long c = 0x2100_0020_0000L;
        AddressSpace mm = written(c, 512);
        String before = Fixtures.state(machine);
        assertThatThrownBy(() -> mm.mremap(c, M, M, FIXED, c + 2 * M)).hasMessageContaining("-EINVAL");
        assertThatThrownBy(() -> mm.mremap(c, M, M, MAYMOVE | FIXED, c + P)).hasMessageContaining("-EINVAL");
        assertThatThrownBy(() -> mm.mremap(c + 1, P, P, 0, 0)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> mm.mremap(c, 0, P, 0, 0)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> mm.mremap(c, P, 0, 0, 0)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> mm.mremap(0x3000_0000_0000L, P, 2 * P, MAYMOVE, 0)).hasMessageContaining("-EFAULT");
        assertThatThrownBy(() -> mm.mremap(c, 2 * M, 4 * M, MAYMOVE, 0)).hasMessageContaining("-EFAULT");
        assertThatThrownBy(() -> mm.mremap(c, M, M, 0x4, 0)).as("MREMAP_DONTUNMAP").hasMessageContaining("DONTUNMAP");
        assertThat(Fixtures.state(machine)).isEqualTo(before);
    }

    @Test
    @DisplayName("shared anonymous memory moves with its object: the other mapper still sees the same page")
    void sharedMemoryMoves() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(A, 4 * P, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
        cpu.switchTo(mm);
        cpu.store(A + P, 8, 5);
        AddressSpace child = mm.fork();
        long r = mm.mremap(A, 4 * P, 8 * P, MAYMOVE, 0);
        cpu.store(r + P, 8, 6);
        assertThat(child.fault(A + P, Access.READ)).isNotNull();
        cpu.switchTo(child);
        assertThat(cpu.load(A + P, 8)).isEqualTo(6);
        assertThat(mm.counters().shmemPages()).isEqualTo(1);
        child.close();
    }

    @Test
    @DisplayName("hugetlb: shrink gives the tail's reservation back, grow and unaligned lengths are -EINVAL, a move keeps data and pool (the kernel's mremap_hugetlb.out)")
    void hugetlbShrinksAndMoves() {
        HugetlbFile file = machine.hugetlbfs().create("h", 4 * M, PageSize.SIZE_2M);
        AddressSpace mm = machine.createAddressSpace();
        long p = mm.mmap(file, 0, 0x4000_0000_0000L, 4 * M, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_FIXED);
        cpu.switchTo(mm);
        cpu.store(p, 1, 1);
        cpu.store(p + M, 1, 2);
        assertThat(pool().free()).isEqualTo(2);
        assertThat(pool().reserved()).isEqualTo(2);
        String before = Fixtures.state(machine);
        assertThatThrownBy(() -> mm.mremap(p, 4 * M, 6 * M, MAYMOVE, 0)).hasMessageContaining("cannot grow");
        assertThatThrownBy(() -> mm.mremap(p, 3 * M, 3 * M + P, MAYMOVE, 0)).hasMessageContaining("-EINVAL");
        assertThatThrownBy(() -> mm.mremap(p + P, M, M, MAYMOVE, 0)).isInstanceOf(InvalidArgumentException.class);
        assertThat(Fixtures.state(machine)).isEqualTo(before);
        assertThat(mm.mremap(p, 4 * M, 3 * M, 0, 0)).isEqualTo(p);
        assertThat(pool().reserved()).as("the private owner's tail reservation goes (rsvd 2 -> 1)").isEqualTo(1);
        long r = mm.mremap(p, 3 * M, 3 * M, MAYMOVE | FIXED, 0x4100_0000_0000L);
        assertThat(r).isEqualTo(0x4100_0000_0000L);
        assertThat(cpu.load(r, 1)).isEqualTo(1);
        assertThat(cpu.load(r + M, 1)).isEqualTo(2);
        assertThat(pool().free()).isEqualTo(2);
        assertThat(pool().reserved()).as("the reservation moved with the mapping").isEqualTo(1);
        assertThatThrownBy(() -> mm.mremap(r, 3 * M, 3 * M, MAYMOVE | FIXED, r + M)).hasMessageContaining("-EINVAL");
        assertThatThrownBy(() -> mm.mremap(r, 3 * M, 3 * M, MAYMOVE | FIXED, 0x4200_0000_1000L)).isInstanceOf(InvalidArgumentException.class);
        assertThat(cpu.load(r + 2 * M, 1)).as("the reserved page faults in at the new place").isZero();
        assertThat(pool().reserved()).isZero();
    }

    private org.vmcore.api.HugetlbPoolState pool() {
        return machine.hugetlbfs().pool(0, PageSize.SIZE_2M);
    }

    @Test
    @DisplayName("a shared PMD window is unshared before its entries move: the sharer keeps the table, the mover faults the pages back in")
    void aSharedWindowIsUnsharedBeforeTheMove() {
        Machine big = Machine.builder().node(4 * GIB).cpus(1).hugePages(0, PageSize.SIZE_2M, 1100).detectStaleTranslations(true).build();
        try {
            Fixtures.SharedWindow w = Fixtures.sharedWindow(big, 8 * GIB, 16 * GIB, true);
            w.b().fault(16 * GIB, Access.READ);
            long page = w.b().pageAt(16 * GIB);
            long r = w.b().mremap(16 * GIB, GIB, GIB, MAYMOVE | FIXED, 32 * GIB);
            assertThat(w.a().pageAt(8 * GIB)).as("a keeps the shared table and its page").isEqualTo(page);
            assertThat(w.b().translate(r)).as("b's window was unshared, not moved: nothing mapped yet").isEqualTo(-1);
            assertThat(w.b().fault(r, Access.READ)).as("the new window is whole and aligned: huge_pmd_share finds a's table again")
                    .isEqualTo(org.vmcore.api.FaultResult.SHARED_TABLE);
            assertThat(w.b().pageAt(r)).as("the same file page at the new place").isEqualTo(page);
            assertThat(big.checkInvariants()).isEmpty();
        } finally {
            big.close();
        }
    }
}
