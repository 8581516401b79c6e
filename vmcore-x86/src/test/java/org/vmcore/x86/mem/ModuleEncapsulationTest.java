package org.vmcore.x86.mem;

import static org.assertj.core.api.Assertions.assertThat;

import java.lang.module.ModuleDescriptor;
import java.util.Set;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/** The tests run on the module path: the x86 layer is a named module exporting only its raw layer. */
class ModuleEncapsulationTest {

    @Test
    void testsRunInsideTheNamedModule() {
        Module module = PhysicalMemory.class.getModule();

        assertThat(module.isNamed()).isTrue();
        assertThat(module.getName()).isEqualTo("org.vmcore.x86");
        assertThat(ModuleEncapsulationTest.class.getModule()).isSameAs(module);
    }

    @Test
    void exportsExactlyTheRawLayerPackagesToEveryone() {
        ModuleDescriptor descriptor = PhysicalMemory.class.getModule().getDescriptor();

        Set<String> unqualified = descriptor.exports().stream()
                .filter(e -> !e.isQualified())
                .map(ModuleDescriptor.Exports::source)
                .collect(Collectors.toSet());

        assertThat(unqualified).containsExactlyInAnyOrder(
                "org.vmcore.x86.mem", "org.vmcore.x86.pgtable", "org.vmcore.x86.tlb");
        assertThat(descriptor.isOpen()).isFalse();
    }
}
