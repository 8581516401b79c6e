package org.vmcore.x86.mem;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.lang.module.ModuleDescriptor;
import java.lang.reflect.Executable;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The tests run on the module path: the x86 layer is a named module exporting its raw layer to
 * everyone and its engine side only to the generic mm.
 */
class ModuleEncapsulationTest {
    private static final Set<String> PUBLIC_PACKAGES = Set.of("org.vmcore.x86.mem", "org.vmcore.x86.pgtable", "org.vmcore.x86.tlb");
    private static final String INTERNAL = "org.vmcore.x86.internal";
    /** What moved out of the exported packages in 0.2: none of these names may come back there. */
    private static final Set<String> MOVED = Set.of(
            "slot", "readSlot", "compareAndSetSlot", "getAndClearSlot", "install", "populate", "protectSlot",
            "clearTable", "readTable",
            "setFlags", "clearFlags", "trySetFlag", "addRefcount", "addMapcount", "addPtShareCount",
            "setRefcount", "setMapcount", "setMapping",
            "page", "pageOrNull", "readPage", "writePage",
            "tableWindows", "windowOf", "tryAllocateTable",
            "lastPage", "rememberPage", "l1Slot", "l1Value", "l1Page");

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

        assertThat(unqualified).isEqualTo(PUBLIC_PACKAGES);
        assertThat(descriptor.isOpen()).isFalse();
        assertThat(descriptor.opens()).isEmpty();
    }

    @Test
    void exportsTheInternalPackageOnlyToTheGenericMm() {
        ModuleDescriptor descriptor = PhysicalMemory.class.getModule().getDescriptor();

        List<ModuleDescriptor.Exports> qualified = descriptor.exports().stream().filter(ModuleDescriptor.Exports::isQualified).toList();

        assertThat(qualified).hasSize(1);
        assertThat(qualified.getFirst().source()).isEqualTo(INTERNAL);
        assertThat(qualified.getFirst().targets()).containsExactly("org.vmcore.impl");
        assertThat(PhysicalMemory.class.getModule().isExported(INTERNAL)).as("not to everyone").isFalse();
    }

    @Test
    void thePublicPackagesHoldNoneOfTheMovedMethodsAndLeakNoInternalState() {
        List<Class<?>> types = publicTypesOfExportedPackages();
        assertThat(types).as("found the public classes").hasSizeGreaterThan(15);

        List<String> offenders = new ArrayList<>();
        for (Class<?> type : types) {
            List<Executable> api = new ArrayList<>(List.of(type.getDeclaredMethods()));
            api.addAll(List.of(type.getDeclaredConstructors()));
            for (Executable e : api) {
                if (!Modifier.isPublic(e.getModifiers()) && !Modifier.isProtected(e.getModifiers())) {
                    continue;
                }
                List<Class<?>> signature = new ArrayList<>(List.of(e.getParameterTypes()));
                if (e instanceof Method m) {
                    signature.add(m.getReturnType());
                    if (MOVED.contains(m.getName())) {
                        offenders.add(type.getSimpleName() + "." + m.getName() + " is a moved method");
                    }
                }
                for (Class<?> t : signature) {
                    if (leaksState(t)) {
                        offenders.add(type.getSimpleName() + "." + e.getName() + " has " + t.getSimpleName() + " in its signature");
                    }
                }
            }
        }
        assertThat(offenders).isEmpty();
    }

    private static boolean leaksState(Class<?> type) {
        Class<?> t = type.isArray() ? type.componentType() : type;
        return MemorySegment.class.isAssignableFrom(t)
                || t.getPackageName().equals("java.util.concurrent.atomic")
                || t.getPackageName().equals(INTERNAL);
    }

    /** The public classes of the exported packages, read from the module's class directory or jar. */
    private static List<Class<?>> publicTypesOfExportedPackages() {
        try {
            Path root = Path.of(PhysicalMemory.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            List<Class<?>> types = new ArrayList<>();
            for (String pkg : PUBLIC_PACKAGES) {
                try (Stream<Path> files = Files.list(root.resolve(pkg.replace('.', '/')))) {
                    for (Path f : files.filter(p -> p.toString().endsWith(".class")).toList()) {
                        String name = f.getFileName().toString();
                        Class<?> c = Class.forName(pkg + "." + name.substring(0, name.length() - ".class".length()));
                        if (Modifier.isPublic(c.getModifiers())) {
                            types.add(c);
                        }
                    }
                }
            }
            return types;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (URISyntaxException | ClassNotFoundException e) {
            throw new IllegalStateException(e);
        }
    }
}
