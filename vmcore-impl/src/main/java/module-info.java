/**
 * The generic mm: machine, address spaces and VMAs, faults, hugetlbfs with shared PMD tables,
 * rmap, migration and MMU notifiers, built on the x86-64 layer. It exports nothing: users see
 * it through {@link org.vmcore.api.Machine#builder()}.
 */
module org.vmcore.impl {
    requires transitive org.vmcore.api;
    requires org.vmcore.x86;
    requires org.eclipse.collections.api;
    requires org.eclipse.collections.impl;
    requires jdk.jfr;

    exports org.vmcore.impl.stat to jdk.jfr;

    provides org.vmcore.api.MachineProvider with org.vmcore.impl.SimMachineProvider;
}
