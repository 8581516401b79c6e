package org.vmcore.examples;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;

class DeviceTlbTest {
    private static final long VA = 0x7f00_0000_0000L;
    private static final long GIB = 1L << 30;
    private final Machine machine = Machine.builder().node(4 * GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 600)
            .detectStaleTranslations(true).build();

    @AfterEach
    void close() {
        machine.close();
    }

    @Test
    void aCoherentDeviceNeverUsesAStaleTranslation() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 4 * 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
        Cpu cpu = machine.cpu(0);
        cpu.switchTo(mm);
        DeviceTlb dev = new DeviceTlb(machine, mm, "dev", true);
        cpu.store(VA, 8, 1);
        assertThat(dev.read(VA)).isEqualTo(1);
        assertThat(dev.cached()).isEqualTo(1);
        AddressSpace child = mm.fork();
        cpu.store(VA, 8, 2); // COW: the parent's page changes
        assertThat(dev.read(VA)).as("the device sees the parent's new page").isEqualTo(2);
        dev.write(VA + 8, 3);
        assertThat(cpu.load(VA + 8, 8)).isEqualTo(3);
        mm.munmap(VA, 4 * 4096);
        assertThat(dev.cached()).isZero();
        child.close();
        assertThat(dev.staleUses()).isZero();
        assertThat(machine.staleAccesses()).isEmpty();
        assertThat(dev.received()).contains("start CLEAR [0x7f0000000000, 0x7f0000001000)",
                "start UNMAP [0x7f0000000000, 0x7f0000004000)");
    }

    @Test
    void theCheckerFlagsADeviceThatIgnoresNotifiers() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
        Cpu cpu = machine.cpu(0);
        cpu.switchTo(mm);
        DeviceTlb broken = new DeviceTlb(machine, mm, "broken", false);
        cpu.store(VA, 8, 1);
        assertThat(broken.read(VA)).isEqualTo(1);
        AddressSpace child = mm.fork();
        cpu.store(VA, 8, 2);
        assertThat(broken.read(VA)).as("the broken device still reads the old page").isEqualTo(1);
        assertThat(broken.staleUses()).isEqualTo(1);
        assertThat(machine.staleAccesses()).singleElement().satisfies(s -> {
            assertThat(s.who()).isEqualTo("broken");
            assertThat(s.addressSpace()).isEqualTo(mm);
            assertThat(s.currentPfn()).isEqualTo(mm.pageAt(VA));
        });
        child.close();
    }

    @Test
    void aDeviceOnOneSharerIsToldWhenItsWindowIsUnshared() {
        HugetlbFile file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        a.mmap(file, 0, GIB, GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
        b.mmap(file, 0, 3 * GIB, GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
        b.fault(3 * GIB, Access.READ);
        DeviceTlb devB = new DeviceTlb(machine, b, "devB", true);
        devB.write(3 * GIB + 0x40_0000, 9);
        b.mprotect(3 * GIB + 0x40_0000, 0x20_0000, Protection.READ); // split inside the window
        assertThat(devB.received()).contains("start CLEAR [0xc0000000, 0x100000000)");
        assertThat(devB.cached()).isZero();
        assertThat(devB.read(3 * GIB + 0x40_0000)).isEqualTo(9);
        assertThat(devB.staleUses()).isZero();
    }

    @Test
    void theExampleRunsAndReportsTheBrokenDevice() {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        PrintStream old = System.out;
        System.setOut(new PrintStream(bytes, true, StandardCharsets.UTF_8));
        try {
            SecondaryMmu.main(new String[0]);
        } finally {
            System.setOut(old);
        }
        String report = bytes.toString(StandardCharsets.UTF_8);
        assertThat(report).contains("devtlb reads 2, broken-devtlb reads 1");
        assertThat(report).contains("devtlb: ").contains("0 stale uses");
        assertThat(report).containsPattern("broken-devtlb: \\d+ hits, \\d+ misses, [1-9]\\d* stale uses");
        assertThat(report).contains("broken-devtlb mm1 load");
    }
}
