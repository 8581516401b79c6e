package org.vmcore.impl.hugetlb;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.impl.Fixtures.SharedWindow;
import org.vmcore.impl.Fixtures;

class TruncateTest {
    @Test
    void truncatingASharedWindowUnmapsThePagesPastTheEndEverywhere() {
        try (Machine machine = Machine.builder().node(4 * GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 600)
                .checkInvariantsAfterEveryOperation(true).detectStaleTranslations(true).build()) {
            SharedWindow window = Fixtures.sharedWindow(machine, GIB, 3 * GIB, true);
            HugetlbFile file = window.file();
            AddressSpace a = window.a();
            AddressSpace b = window.b();
            Cpu ca = machine.cpu(0);
            Cpu cb = machine.cpu(1);
            ca.switchTo(a);
            cb.switchTo(b);
            ca.store(GIB + 10 * MIB, 8, 5);
            assertThat(cb.load(3 * GIB + 10 * MIB, 8)).isEqualTo(5);
            assertThat(cb.load(3 * GIB + 600 * MIB, 8)).isZero();
            long free = machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free();

            file.truncate(512 * MIB);
            assertThat(file.size()).isEqualTo(512 * MIB);
            assertThat(file.cachedPages()).isEqualTo(256);
            assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free()).as("256 pages back in the pool").isEqualTo(free + 256);
            assertThat(cb.tlbHolds(b, 3 * GIB + 600 * MIB)).isFalse();
            assertThatThrownBy(() -> cb.load(3 * GIB + 600 * MIB, 8)).isInstanceOfSatisfying(SegmentationFaultException.class,
                    e -> assertThat(e.cause()).isEqualTo(SegmentationFaultException.Cause.BEYOND_EOF));
            assertThatThrownBy(() -> ca.store(GIB + 700 * MIB, 8, 1)).isInstanceOf(SegmentationFaultException.class);
            assertThat(cb.load(3 * GIB + 10 * MIB, 8)).as("data before the end stays").isEqualTo(5);
            assertThat(ca.load(GIB + 10 * MIB, 8)).isEqualTo(5);
            assertThat(a.vmas()).hasSize(1);
            assertThat(machine.staleAccessCount()).isZero();

            assertThatThrownBy(() -> file.truncate(GIB)).isInstanceOf(InvalidArgumentException.class).hasMessageContaining("only shrink");
            assertThatThrownBy(() -> file.truncate(MIB)).isInstanceOf(InvalidArgumentException.class).hasMessageContaining("multiple of 2M");
            file.truncate(0);
            assertThat(file.cachedPages()).isZero();
            assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free()).isEqualTo(600);
        }
    }

    @Test
    void truncatingUnderAPrivateMappingDropsItsCopiesToo() {
        try (Machine machine = Machine.builder().node(2 * GIB).hugePages(0, PageSize.SIZE_2M, 64)
                .checkInvariantsAfterEveryOperation(true).build()) {
            HugetlbFile file = machine.hugetlbfs().create("f", 16 * MIB, PageSize.SIZE_2M);
            AddressSpace a = machine.createAddressSpace();
            long va = a.mmap(file, 0, 0, 16 * MIB, Protection.READ_WRITE, MapFlags.MAP_PRIVATE);
            a.fault(va + 14 * MIB, Access.WRITE); // a private copy past the new end
            assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).reserved()).as("7 slots still reserved").isEqualTo(7);
            file.truncate(8 * MIB);
            assertThat(a.pageAt(va + 14 * MIB)).isEqualTo(-1);
            assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).reserved()).as("only the 4 slots before the new end stay reserved")
                    .isEqualTo(4);
            a.munmap(va, 16 * MIB);
            assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).reserved()).isZero();
            assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free()).isEqualTo(64);
        }
    }
}
