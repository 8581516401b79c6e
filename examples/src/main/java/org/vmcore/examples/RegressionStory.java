package org.vmcore.examples;

import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;
import org.vmcore.api.Regression;

/**
 * What the examples of one regression switch share: a story told once without the fix and once
 * with it, chosen by {@code --regression=<name>} (without only) or {@code --regression=none}
 * (with only), and a last line comparing the two.
 */
final class RegressionStory {
    /** One telling of the story; returns the harm it counted (stale uses, pages lost, ...). */
    @FunctionalInterface
    interface Telling {
        long run(boolean regression);
    }

    private RegressionStory() {
    }

    /**
     * Tells the story as {@code args} ask and prints {@code summary}, a format with the harm
     * without and with the fix, when both ran. An unknown option ends the program with status 2.
     */
    static void tell(String example, String option, String[] args, Telling story, String summary) {
        boolean without = true;
        boolean with = true;
        for (String arg : args) {
            if (arg.equals("--regression=" + option)) {
                with = false;
            } else if (arg.equals("--regression=none")) {
                without = false;
            } else {
                System.err.println(example + ": unknown option " + arg + " (known: --regression=" + option + ", --regression=none)");
                System.exit(2);
            }
        }
        long harmWithout = without ? story.run(true) : -1;
        long harmWith = with ? story.run(false) : -1;
        if (without && with) {
            System.out.println();
            System.out.printf(summary + "%n", harmWithout, harmWith);
        }
    }

    /** Prints which telling this is and enables {@code regression} on {@code builder} when asked. */
    static Machine.Builder telling(Machine.Builder builder, Regression regression, boolean enabled) {
        System.out.println();
        System.out.println("=== " + (enabled ? "WITHOUT the fix (Regression." + regression + ")" : "WITH the fix (today's kernel)"));
        return enabled ? builder.enable(regression) : builder;
    }

    /**
     * Two processes that map the 1 GiB {@code file} shared at the 1 GiB-aligned {@code base1} and
     * {@code base2}: the first populates it, the second's first fault shares the first's PMD table.
     */
    static AddressSpace[] shareWindow(Machine machine, HugetlbFile file, long base1, long base2) {
        AddressSpace p1 = machine.createAddressSpace();
        AddressSpace p2 = machine.createAddressSpace();
        int shared = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
        p1.mmap(file, 0, base1, 1L << 30, Protection.READ_WRITE, shared | MapFlags.MAP_POPULATE);
        p2.mmap(file, 0, base2, 1L << 30, Protection.READ_WRITE, shared);
        p2.fault(base2, Access.READ); // p2's PUD entry now points at p1's PMD table
        return new AddressSpace[] {p1, p2};
    }
}
