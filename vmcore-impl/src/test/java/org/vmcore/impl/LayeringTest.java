package org.vmcore.impl;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The layering of vmcore-impl: its packages import each other in one direction only, and no
 * class below the root package reaches back to the machine that built it.
 */
class LayeringTest {
    private static JavaClasses classes;

    @BeforeAll
    static void importClasses() {
        classes = new ClassFileImporter()
                .withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
                .importPackages("org.vmcore.impl");
    }

    @Test
    void packagesHaveNoImportCycle() {
        slices().matching("org.vmcore.impl.(*)..").should().beFreeOfCycles().check(classes);
    }

    @Test
    void onlyTheRootPackageKnowsTheMachine() {
        noClasses().that().resideOutsideOfPackage("org.vmcore.impl")
                .should().dependOnClassesThat().haveFullyQualifiedName(SimMachine.class.getName())
                .check(classes);
    }
}
