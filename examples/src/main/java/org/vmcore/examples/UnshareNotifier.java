package org.vmcore.examples;

import org.vmcore.api.AddressSpace;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.PageSize;
import org.vmcore.api.Regression;

/**
 * The notifier range of dff11abe280b, once without the fix and once with it: P1 and P2 share the
 * PMD table of a 1 GiB hugetlbfs file; two secondary MMUs of P1 cache three of its huge pages;
 * the file loses its last 2 MiB page, which unshares P1's whole 1 GiB window. A KVM-style shadow
 * table learns of the change from invalidateRangeStart only: without the fix it is told of the
 * 2 MiB, keeps the rest of the window and writes through translations P1 no longer has (the
 * stale-translation detector records each use). An IOMMU-style device TLB is also flushed with
 * the CPU TLBs, whose flush covers the unshared window either way.
 *
 * <p>Run: {@code ./run-example UnshareNotifier [--regression=pre-dff11abe|none]}
 */
public final class UnshareNotifier {
    private static final long GIB = 1L << 30;
    private static final long MIB = 1L << 20;
    private static final long P1 = 16 * GIB;
    private static final long P2 = 18 * GIB;

    private UnshareNotifier() {
    }

    public static void main(String[] args) {
        RegressionStory.tell("UnshareNotifier", "pre-dff11abe", args, UnshareNotifier::run, "stale uses by the shadow table: %d without the fix, %d with it");
    }

    /** Runs the story once; returns the stale uses the detector recorded. */
    static long run(boolean regression) {
        Machine.Builder b = RegressionStory.telling(Machine.builder().node(4 * GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 600)
                .detectStaleTranslations(true), Regression.PRE_DFF11ABE, regression);
        try (Machine machine = b.build()) {
            HugetlbFile file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
            AddressSpace[] sharers = RegressionStory.shareWindow(machine, file, P1, P2);
            AddressSpace p1 = sharers[0];
            AddressSpace p2 = sharers[1];
            DeviceTlb kvm = DeviceTlb.shadowTable(machine, p1, "kvm-shadow");
            DeviceTlb iommu = new DeviceTlb(machine, p1, "iommu", true);
            for (long i = 0; i < 3; i++) {
                kvm.write(P1 + i * 2 * MIB, 1);
                iommu.write(P1 + i * 2 * MIB + 8, 1);
            }
            System.out.println("P1 and P2 share one PMD table; kvm-shadow and iommu cache P1's huge pages 0, 1 and 2");

            file.truncate(GIB - 2 * MIB);
            System.out.println("the file loses its last huge page: P1's window is unshared, P1 maps none of it now ("
                    + (p1.translate(P1) < 0 ? "translate(P1) = -1" : "translate(P1) = 0x" + Long.toHexString(p1.translate(P1))) + ")");
            System.out.println("notifier calls kvm-shadow received:");
            kvm.received().forEach(line -> System.out.println("  " + line));

            for (long i = 0; i < 3; i++) {
                kvm.write(P1 + i * 2 * MIB, 2);
            }
            for (long i = 0; i < 3; i++) { // a miss faults, and the fault shares P2's table again
                iommu.write(P1 + i * 2 * MIB + 8, 2);
            }
            System.out.printf("kvm-shadow: %d hits, %d misses, %d stale uses%n", kvm.hits(), kvm.misses(), kvm.staleUses());
            System.out.printf("iommu: %d hits, %d misses, %d stale uses%n", iommu.hits(), iommu.misses(), iommu.staleUses());
            System.out.println("stale-translation detector:");
            machine.staleAccesses().forEach(s -> System.out.println("  " + s));
            if (machine.staleAccessCount() == 0) {
                System.out.println("  (none)");
            }
            return machine.staleAccessCount();
        }
    }
}
